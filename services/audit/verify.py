"""Verify the trail: every entry's keyed hash and link, trail against inbox both ways, and the
whole trail against the signed checkpoints kept outside the database.

- An edited entry no longer matches its HMAC, and a made-up one cannot (the key is not in the
  database); an entry with the old unkeyed hash after the first keyed one is refused too.
- A deleted, inserted or reordered entry breaks the next entry's ``prev_hash``.
- An event the audit applied but the trail lacks, or an entry no applied event accounts for, is
  found through the inbox.
- An entry at or below a checkpoint's horizon that was added, deleted (even the last of its
  order together with its inbox row), reordered or edited changes the fold the checkpoint
  signed (services/audit/checkpoints.py).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from services.audit.chain import GENESIS, LEGACY_SHA256, legacy_link_hash, row_hash
from services.audit.checkpoints import Checkpoint, fold, read_checkpoints
from shared.db import Connection, Pool

Problem = Literal[
    "hash_mismatch",
    "prev_hash_mismatch",
    "legacy_hash",
    "missing_entry",
    "not_in_inbox",
    "checkpoint_mismatch",
    "bad_checkpoint",
]


class BrokenLink(BaseModel):
    order_id: uuid.UUID | None
    seq: int | None
    """For ``checkpoint_mismatch``, the checkpoint's horizon; for ``bad_checkpoint``, the line
    of the checkpoint file."""
    event_id: uuid.UUID | None
    problem: Problem


class Verification(BaseModel):
    ok: bool
    orders: int
    entries: int
    checkpointed_seq: int | None
    """The horizon of the newest checkpoint: entries up to it are covered by checkpoints."""
    checkpointed_at: datetime | None
    broken: list[BrokenLink]


async def verify(
    pool: Pool, key: bytes, checkpoint_file: Path | None, consumer: str = "audit"
) -> Verification:
    broken: list[BrokenLink] = []
    checkpoints: list[Checkpoint] = []
    if checkpoint_file is not None:
        # Read before the snapshot: every entry a checkpoint covers committed before it.
        checkpoints, bad_lines = await asyncio.to_thread(read_checkpoints, checkpoint_file, key)
        broken += [
            BrokenLink(order_id=None, seq=n, event_id=None, problem="bad_checkpoint")
            for n in bad_lines
        ]
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        orders, entries = await _check_chains(conn, key, broken)
        await _check_inbox(conn, consumer, broken)
        await _check_checkpoints(conn, checkpoints, broken)
    newest = max(checkpoints, key=lambda c: c.max_seq, default=None)
    return Verification(
        ok=not broken,
        orders=orders,
        entries=entries,
        checkpointed_seq=newest.max_seq if newest else None,
        checkpointed_at=newest.at if newest else None,
        broken=broken,
    )


async def _check_chains(conn: Connection, key: bytes, broken: list[BrokenLink]) -> tuple[int, int]:
    orders = entries = 0
    first_keyed = await conn.fetchval(
        "SELECT min(seq) FROM trail WHERE hash_version <> $1", LEGACY_SHA256
    )
    order_id: uuid.UUID | None = None
    prev = GENESIS
    async for row in conn.cursor(
        """SELECT seq, order_id, event_id, event_type, occurred_at, station_id, event,
                  prev_hash, hash, hash_version
           FROM trail ORDER BY order_id, seq"""
    ):
        entries += 1
        if row["order_id"] != order_id:
            order_id, prev = row["order_id"], GENESIS
            orders += 1
        problem: Problem | None = None
        if row["prev_hash"] != prev:
            problem = "prev_hash_mismatch"
        elif row["hash_version"] == LEGACY_SHA256:
            if first_keyed is not None and row["seq"] > first_keyed:
                problem = "legacy_hash"
            elif row["hash"] != legacy_link_hash(prev, row["event"]):
                problem = "hash_mismatch"
        elif row["hash"] != row_hash(key, prev, row):
            problem = "hash_mismatch"
        if problem is not None:
            broken.append(
                BrokenLink(
                    order_id=row["order_id"],
                    seq=row["seq"],
                    event_id=row["event_id"],
                    problem=problem,
                )
            )
        prev = row["hash"]
    return orders, entries


async def _check_inbox(conn: Connection, consumer: str, broken: list[BrokenLink]) -> None:
    for row in await conn.fetch(
        """SELECT i.event_id FROM inbox i
           WHERE i.consumer = $1
             AND NOT EXISTS (SELECT 1 FROM trail t WHERE t.event_id = i.event_id)""",
        consumer,
    ):
        broken.append(
            BrokenLink(order_id=None, seq=None, event_id=row["event_id"], problem="missing_entry")
        )
    for row in await conn.fetch(
        """SELECT t.order_id, t.seq, t.event_id FROM trail t
           WHERE NOT EXISTS (
               SELECT 1 FROM inbox i WHERE i.consumer = $1 AND i.event_id = t.event_id)
           ORDER BY t.seq""",
        consumer,
    ):
        broken.append(
            BrokenLink(
                order_id=row["order_id"],
                seq=row["seq"],
                event_id=row["event_id"],
                problem="not_in_inbox",
            )
        )


async def _check_checkpoints(
    conn: Connection, checkpoints: list[Checkpoint], broken: list[BrokenLink]
) -> None:
    """Fold the trail in seq order and compare the fold at each checkpoint's horizon; report
    the first checkpoint that does not hold (the later ones cannot hold either)."""
    pending = sorted(checkpoints, key=lambda c: c.max_seq)
    digest, entries = GENESIS, 0

    def holds(checkpoint: Checkpoint) -> bool:
        if (checkpoint.entries, checkpoint.digest) == (entries, digest):
            return True
        broken.append(
            BrokenLink(
                order_id=None, seq=checkpoint.max_seq, event_id=None, problem="checkpoint_mismatch"
            )
        )
        return False

    async for row in conn.cursor("SELECT seq, hash FROM trail ORDER BY seq"):
        while pending and pending[0].max_seq < row["seq"]:
            if not holds(pending.pop(0)):
                return
        if not pending:
            return
        digest = fold(digest, row["seq"], row["hash"])
        entries += 1
    for checkpoint in pending:
        if not holds(checkpoint):
            return
