"""``swdispatch`` subcommands of the dispatch center."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from shared.cli import command
from shared.db import in_schema


def _create_integration(args: argparse.Namespace) -> None:
    from services.dispatch_center.admin import create_integration
    from services.dispatch_center.settings import CenterSettings

    key = CenterSettings().callback_fernet_key()
    created = asyncio.run(
        in_schema(
            "dispatch_center",
            lambda c: create_integration(
                c, args.name, callback_secret_key=key, rate_limit_per_minute=args.rate_limit
            ),
        )
    )
    print(
        f"integration {created.id}\nX-API-Key: {created.key}\n"
        f"callback secret: {created.callback_secret}\n(shown once; store them now)"
    )


def _revoke_integration(args: argparse.Namespace) -> None:
    from services.dispatch_center.admin import record_action, revoke_integration

    async def revoke(conn: Any) -> bool:
        done = await revoke_integration(conn, args.id)
        if done:
            await record_action(conn, "cli", "integration.revoke", args.id, args.reason)
        return done

    if not asyncio.run(in_schema("dispatch_center", revoke)):
        raise SystemExit(f"no active integration {args.id}")
    print(f"integration {args.id} revoked")


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
                lambda c: create_operator(c, args.name, args.role, stations=stations),
            )
        )
    except InvalidField as e:
        raise SystemExit(f"--stations: {e.detail}") from None
    scope = "every station" if stations is None else ", ".join(sorted(set(stations)))
    print(
        f"operator {operator_id} ({args.role}; {scope})\nBearer token: {token}\n"
        "(shown once; store it now)"
    )


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
    revoke = command(integrations, "revoke", _revoke_integration, "revoke an integration's key")
    revoke.add_argument("id")
    revoke.add_argument("--reason", required=True)

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
