"""Reading the station's queue: the listing, page by page, and one order as a staff member
may see it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from services.station_worker import store
from services.station_worker.api.schemas import (
    FollowUpDue,
    HistoryEntry,
    QueueItem,
    QueuePage,
    StationOrder,
)
from services.station_worker.domain import (
    NO_SUCH_ORDER,
    QueueFilter,
    StaffMember,
    follow_up_overdue,
    sees_case,
    today,
)
from services.station_worker.follow_ups import task_view
from shared.db import Connection, Pool
from shared.errors import NotFound
from shared.events import CaseDetails, Deadlines
from shared.paging import decode_cursor, encode_cursor


def _queue_item(row: asyncpg.Record) -> dict[str, Any]:
    due = row["follow_up"]
    return {
        **{k: row[k] for k in QueueItem.model_fields if k not in ("deadlines", "follow_up")},
        "follow_up": None
        if due is None
        else FollowUpDue(
            **due,
            overdue=follow_up_overdue(date.fromisoformat(due["due_on"]), today(datetime.now(UTC))),
        ),
        "deadlines": Deadlines(
            dispatch_by=row["dispatch_by"],
            accept_by=row["accept_by"],
            assign_by=row["assign_by"],
            complete_by=row["complete_by"],
        ),
    }


async def list_queue(
    pool: Pool, station_id: str, filters: QueueFilter, limit: int, cursor: str | None
) -> QueuePage:
    """The station's orders, nearest deadline first (keyset pagination on due_at, order_id)."""
    after = None if cursor is None else decode_cursor(cursor)
    rows = await store.queue(pool, station_id, filters, limit + 1, after)
    items = [QueueItem(**_queue_item(r)) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(last.due_at, last.order_id)
    return QueuePage(orders=items, next_cursor=next_cursor)


async def order_view(
    conn: Connection | Pool, staff: StaffMember, order_id: uuid.UUID
) -> StationOrder:
    """The order as this station knows it, its case details only for those who may see
    them; NotFound for another station's order."""
    row = await store.order_row(conn, staff.station_id, order_id)
    if row is None:
        raise NotFound(NO_SUCH_ORDER)
    history = await store.history(conn, staff.station_id, order_id)
    due = row["follow_up"]
    entitled = sees_case(staff, row["worker_id"], None if due is None else due["worker_id"])
    return StationOrder(
        **_queue_item(row),
        case=(
            CaseDetails.model_validate(row["case_details"])
            if entitled and row["case_details"] is not None
            else None
        ),
        case_withheld=not entitled,
        case_erased_at=row["case_erased_at"],
        history=[HistoryEntry(**dict(h)) for h in history],
        follow_up_task=await task_view(conn, staff, order_id, entitled),
    )
