"""Supervision (一站一督导) in the audit: a supervisor reviews the orders of their stations
that the random share picked, and closes the supervision the third send-back opened.

Both are entries of the audit's own in the order's hash chain (domain.own_entry), appended in
the same transaction as the row that keeps their free text (the review's comment, the
close's note), which the trail does not: the entry holds the scores, the row the words.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from services.audit import store, trail
from services.audit.domain import (
    OrderReviewed,
    OrderSupervisionClosed,
    Reader,
    Review,
    Timeline,
    chain,
    own_entry,
    picked_for_review,
)
from services.audit.reports import DEFAULT_SPAN
from shared.db import Connection, Pool
from shared.errors import Conflict, InvalidField, NotFound


async def _locked_order(
    conn: Connection,
    reader: Reader,
    order_id: uuid.UUID,
    station_of: Callable[[Timeline], str | None],
) -> tuple[Timeline, str]:
    """The order, locked for appending to its chain, and its station that matters here
    (``station_of``); NotFound unless the reader supervises that station."""
    await store.hold_off_checkpoints(conn)
    await store.lock_orders(conn, [order_id])
    found = await store.load_timelines(conn, order_id=order_id)
    station = station_of(found[0]) if found else None
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


@dataclass(frozen=True)
class Picked:
    """An order picked for review, and its review once made."""

    order_id: str
    station_id: str
    completed_at: datetime
    review: Review | None


def _picked(t: Timeline, share: float) -> Picked | None:
    """Picked orders belong to the station whose work is reviewed: the one that completed the
    first service, wherever a send-back took the order next."""
    if t.completed_at is None or t.served_by is None:
        return None
    if not picked_for_review(t.order_id, share):
        return None
    return Picked(t.order_id, t.served_by, t.completed_at, t.review)


async def picked(
    pool: Pool,
    reader: Reader,
    share: float,
    from_: datetime | None,
    to: datetime | None,
    *,
    pending_only: bool,
) -> list[Picked]:
    """The orders submitted in ``[from, to)`` (by default the 30 days up to now) at the
    reader's stations that were picked for review (``pending_only``: not reviewed yet)."""
    to = to or datetime.now(UTC)
    from_ = from_ or to - DEFAULT_SPAN
    if from_ >= to:
        raise InvalidField(("query", "from"), "must be before 'to'")
    async with pool.acquire() as conn:
        orders = await store.load_timelines(
            conn, submitted_from=from_, submitted_to=to, stations=reader.scope
        )
    found = [p for o in orders if (p := _picked(o, share)) and reader.sees_station(p.station_id)]
    return [p for p in found if not (pending_only and p.review)]


async def review(
    pool: Pool, key: bytes, share: float, reader: Reader, order_id: uuid.UUID, scores: Scores
) -> Picked:
    """Record the supervisor's review of a picked order; Conflict when the order was not
    picked (or is not completed yet) or already has a review."""
    async with pool.acquire() as conn, conn.transaction():
        order, station = await _locked_order(
            conn, reader, order_id, lambda t: t.served_by or t.station_id
        )
        chosen = _picked(order, share)
        if chosen is None:
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
        (reviewed,) = await store.load_timelines(conn, order_id=order_id)
    return replace(chosen, review=reviewed.review)


async def close_supervision(
    pool: Pool, key: bytes, reader: Reader, order_id: uuid.UUID, note: str
) -> dict[str, Any]:
    """Close the order's supervision with the note of the supervisor of the station whose work
    was sent back the third time; Conflict when it is not under supervision (never opened, or
    closed already)."""
    async with pool.acquire() as conn, conn.transaction():
        order, station = await _locked_order(
            conn,
            reader,
            order_id,
            lambda t: t.supervision_station_id if t.supervision_opened_at else t.station_id,
        )
        if not order.under_supervision:
            raise Conflict("this order is not under supervision")
        payload = OrderSupervisionClosed(station_id=station, supervisor_id=reader.id, note=note)
        entry = own_entry(payload, order_id, reader.id)
        if not await store.insert_supervision_close(
            conn, order_id, entry.event_id, station, reader.id, note
        ):
            raise Conflict("this order's supervision has been closed already")
        await _append(conn, key, entry)
        (closed,) = await store.supervisions(conn, None, open_only=False, order_id=order_id)
    return closed


async def supervisions(pool: Pool, reader: Reader, *, open_only: bool) -> list[dict[str, Any]]:
    """The orders under supervision at the reader's stations (an evaluator's: every
    station's), oldest first."""
    async with pool.acquire() as conn:
        return await store.supervisions(conn, reader.scope, open_only=open_only)
