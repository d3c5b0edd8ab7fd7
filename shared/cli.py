"""The one way a ``swdispatch`` subcommand is declared: a parser whose ``handler`` runs it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


def command(
    sub: Any, name: str, handler: Callable[[argparse.Namespace], None], help_text: str
) -> argparse.ArgumentParser:
    """Add a subcommand that runs ``handler(args)``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.set_defaults(handler=handler)
    return parser


def credential_lifetime(parser: argparse.ArgumentParser) -> None:
    """``--expires-in-days`` of a command that makes a credential (default: the setting
    SWD_CREDENTIAL_LIFETIME_DAYS; neither: it never expires)."""
    parser.add_argument(
        "--expires-in-days",
        type=float,
        default=None,
        metavar="DAYS",
        help="the credential stops working after DAYS (default: SWD_CREDENTIAL_LIFETIME_DAYS;"
        " unset: never)",
    )


def credential_overlap(parser: argparse.ArgumentParser) -> None:
    """``--overlap-hours`` of a command that rotates a credential."""
    parser.add_argument(
        "--overlap-hours",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="the old credential keeps working this long, so clients can switch (default: 0)",
    )


def expires_at(args: argparse.Namespace) -> datetime | None:
    """When a credential made now by this command expires."""
    from shared.credentials import expiry
    from shared.settings import Settings

    days = args.expires_in_days
    return expiry(datetime.now(UTC), Settings().credential_lifetime_days if days is None else days)


def overlap(args: argparse.Namespace) -> timedelta:
    return timedelta(hours=args.overlap_hours)


def old_one(args: argparse.Namespace) -> str:
    """What a rotation left of the old credential, for the command's output."""
    if args.overlap_hours:
        return f"the old one works for {args.overlap_hours:g} h more"
    return "the old one no longer works"
