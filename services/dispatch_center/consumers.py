"""What the center learns from the stations.

Events about a dispatch the order has moved on from (another station, an older dispatch
number, a cancelled order) change nothing: the station worker drops such orders itself. The
exception: an accept that happened before the deadline of the dispatch the order was escalated
from wins over the redispatch (lifecycle.accept_outcome).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from faststream.kafka import KafkaBroker

from services.dispatch_center import lifecycle
from services.dispatch_center.settings import CenterSettings
from shared import topics
from shared.consumer import EventConsumer, Handler, PerEvent
from shared.db import Connection, Pool
from shared.domain import OrderStatus
from shared.events import (
    Envelope,
    EventPayload,
    OrderAccepted,
    OrderAssigned,
    OrderCompleted,
    OrderReceived,
    OrderRejected,
    OrderStarted,
)
from shared.settings import Settings


async def on_received(conn: Connection, event: Envelope[Any]) -> None:
    """The station has the order: its dispatch needs no resending."""
    payload: OrderReceived = event.payload
    await conn.execute(
        """UPDATE orders SET received_at = $3, next_resend_at = NULL, updated_at = now()
           WHERE id = $1 AND dispatch_no = $2 AND received_at IS NULL""",
        event.order_id,
        payload.dispatch_no,
        event.occurred_at,
    )


# What the station reports after accepting -> the public status, and the statuses it may
# follow. (An accept: lifecycle.accept_outcome.)
PROGRESS: dict[type[EventPayload], tuple[OrderStatus, frozenset[OrderStatus]]] = {
    # A reassignment is another order.assigned, also from in_service (the new worker starts).
    OrderAssigned: (
        OrderStatus.ASSIGNED,
        frozenset({OrderStatus.ACCEPTED, OrderStatus.ASSIGNED, OrderStatus.IN_SERVICE}),
    ),
    OrderStarted: (OrderStatus.IN_SERVICE, frozenset({OrderStatus.ASSIGNED})),
    OrderCompleted: (
        OrderStatus.COMPLETED,
        frozenset({OrderStatus.ASSIGNED, OrderStatus.IN_SERVICE}),
    ),
}


async def on_accepted(conn: Connection, event: Envelope[Any]) -> None:
    p: OrderAccepted = event.payload
    order = await lifecycle.lock(conn, event.order_id)
    if order is None:
        return
    outcome = lifecycle.accept_outcome(order, p.station_id, event.occurred_at)
    if outcome is lifecycle.AcceptOutcome.TAKE_BACK:
        await lifecycle.write(
            conn, order, lifecycle.take_back_change(order, event, datetime.now(UTC))
        )
    elif outcome is lifecycle.AcceptOutcome.APPLY:
        await lifecycle.record_status(
            conn,
            order,
            OrderStatus.ACCEPTED,
            station_id=order["station_id"],
            reason=None,
            actor=event.actor,
            at=event.occurred_at,
            columns={
                **lifecycle.ACCEPTED_COLUMNS,
                "received_at": order["received_at"] or event.occurred_at,
            },
        )


async def on_progress(conn: Connection, event: Envelope[Any]) -> None:
    status, after = PROGRESS[type(event.payload)]
    order = await lifecycle.lock(conn, event.order_id)
    if order is None:
        return
    if isinstance(event.payload, OrderCompleted) and order["status"] not in lifecycle.FINAL:
        # The service was delivered, whatever the center did meanwhile: an operator's
        # redispatch that crossed the completion is void (the station worker keeps a completed
        # order and never queues such a redispatch).
        await _record_completion(conn, order, event)
        return
    if order["station_id"] != event.payload.station_id or order["status"] not in after:
        return
    await lifecycle.record_status(
        conn,
        order,
        status,
        station_id=order["station_id"],
        reason=None,
        actor=event.actor,
        at=event.occurred_at,
    )


async def _record_completion(
    conn: Connection, order: lifecycle.Order, event: Envelope[OrderCompleted]
) -> None:
    station_id = event.payload.station_id
    columns: dict[str, Any] = {}
    if order["station_id"] != station_id:
        columns = {
            "station_id": station_id,
            "accept_due_at": None,
            "next_resend_at": None,
            "awaiting_operator": False,
            "hold_reason": None,
        }
    await lifecycle.record_status(
        conn,
        order,
        OrderStatus.COMPLETED,
        station_id=station_id,
        reason=None,
        actor=event.actor,
        at=event.occurred_at,
        columns=columns,
    )


def on_rejected(settings: CenterSettings) -> Handler:
    async def handle(conn: Connection, event: Envelope[Any]) -> None:
        """The station returned the order: the next fallback station, or an operator."""
        p: OrderRejected = event.payload
        order = await lifecycle.lock(conn, event.order_id)
        if (
            order is None
            or order["station_id"] != p.station_id
            or order["dispatch_no"] != p.dispatch_no
            or order["status"] not in (OrderStatus.DISPATCHED, OrderStatus.ACCEPTED)
        ):
            return
        reason = f"rejected by {p.station_id}: {p.reason_code}"
        await lifecycle.record_status(
            conn,
            order,
            OrderStatus.REJECTED,
            station_id=p.station_id,
            reason=p.reason_code,
            actor=event.actor,
            at=event.occurred_at,
            columns={"accept_due_at": None, "next_resend_at": None},
        )
        await lifecycle.redispatch_or_hold(conn, settings, order["id"], reason, datetime.now(UTC))

    return handle


def handlers(settings: CenterSettings) -> dict[type[EventPayload], Handler]:
    progress: dict[type[EventPayload], Handler] = dict.fromkeys(PROGRESS, on_progress)
    return {
        OrderReceived: on_received,
        OrderAccepted: on_accepted,
        OrderRejected: on_rejected(settings),
        **progress,
    }


def consumers(pool: Pool, broker: KafkaBroker, settings: Settings) -> list[EventConsumer]:
    return [
        EventConsumer(
            name="dispatch_center",
            topics=topics.READ_BY["dispatch_center"],
            pool=pool,
            broker=broker,
            applier=PerEvent(handlers(cast(CenterSettings, settings))),
            max_event_bytes=settings.kafka.max_event_bytes,
        )
    ]
