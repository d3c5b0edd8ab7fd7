"""What operators look at and do: order lists, redispatch, cancel."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.dispatch_center import lifecycle
from services.dispatch_center.auth import Operator
from services.dispatch_center.models import OperatorTimelineEntry, OrderDetail, OrderSummary
from services.dispatch_center.settings import CenterSettings
from shared.db import Pool
from shared.domain import OrderStatus, Urgency


class NotFound(Exception):
    pass


class Refused(Exception):
    """The order's state does not allow the action (409)."""


class UnknownStation(Exception):
    pass


class BadCursor(Exception):
    pass


# Open orders past the deadline of the stage they are in.
OVERDUE = """CASE
    WHEN status IN ('submitted', 'unroutable') THEN dispatch_by < now()
    WHEN status IN ('dispatched', 'rejected', 'escalated') THEN accept_by < now()
    WHEN status = 'accepted' THEN assign_by < now()
    WHEN status IN ('assigned', 'in_service') THEN complete_by < now()
    ELSE false END"""

SUMMARY_COLUMNS = f"""id, integration_id, external_id, status, station_id, dispatch_no, category,
    urgency, township_code, community_code, submitted_at, dispatch_by, accept_by, assign_by,
    complete_by, ({OVERDUE}) AS overdue, awaiting_operator, hold_reason, redispatches, resends,
    tried_stations"""

LIST_ORDERS = f"""SELECT {SUMMARY_COLUMNS} FROM orders
    WHERE ($1::text IS NULL OR status = $1)
      AND ($2::text IS NULL OR station_id = $2)
      AND ($3::text IS NULL OR urgency = $3)
      AND ($4::boolean IS NULL OR ({OVERDUE}) = $4)
      AND ($5::boolean IS NULL OR awaiting_operator = $5)
      AND ($6::timestamptz IS NULL OR (submitted_at, id) < ($6, $7::uuid))
    ORDER BY submitted_at DESC, id DESC
    LIMIT $8"""  # noqa: S608 (constant text, no input)


def _summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "order_id": row["id"],
        "deadlines": lifecycle.deadlines_of(row),
        **{k: row[k] for k in OrderSummary.model_fields if k not in ("order_id", "deadlines")},
    }


def encode_cursor(row: asyncpg.Record) -> str:
    raw = f"{row['submitted_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, order_id = raw.split("|")
        return datetime.fromisoformat(at), uuid.UUID(order_id)
    except ValueError:
        raise BadCursor(cursor) from None


async def list_orders(
    pool: Pool,
    *,
    status: OrderStatus | None,
    station_id: str | None,
    urgency: Urgency | None,
    overdue: bool | None,
    awaiting_operator: bool | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[OrderSummary], str | None]:
    after_at, after_id = decode_cursor(cursor) if cursor else (None, None)
    rows = await pool.fetch(
        LIST_ORDERS,
        status,
        station_id,
        urgency,
        overdue,
        awaiting_operator,
        after_at,
        after_id,
        limit + 1,
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return [OrderSummary(**_summary(r)) for r in page], next_cursor


async def get_order(pool: Pool, order_id: uuid.UUID) -> OrderDetail | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {SUMMARY_COLUMNS} FROM orders WHERE id = $1",  # noqa: S608
            order_id,
        )
        if row is None:
            return None
        timeline = await conn.fetch(
            "SELECT status, at, station_id, reason, actor FROM order_timeline"
            " WHERE order_id = $1 ORDER BY id",
            order_id,
        )
    return OrderDetail(
        **_summary(row),
        tried_stations=row["tried_stations"],
        timeline=[OperatorTimelineEntry(**dict(t)) for t in timeline],
    )


async def redispatch(
    pool: Pool,
    settings: CenterSettings,
    operator: Operator,
    order_id: uuid.UUID,
    station_id: str,
    reason: str,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        order = await lifecycle.lock(conn, order_id)
        if order is None:
            raise NotFound(order_id)
        if order["status"] in lifecycle.FINAL:
            raise Refused(f"the order is {order['status']}")
        active = await conn.fetchval("SELECT active FROM stations WHERE id = $1", station_id)
        if not active:
            raise UnknownStation(station_id)
        change = lifecycle.dispatch_change(
            settings, order, station_id, reason=reason, actor=operator.actor, now=datetime.now(UTC)
        )
        await lifecycle.write(conn, order, change)


async def cancel(pool: Pool, operator: Operator, order_id: uuid.UUID, reason: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        order = await lifecycle.lock(conn, order_id)
        if order is None:
            raise NotFound(order_id)
        if order["status"] in lifecycle.FINAL:
            raise Refused(f"the order is {order['status']}")
        await lifecycle.cancel(conn, order, reason, actor=operator.actor, at=datetime.now(UTC))
