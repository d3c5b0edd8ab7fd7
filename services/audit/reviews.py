"""Supervision (一站一督导) in the audit: a supervisor reviews the orders of their stations
that the random share picked, and closes the supervision the third send-back opened.

Both are entries of the audit's own in the order's hash chain (domain.own_entry), appended in
the same transaction as the row that keeps their free text (the review's comment, the
close's note), which the trail does not: the entry holds the scores, the row the words.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from services.audit import store, trail
from services.audit.domain import (
    OrderReviewed,
    OrderSupervisionClosed,
    Reader,
    Timeline,
    chain,
    own_entry,
    picked_for_review,
)
from shared.db import Connection, Pool
from shared.errors import Conflict, NotFound


async def _locked_order(
    conn: Connection, reader: Reader, order_id: uuid.UUID
) -> tuple[Timeline, str]:
    """The order and its station, locked for appending to its chain; NotFound unless the
    reader supervises the station that holds it."""
    await store.hold_off_checkpoints(conn)
    await store.lock_orders(conn, [order_id])
    found = await store.load_timelines(conn, order_id=order_id)
    station = found[0].station_id if found else None
    if station is None or not reader.supervises(station):
        raise NotFound("no such order")
    return found[0], station


async def _append(conn: Connection, key: bytes, entry: Any) -> None:
    last = await store.last_hashes(conn, [entry.order_id])
    await store.append(conn, chain(key, [entry], last))
    await trail.refresh_orders(conn, [entry.order_id])


@dataclass(frozen=True)
class Scores:
    timeliness: int
    professional_quality: int
    record_completeness: int
    comment: str | None


async def review(
    pool: Pool, key: bytes, share: float, reader: Reader, order_id: uuid.UUID, scores: Scores
) -> Timeline:
    """Record the supervisor's review of a picked order; Conflict when the order was not
    picked (or is not completed yet) or already has a review."""
    async with pool.acquire() as conn, conn.transaction():
        order, station = await _locked_order(conn, reader, order_id)
        if order.completed_at is None or not picked_for_review(order.order_id, share):
            raise Conflict("this order was not picked for review")
        payload = OrderReviewed(
            station_id=station,
            reviewer_id=reader.id,
            timeliness=scores.timeliness,
            professional_quality=scores.professional_quality,
            record_completeness=scores.record_completeness,
            comment=scores.comment,
        )
        entry = own_entry(payload, order_id, reader.id)
        if not await store.insert_review(
            conn, order_id, entry.event_id, payload.model_dump() | {"comment": scores.comment}
        ):
            raise Conflict("this order has been reviewed already")
        await _append(conn, key, entry)
        return (await store.load_timelines(conn, order_id=order_id))[0]


async def close_supervision(
    pool: Pool, key: bytes, reader: Reader, order_id: uuid.UUID, note: str
) -> Timeline:
    """Close the order's supervision with the supervisor's note; Conflict when it is not
    under supervision (never opened, or closed already)."""
    async with pool.acquire() as conn, conn.transaction():
        order, station = await _locked_order(conn, reader, order_id)
        if not order.under_supervision:
            raise Conflict("this order is not under supervision")
        payload = OrderSupervisionClosed(station_id=station, supervisor_id=reader.id, note=note)
        entry = own_entry(payload, order_id, reader.id)
        if not await store.insert_supervision_close(
            conn, order_id, entry.event_id, station, reader.id, note
        ):
            raise Conflict("this order's supervision has been closed already")
        await _append(conn, key, entry)
        return (await store.load_timelines(conn, order_id=order_id))[0]


async def supervisions(pool: Pool, reader: Reader, *, open_only: bool) -> list[dict[str, Any]]:
    """The orders under supervision at the reader's stations (an evaluator's: every
    station's), oldest first."""
    async with pool.acquire() as conn:
        return await store.supervisions(conn, reader.scope, open_only=open_only)
