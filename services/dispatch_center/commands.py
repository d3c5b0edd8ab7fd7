"""``swdispatch`` subcommands of the dispatch center."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from shared.cli import command, in_schema


def _create_integration(args: argparse.Namespace) -> None:
    from services.dispatch_center.admin import create_integration

    integration_id, key = asyncio.run(
        in_schema("dispatch_center", lambda c: create_integration(c, args.name))
    )
    print(f"integration {integration_id}\nX-API-Key: {key}\n(shown once; store it now)")


def add_commands(sub: Any) -> None:
    integrations = sub.add_parser("integrations", help="intake API keys").add_subparsers(
        dest="action", required=True
    )
    create = command(
        integrations, "create", _create_integration, "create an integration, print its key once"
    )
    create.add_argument("name")
