"""Helpers for the service packages' ``swdispatch`` subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from shared.db import Connection
from shared.settings import Settings

T = TypeVar("T")


async def in_schema(schema: str, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction inside ``schema`` of the configured database."""
    conn = await asyncpg.connect(Settings().database_url)
    try:
        async with conn.transaction():
            await conn.execute(f'SET LOCAL search_path TO "{schema}"')
            return await work(conn)
    finally:
        await conn.close()


def command(
    sub: Any, name: str, handler: Callable[[argparse.Namespace], None], help_text: str
) -> argparse.ArgumentParser:
    """Add a subcommand that runs ``handler(args)``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.set_defaults(handler=handler)
    return parser
