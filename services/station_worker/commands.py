"""``swdispatch`` subcommands of the station worker."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.cli import (
    command,
    credential_lifetime,
    credential_overlap,
    expires_at,
    old_one,
    overlap,
)
from shared.db import Connection, in_schema

T = TypeVar("T")


def _in_station(work: Callable[[Connection], Awaitable[T]]) -> T:
    return asyncio.run(in_schema("station_worker", work))


def _create_staff(args: argparse.Namespace) -> None:
    from services.station_worker.admin import AlreadyExists, create_staff, new_staff_id

    staff_id = args.id or new_staff_id()
    try:
        token = _in_station(
            lambda c: create_staff(
                c, args.station, args.role, args.name, staff_id, expires_at=expires_at(args)
            )
        )
    except AlreadyExists:
        sys.exit(f"staff {staff_id} already exists: nothing changed (see `staff reissue-token`)")
    print(f"staff {staff_id}\nBearer token: {token}\n(shown once; store it now)")


def _reissue_token(args: argparse.Namespace) -> None:
    from services.station_worker.admin import NoSuchStaff, reissue_staff_token

    try:
        token = _in_station(
            lambda c: reissue_staff_token(
                c, args.id, overlap=overlap(args), expires_at=expires_at(args)
            )
        )
    except NoSuchStaff as e:
        sys.exit(str(e))
    print(f"staff {args.id}\nBearer token: {token}\n(shown once; {old_one(args)})")


def _revoke(args: argparse.Namespace) -> None:
    from services.station_worker.admin import revoke_staff

    if not _in_station(lambda c: revoke_staff(c, args.id)):
        sys.exit(f"no active staff member {args.id}")
    print(f"staff {args.id} revoked")


def add_commands(sub: Any) -> None:
    staff = sub.add_parser("staff", help="station staff tokens").add_subparsers(
        dest="action", required=True
    )
    create = command(staff, "create", _create_staff, "create a staff member, print the token")
    create.add_argument("--station", required=True)
    create.add_argument("--role", required=True, choices=["station_manager", "social_worker"])
    create.add_argument("--name", required=True)
    create.add_argument("--id", help="the staff id (default: generated); an existing id is refused")
    credential_lifetime(create)
    reissue = command(
        staff, "reissue-token", _reissue_token, "a new token for a staff member (role unchanged)"
    )
    reissue.add_argument("--id", required=True)
    credential_lifetime(reissue)
    credential_overlap(reissue)
    revoke = command(staff, "revoke", _revoke, "revoke a staff member's token")
    revoke.add_argument("--id", required=True)
