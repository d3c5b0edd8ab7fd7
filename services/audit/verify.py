"""Recompute every order's hash chain and report each broken link.

An edited entry no longer matches its hash; a deleted or inserted one breaks the next entry's
``prev_hash``; an entry deleted at the end of a chain (or a whole chain) is found through the
inbox, which records every event the audit applied.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from services.audit.chain import GENESIS, link_hash
from shared.db import Pool

Problem = Literal["hash_mismatch", "prev_hash_mismatch", "missing_entry"]


class BrokenLink(BaseModel):
    order_id: uuid.UUID | None
    seq: int | None
    event_id: uuid.UUID
    problem: Problem


class Verification(BaseModel):
    ok: bool
    orders: int
    entries: int
    broken: list[BrokenLink]


async def verify(pool: Pool, consumer: str = "audit") -> Verification:
    broken: list[BrokenLink] = []
    orders = entries = 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        order_id: uuid.UUID | None = None
        prev = GENESIS
        async for row in conn.cursor(
            "SELECT seq, order_id, event_id, event, prev_hash, hash FROM trail"
            " ORDER BY order_id, seq"
        ):
            entries += 1
            if row["order_id"] != order_id:
                order_id, prev = row["order_id"], GENESIS
                orders += 1
            problem: Problem | None = None
            if row["prev_hash"] != prev:
                problem = "prev_hash_mismatch"
            elif row["hash"] != link_hash(prev, row["event"]):
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
        for row in await conn.fetch(
            """SELECT i.event_id FROM inbox i
               WHERE i.consumer = $1
                 AND NOT EXISTS (SELECT 1 FROM trail t WHERE t.event_id = i.event_id)""",
            consumer,
        ):
            broken.append(
                BrokenLink(
                    order_id=None, seq=None, event_id=row["event_id"], problem="missing_entry"
                )
            )
    return Verification(ok=not broken, orders=orders, entries=entries, broken=broken)
