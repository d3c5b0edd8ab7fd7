"""``swdispatch`` subcommands of the station worker."""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from shared.cli import command, in_schema


def _create_staff(args: argparse.Namespace) -> None:
    from services.station_worker.admin import create_staff

    staff_id = re.sub(r"[^a-z0-9]+", "-", f"{args.station}-{args.name}".lower()).strip("-")
    token = asyncio.run(
        in_schema(
            "station_worker",
            lambda c: create_staff(c, args.station, args.role, args.name, staff_id),
        )
    )
    print(f"staff {staff_id}\nBearer token: {token}\n(shown once; store it now)")


def add_commands(sub: Any) -> None:
    staff = sub.add_parser("staff", help="station staff tokens").add_subparsers(
        dest="action", required=True
    )
    create = command(staff, "create", _create_staff, "create a staff member, print the token")
    create.add_argument("--station", required=True)
    create.add_argument("--role", required=True, choices=["station_manager", "social_worker"])
    create.add_argument("name")
