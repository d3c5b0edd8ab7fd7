"""The one way a ``swdispatch`` subcommand is declared: a parser whose ``handler`` runs it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def command(
    sub: Any, name: str, handler: Callable[[argparse.Namespace], None], help_text: str
) -> argparse.ArgumentParser:
    """Add a subcommand that runs ``handler(args)``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.set_defaults(handler=handler)
    return parser
