"""Orders arriving from the center."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker

from services.station_worker.models import ENDED_STATUSES, OPEN_STATUSES
from shared import outbox, topics
from shared.consumer import EventConsumer, Handler, PerEvent
from shared.db import Connection, Pool
from shared.domain import OrderStatus
from shared.events import (
    Actor,
    Envelope,
    EventPayload,
    OrderCancelled,
    OrderClosed,
    OrderDispatched,
    OrderReceived,
    new_event,
)
from shared.settings import Settings


async def on_dispatched(conn: Connection, event: Envelope[Any]) -> None:
    """Queue the order at its station and tell the center it arrived.

    A redispatch (higher ``dispatch_no``) replaces the earlier one, also when it moves the
    order to another station; an older dispatch changes nothing. A re-sent dispatch (same
    ``dispatch_no``, new event id) changes nothing either but is acknowledged again: the center
    re-sends because it never heard the first acknowledgement (lost with a broker restart).
    A redispatch that crossed the order's completion (or closing, or cancellation) changes
    nothing and is not acknowledged: the center learns of the completion and keeps it.
    """
    p: OrderDispatched = event.payload
    now = datetime.now(UTC)
    # Back after the station accepted an earlier dispatch in time: accepted already.
    status = OrderStatus.ACCEPTED if p.accepted_at else OrderStatus.DISPATCHED
    queued = await conn.fetchval(
        """INSERT INTO station_orders (order_id, station_id, status, dispatch_no, category, urgency,
               beneficiary_group, township_code, community_code, submitted_at, dispatch_by,
               accept_by, assign_by, complete_by, case_details, received_at, correlation_id)
           VALUES ($1, $2, $17, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                   $16)
           ON CONFLICT (order_id) DO UPDATE SET
               station_id = EXCLUDED.station_id, status = EXCLUDED.status,
               dispatch_no = EXCLUDED.dispatch_no, worker_id = NULL,
               correlation_id = EXCLUDED.correlation_id,
               version = station_orders.version + 1, received_at = EXCLUDED.received_at,
               updated_at = now()
           WHERE station_orders.dispatch_no < EXCLUDED.dispatch_no
               AND station_orders.status <> ALL($18::text[])
           RETURNING order_id""",
        event.order_id,
        p.station_id,
        p.dispatch_no,
        p.category,
        p.urgency,
        p.beneficiary_group,
        p.location.township_code,
        p.location.community_code,
        p.submitted_at,
        p.deadlines.dispatch_by,
        p.deadlines.accept_by,
        p.deadlines.assign_by,
        p.deadlines.complete_by,
        p.case.model_dump(mode="json"),
        now,
        event.correlation_id,
        status,
        list(ENDED_STATUSES),
    )
    if queued is None:
        holds_this_dispatch = await conn.fetchval(
            "SELECT true FROM station_orders"
            " WHERE order_id = $1 AND station_id = $2 AND dispatch_no = $3",
            event.order_id,
            p.station_id,
            p.dispatch_no,
        )
        if holds_this_dispatch:
            await _announce_received(conn, event, now)
        return
    await conn.execute(
        """INSERT INTO order_history (order_id, station_id, status, at, actor, note)
           VALUES ($1, $2, $3, $4, 'dispatch_center', $5)""",
        event.order_id,
        p.station_id,
        status,
        now,
        p.reason,
    )
    await _announce_received(conn, event, now)


async def _announce_received(
    conn: Connection, event: Envelope[OrderDispatched], now: datetime
) -> None:
    p = event.payload
    await outbox.add(
        conn,
        topics.STATION_EVENTS,
        new_event(
            OrderReceived(station_id=p.station_id, dispatch_no=p.dispatch_no),
            order_id=event.order_id,
            actor=Actor(kind="system", id=f"station:{p.station_id}"),
            correlation_id=event.correlation_id,
            occurred_at=now,
        ),
    )


async def _end(
    conn: Connection,
    event: Envelope[Any],
    status: OrderStatus,
    after: Sequence[OrderStatus],
    note: str | None,
) -> None:
    """The order ends at the station; its case details are erased after the retention time."""
    station_id = await conn.fetchval(
        """UPDATE station_orders SET status = $3, version = version + 1, ended_at = now(),
               updated_at = now()
           WHERE order_id = $1 AND status = ANY($2::text[])
           RETURNING station_id""",
        event.order_id,
        list(after),
        status,
    )
    if station_id is None:
        return
    await conn.execute(
        """INSERT INTO order_history (order_id, station_id, status, at, actor, note)
           VALUES ($1, $2, $3, $4, 'dispatch_center', $5)""",
        event.order_id,
        station_id,
        status,
        event.occurred_at,
        note,
    )


async def on_cancelled(conn: Connection, event: Envelope[Any]) -> None:
    """The center cancelled the order: it leaves the active queue; later actions get 409.
    Also an order this station rejected that the center held, so its case details go too."""
    p: OrderCancelled = event.payload
    await _end(conn, event, OrderStatus.CANCELLED, (*OPEN_STATUSES, OrderStatus.REJECTED), p.reason)


async def on_closed(conn: Connection, event: Envelope[Any]) -> None:
    """The center closed a completed order (after feedback, or without)."""
    await _end(conn, event, OrderStatus.CLOSED, (OrderStatus.COMPLETED,), None)


HANDLERS: dict[type[EventPayload], Handler] = {
    OrderDispatched: on_dispatched,
    OrderCancelled: on_cancelled,
    OrderClosed: on_closed,
}


def consumers(pool: Pool, broker: KafkaBroker, settings: Settings) -> list[EventConsumer]:
    return [
        EventConsumer(
            name="station_worker",
            topics=topics.READ_BY["station_worker"],
            pool=pool,
            broker=broker,
            applier=PerEvent(HANDLERS),
            max_event_bytes=settings.kafka.max_event_bytes,
        )
    ]
