"""``swdispatch audit ...``: verify the trail, rebuild the projection, create reader tokens."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared.cli import (
    command,
    credential_lifetime,
    credential_overlap,
    expires_at,
    old_one,
    overlap,
)
from shared.db import Connection, Pool, create_pool, in_schema
from shared.settings import Settings

if TYPE_CHECKING:
    from services.audit.domain import Verification

T = TypeVar("T")


async def _with_pool(work: Callable[[Pool], Awaitable[T]]) -> T:
    pool = await create_pool(Settings(), "audit", min_size=1, max_size=2)
    try:
        return await work(pool)
    finally:
        await pool.close()


def _verification() -> Verification:
    from services.audit.settings import AuditSettings
    from services.audit.verify import verify

    settings = AuditSettings()
    return asyncio.run(
        _with_pool(
            lambda pool: verify(
                pool, settings.hmac_key, settings.audit_checkpoint_file, kafka=settings.kafka
            )
        )
    )


def _verify(args: argparse.Namespace) -> None:
    result = _verification()
    for link in result.broken:
        if link.problem == "missing_event":
            where = link.dead_letter or "on no dead-letter topic"
            print(
                f"BROKEN order {link.order_id}: {link.producer} event #{link.seq} never arrived"
                f" ({where})"
            )
            continue
        print(f"BROKEN order {link.order_id} seq {link.seq} event {link.event_id}: {link.problem}")
    print(
        f"{'ok' if result.ok else 'FAILED'}: {result.entries} entries of {result.orders} orders, "
        f"{len(result.broken)} broken; checkpointed up to seq {result.checkpointed_seq}"
        f" at {result.checkpointed_at}"
    )
    sys.exit(0 if result.ok else 1)


def _rebuild(args: argparse.Namespace) -> None:
    from services.audit.trail import rebuild

    # The projection is only as true as the trail it is made from.
    if not args.unverified and not (result := _verification()).ok:
        sys.exit(
            f"the trail fails verification ({len(result.broken)} broken; see swdispatch audit"
            " verify): not rebuilt"
        )
    print(f"rebuilt the projection of {asyncio.run(_with_pool(rebuild))} orders")


def _snapshot(args: argparse.Namespace) -> None:
    from datetime import UTC, date, datetime

    from services.audit.reports import snapshot_month, take_snapshots
    from services.audit.settings import AuditSettings

    settings = AuditSettings()
    now = datetime.now(UTC)
    if args.month is None:
        made = asyncio.run(_with_pool(lambda pool: take_snapshots(pool, settings, now)))
        print(f"kept {len(made)} months: {', '.join(m.strftime('%Y-%m') for m in made)}")
        return
    try:
        month = date.fromisoformat(f"{args.month}-01")
    except ValueError:
        sys.exit(f"--month: {args.month!r} is not a month like 2026-11")
    made_one = asyncio.run(_with_pool(lambda pool: snapshot_month(pool, month, settings, now)))
    print(f"{args.month}: {'kept' if made_one else 'was kept already: unchanged'}")


def _print_token(reader_id: str, work: Callable[[Connection], Awaitable[str]], note: str) -> None:
    from services.audit.admin import AlreadyExists, NoSuchReader

    refused = {
        AlreadyExists: f"reader {reader_id} already exists: nothing changed (see `reissue-token`)",
        NoSuchReader: f"no active reader {reader_id}",
    }
    try:
        token = asyncio.run(in_schema("audit", work))
    except (AlreadyExists, NoSuchReader) as e:
        sys.exit(refused[type(e)])
    print(f"reader {reader_id}\nAuthorization: Bearer {token}\n({note})")


def _create_reader(args: argparse.Namespace) -> None:
    from services.audit.admin import create_reader, new_reader_id

    if (args.role == "station_manager") != (args.station is not None):
        sys.exit("--station is required for a station_manager, and only for one")
    stations = [s.strip() for s in (args.stations or "").split(",") if s.strip()]
    if args.role == "supervisor" and not stations:
        sys.exit("--stations is required for a supervisor")
    if args.role == "station_manager" and stations:
        sys.exit("--stations is for a supervisor or an evaluator, not a station_manager")
    reader_id = args.id or new_reader_id()
    _print_token(
        reader_id,
        lambda c: create_reader(
            c,
            reader_id,
            args.name,
            args.role,
            args.station,
            stations=stations,
            expires_at=expires_at(args),
        ),
        "shown once; store it now",
    )


def _reissue_reader_token(args: argparse.Namespace) -> None:
    from services.audit.admin import reissue_reader_token

    _print_token(
        args.id,
        lambda c: reissue_reader_token(
            c, args.id, overlap=overlap(args), expires_at=expires_at(args)
        ),
        f"shown once; {old_one(args)}",
    )


def _revoke_reader(args: argparse.Namespace) -> None:
    from services.audit.admin import revoke_reader

    if not asyncio.run(in_schema("audit", lambda c: revoke_reader(c, args.id))):
        sys.exit(f"no active reader {args.id}")
    print(f"reader {args.id} revoked")


def add_commands(sub: Any) -> None:
    # `swdispatch audit` alone runs the service; these are its administrative actions.
    audit = sub.choices["audit"].add_subparsers(dest="action", title="actions")
    command(
        audit,
        "verify",
        _verify,
        "check the chains, inbox and checkpoints; exit 1 on a break",
    )
    rebuild = command(
        audit, "rebuild", _rebuild, "recompute the timeliness projection from a verified trail"
    )
    rebuild.add_argument(
        "--unverified", action="store_true", help="rebuild even from a trail that fails verify"
    )
    snapshot = command(
        audit,
        "snapshot",
        _snapshot,
        "keep closed months' evaluations as snapshots now (the service does it by itself)",
    )
    snapshot.add_argument(
        "--month", help="this month only (YYYY-MM), closed or not; default: every closed month"
    )
    readers = command(audit, "readers", lambda _: None, "audit API readers").add_subparsers(
        dest="readers_action", required=True
    )
    create = command(readers, "create", _create_reader, "create a reader, print its token once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--role",
        choices=("evaluator", "supervisor", "station_manager"),
        required=True,
        help="evaluator: every station, or a county's (--stations); supervisor: --stations; "
        "station_manager: --station",
    )
    create.add_argument("--station", help="the station a station_manager reads")
    create.add_argument("--stations", help="the stations a supervisor supervises, comma-separated")
    create.add_argument("--id", help="the reader id (default: generated); a taken id is refused")
    credential_lifetime(create)
    reissue = command(
        readers, "reissue-token", _reissue_reader_token, "a new token for a reader (role unchanged)"
    )
    reissue.add_argument("--id", required=True)
    credential_lifetime(reissue)
    credential_overlap(reissue)
    revoke = command(readers, "revoke", _revoke_reader, "revoke a reader's token")
    revoke.add_argument("--id", required=True)
