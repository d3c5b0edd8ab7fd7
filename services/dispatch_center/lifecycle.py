"""Every change of an order at the center, each in the caller's transaction.

A change updates the order row, appends the public timeline (and queues a status callback when
the integration gave a callback URL) and writes its event to the outbox, so the three commit
together. Callers lock the order first (:func:`lock`).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.dispatch_center import routing
from services.dispatch_center.settings import CenterSettings
from shared import outbox, topics
from shared.db import Connection
from shared.domain import OrderStatus, Stage
from shared.events import (
    Actor,
    CaseDetails,
    Deadlines,
    Envelope,
    EventPayload,
    Location,
    OrderCancelled,
    OrderDispatched,
    OrderEscalated,
    OrderUnroutable,
    new_event,
)

Order = asyncpg.Record

CENTER = Actor(kind="system", id="dispatch_center")

# Statuses after which nothing changes any more.
FINAL = frozenset({OrderStatus.COMPLETED, OrderStatus.CLOSED, OrderStatus.CANCELLED})


async def lock(conn: Connection, order_id: uuid.UUID) -> Order | None:
    row: Order | None = await conn.fetchrow(
        "SELECT * FROM orders WHERE id = $1 FOR UPDATE", order_id
    )
    return row


def deadlines_of(order: Order) -> Deadlines:
    return Deadlines(
        dispatch_by=order["dispatch_by"],
        accept_by=order["accept_by"],
        assign_by=order["assign_by"],
        complete_by=order["complete_by"],
    )


def location_of(order: Order) -> Location:
    return Location(township_code=order["township_code"], community_code=order["community_code"])


async def _emit(
    conn: Connection, order: Order, payload: EventPayload, actor: Actor, at: datetime
) -> Envelope[Any]:
    event = new_event(
        payload, order_id=order["id"], actor=actor, correlation_id=str(order["id"]), occurred_at=at
    )
    await outbox.add(conn, topics.CENTER_EVENTS, event)
    return event


async def record_status(
    conn: Connection,
    order: Order,
    status: OrderStatus,
    *,
    station_id: str | None,
    reason: str | None,
    actor: Actor,
    at: datetime,
) -> None:
    """The order's public status changes: row, timeline, and a callback to the integration."""
    await conn.execute(
        "UPDATE orders SET status = $2, version = version + 1, updated_at = now() WHERE id = $1",
        order["id"],
        status,
    )
    sequence = await conn.fetchval(
        """INSERT INTO order_timeline (order_id, status, station_id, at, reason, actor)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        order["id"],
        status,
        station_id,
        at,
        reason,
        f"{actor.kind}:{actor.id}",
    )
    if order["callback_url"]:
        body = {
            "order_id": str(order["id"]),
            "external_id": order["external_id"],
            "status": status.value,
            "station_id": station_id,
            "reason": reason,
            "at": at.isoformat(),
            "sequence": sequence,
        }
        await conn.execute(
            "INSERT INTO callbacks (order_id, integration_id, url, body) VALUES ($1, $2, $3, $4)",
            order["id"],
            order["integration_id"],
            order["callback_url"],
            json.dumps(body, separators=(",", ":")),
        )


def _dispatched_payload(
    order: Order, station_id: str, dispatch_no: int, reason: str | None
) -> OrderDispatched:
    return OrderDispatched(
        station_id=station_id,
        dispatch_no=dispatch_no,
        reason=reason,
        category=order["category"],
        urgency=order["urgency"],
        beneficiary_group=order["beneficiary_group"],
        location=location_of(order),
        submitted_at=order["submitted_at"],
        deadlines=deadlines_of(order),
        case=CaseDetails.model_validate(order["case_details"]),
    )


def _accept_due(order: Order, now: datetime) -> datetime:
    """When this dispatch escalates: the order's acceptance window (accept_by - submitted_at)
    from now. For the first dispatch, at submission, that is accept_by; a redispatched order (or
    one an operator dispatches late) gives its station the whole window again, or it would
    escalate at once. Derived from the row, so every replica agrees."""
    window: timedelta = order["accept_by"] - order["submitted_at"]
    return now + window


async def dispatch(
    conn: Connection,
    settings: CenterSettings,
    order: Order,
    station_id: str,
    *,
    reason: str | None,
    actor: Actor,
    now: datetime,
) -> None:
    """Send the order to ``station_id`` as dispatch number ``dispatch_no + 1``."""
    dispatch_no = order["dispatch_no"] + 1
    event = await _emit(
        conn, order, _dispatched_payload(order, station_id, dispatch_no, reason), actor, now
    )
    await conn.execute(
        """UPDATE orders SET station_id = $2, dispatch_no = $3, dispatch_event_id = $4,
               received_at = NULL, next_resend_at = $5, resends = 0, accept_due_at = $6,
               tried_stations = array_append(tried_stations, $2),
               awaiting_operator = false, hold_reason = NULL
           WHERE id = $1""",
        order["id"],
        station_id,
        dispatch_no,
        event.event_id,
        now + timedelta(seconds=settings.resend_interval_s),
        _accept_due(order, now),
    )
    await record_status(
        conn,
        order,
        OrderStatus.DISPATCHED,
        station_id=station_id,
        reason=reason,
        actor=actor,
        at=now,
    )


async def hold(
    conn: Connection, order: Order, status: OrderStatus, reason: str, *, actor: Actor, at: datetime
) -> None:
    """Keep the order at the center for an operator."""
    await conn.execute(
        """UPDATE orders SET awaiting_operator = true, hold_reason = $2, next_resend_at = NULL,
               accept_due_at = NULL
           WHERE id = $1""",
        order["id"],
        reason,
    )
    if status is OrderStatus.UNROUTABLE:
        await _emit(
            conn, order, OrderUnroutable(location=location_of(order), reason=reason), actor, at
        )
    if order["status"] != status:
        await record_status(
            conn, order, status, station_id=order["station_id"], reason=reason, actor=actor, at=at
        )


async def route_new(
    conn: Connection, settings: CenterSettings, order: Order, now: datetime
) -> None:
    """The first dispatch of a submitted order, or unroutable when no station covers it."""
    stations = await routing.candidates(conn, order["community_code"], order["category"])
    if stations:
        await dispatch(conn, settings, order, stations[0], reason=None, actor=CENTER, now=now)
    else:
        await hold(
            conn,
            order,
            OrderStatus.UNROUTABLE,
            "no station covers this community",
            actor=CENTER,
            at=now,
        )


async def redispatch_or_hold(
    conn: Connection, settings: CenterSettings, order_id: uuid.UUID, reason: str, now: datetime
) -> None:
    """After a rejection or an escalation: the next station that has not had the order yet, or
    the operator when there is none or the order was redispatched often enough."""
    order = await lock(conn, order_id)
    assert order is not None
    if order["redispatches"] >= settings.max_redispatches:
        await hold(
            conn,
            order,
            OrderStatus(order["status"]),
            f"{reason}; redispatched {order['redispatches']} times already",
            actor=CENTER,
            at=now,
        )
        return
    stations = await routing.candidates(
        conn, order["community_code"], order["category"], exclude=order["tried_stations"]
    )
    if not stations:
        await hold(
            conn,
            order,
            OrderStatus(order["status"]),
            f"{reason}; no further station covers this order",
            actor=CENTER,
            at=now,
        )
        return
    await conn.execute(
        "UPDATE orders SET redispatches = redispatches + 1 WHERE id = $1", order["id"]
    )
    await dispatch(conn, settings, order, stations[0], reason=reason, actor=CENTER, now=now)


async def resend(conn: Connection, settings: CenterSettings, order: Order, now: datetime) -> None:
    """Re-send an unacknowledged dispatch: a new event, the same dispatch number."""
    payload = _dispatched_payload(order, order["station_id"], order["dispatch_no"], None)
    await _emit(
        conn,
        order,
        payload.model_copy(update={"resend_of": order["dispatch_event_id"]}),
        CENTER,
        now,
    )
    await conn.execute(
        "UPDATE orders SET next_resend_at = $2, resends = resends + 1 WHERE id = $1",
        order["id"],
        now + timedelta(seconds=settings.resend_interval_s),
    )


async def escalate(conn: Connection, settings: CenterSettings, order: Order, now: datetime) -> None:
    """The station did not accept in time: announce it, then redispatch or hold."""
    reason = f"not accepted by {order['station_id']} in time"
    await _emit(
        conn,
        order,
        OrderEscalated(stage=Stage.ACCEPT, station_id=order["station_id"], reason=reason),
        CENTER,
        now,
    )
    await conn.execute(
        "UPDATE orders SET accept_due_at = NULL, next_resend_at = NULL WHERE id = $1", order["id"]
    )
    await record_status(
        conn,
        order,
        OrderStatus.ESCALATED,
        station_id=order["station_id"],
        reason=reason,
        actor=CENTER,
        at=now,
    )
    await redispatch_or_hold(conn, settings, order["id"], reason, now)


async def cancel(
    conn: Connection, order: Order, reason: str, *, actor: Actor, at: datetime
) -> None:
    await _emit(
        conn, order, OrderCancelled(station_id=order["station_id"], reason=reason), actor, at
    )
    await conn.execute(
        """UPDATE orders SET next_resend_at = NULL, accept_due_at = NULL,
               awaiting_operator = false, hold_reason = NULL
           WHERE id = $1""",
        order["id"],
    )
    await record_status(
        conn,
        order,
        OrderStatus.CANCELLED,
        station_id=order["station_id"],
        reason=reason,
        actor=actor,
        at=at,
    )
