"""``swdispatch`` subcommands of the dispatch center."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any, Literal

from shared.cli import (
    command,
    credential_lifetime,
    credential_overlap,
    expires_at,
    old_one,
    overlap,
)
from shared.db import in_schema

Kind = Literal["operator", "integration"]
_SECRET_LINE = {"operator": "Bearer token", "integration": "X-API-Key"}


def _create_integration(args: argparse.Namespace) -> None:
    from services.dispatch_center.admin import create_integration
    from services.dispatch_center.settings import CenterSettings

    key = CenterSettings().callback_fernet_key()
    created = asyncio.run(
        in_schema(
            "dispatch_center",
            lambda c: create_integration(
                c,
                args.name,
                callback_secret_key=key,
                rate_limit_per_minute=args.rate_limit,
                expires_at=expires_at(args),
            ),
        )
    )
    print(
        f"integration {created.id}\nX-API-Key: {created.key}\n"
        f"callback secret: {created.callback_secret}\n(shown once; store them now)"
    )


def _revoker(kind: Kind) -> Callable[[argparse.Namespace], None]:
    """The ``revoke`` command of an operator or an integration."""

    def run(args: argparse.Namespace) -> None:
        from services.dispatch_center.admin import record_action, revoke

        async def work(conn: Any) -> bool:
            done = await revoke(conn, kind, args.id)
            if done:
                await record_action(conn, "cli", f"{kind}.revoke", args.id, args.reason)
            return done

        if not asyncio.run(in_schema("dispatch_center", work)):
            raise SystemExit(f"no active {kind} {args.id}")
        print(f"{kind} {args.id} revoked")

    return run


def _create_operator(args: argparse.Namespace) -> None:
    from services.dispatch_center.admin import create_operator
    from shared.errors import InvalidField

    stations = (
        None
        if args.stations is None
        else [s.strip() for given in args.stations for s in given.split(",") if s.strip()]
    )
    try:
        operator_id, token = asyncio.run(
            in_schema(
                "dispatch_center",
                lambda c: create_operator(
                    c, args.name, args.role, stations=stations, expires_at=expires_at(args)
                ),
            )
        )
    except InvalidField as e:
        raise SystemExit(f"--stations: {e.detail}") from None
    scope = "every station" if stations is None else ", ".join(sorted(set(stations)))
    print(
        f"operator {operator_id} ({args.role}; {scope})\nBearer token: {token}\n"
        "(shown once; store it now)"
    )


def _rotator(kind: Kind) -> Callable[[argparse.Namespace], None]:
    """The command that gives an operator a new token or an integration a new key."""

    def run(args: argparse.Namespace) -> None:
        from services.dispatch_center.admin import NoSuchCredential, record_action, rotate

        async def work(conn: Any) -> str:
            new = await rotate(
                conn, kind, args.id, overlap=overlap(args), expires_at=expires_at(args)
            )
            details = {"overlap_hours": args.overlap_hours}
            await record_action(conn, "cli", f"{kind}.rotate", args.id, args.reason, details)
            return str(new)

        try:
            secret = asyncio.run(in_schema("dispatch_center", work))
        except NoSuchCredential as e:
            raise SystemExit(str(e)) from None
        print(f"{kind} {args.id}\n{_SECRET_LINE[kind]}: {secret}\n(shown once; {old_one(args)})")

    return run


def _credential_command(
    sub: Any, name: str, handler: Callable[[argparse.Namespace], None], help_text: str
) -> argparse.ArgumentParser:
    """A command on one credential: its id and the reason (recorded with the change)."""
    parser = command(sub, name, handler, help_text)
    parser.add_argument("id")
    parser.add_argument("--reason", required=True)
    return parser


def add_commands(sub: Any) -> None:
    integrations = sub.add_parser("integrations", help="intake API keys").add_subparsers(
        dest="action", required=True
    )
    create = command(
        integrations,
        "create",
        _create_integration,
        "create an integration, print its key and callback secret once",
    )
    create.add_argument("name")
    create.add_argument("--rate-limit", type=int, default=None, help="requests per minute")
    credential_lifetime(create)
    rotate = _credential_command(
        integrations, "rotate-key", _rotator("integration"), "a new key for an integration"
    )
    credential_lifetime(rotate)
    credential_overlap(rotate)
    _credential_command(
        integrations, "revoke", _revoker("integration"), "revoke an integration's key"
    )

    operators = sub.add_parser("operators", help="dispatch center operators").add_subparsers(
        dest="action", required=True
    )
    create_op = command(
        operators, "create", _create_operator, "create an operator, print its token once"
    )
    create_op.add_argument("name")
    create_op.add_argument("--role", choices=("operator", "viewer"), default="operator")
    create_op.add_argument(
        "--stations",
        action="append",
        default=None,
        metavar="ID[,ID...]",
        help="bind the operator to these stations (a county's), as the audit's --stations;"
        " without: every station",
    )
    credential_lifetime(create_op)
    reissue_op = _credential_command(
        operators, "reissue-token", _rotator("operator"), "a new token for an operator"
    )
    credential_lifetime(reissue_op)
    credential_overlap(reissue_op)
    _credential_command(
        operators, "revoke", _revoker("operator"), "revoke an operator's token (next request: 401)"
    )
