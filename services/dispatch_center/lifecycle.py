"""Every change of an order at the center, each written by one statement.

A step (submit, dispatch, hold, escalate, cancel ...) is first worked out as a :class:`Change`:
the order's new column values, its public status changes and the events announcing them. One
statement then writes it all: the order row, the timeline, a status callback per status change
when the integration gave a callback URL, and the outbox, so they commit together. A new order
is inserted with its first changes (:func:`insert`, no transaction needed); later changes lock
the order first (:func:`lock`) and :func:`write` in the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
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
    OrderSubmitted,
    OrderUnroutable,
    new_event,
)

# A locked row, or (at intake) the columns of a new order about to be inserted.
Order = asyncpg.Record | dict[str, Any]

CENTER = Actor(kind="system", id="dispatch_center")

# Statuses after which nothing changes any more.
FINAL = frozenset({OrderStatus.COMPLETED, OrderStatus.CLOSED, OrderStatus.CANCELLED})


@dataclass(frozen=True)
class StatusChange:
    status: OrderStatus
    station_id: str | None
    reason: str | None
    actor: Actor
    at: datetime


@dataclass(frozen=True)
class Change:
    """What a step does to an order: new column values, status changes, events."""

    columns: dict[str, Any] = field(default_factory=dict)
    statuses: tuple[StatusChange, ...] = ()
    events: tuple[Envelope[Any], ...] = ()

    def __add__(self, later: Change) -> Change:
        return Change(
            {**self.columns, **later.columns},
            self.statuses + later.statuses,
            self.events + later.events,
        )

    @property
    def status(self) -> OrderStatus | None:
        """The public status after the change; None when it stays."""
        return self.statuses[-1].status if self.statuses else None


async def lock(conn: Connection, order_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
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


# --- writing a change ----------------------------------------------------------------------


class _Params:
    """Numbered query parameters: ``p(value)`` adds one and gives its ``$n``."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _timeline_sql(p: _Params, statuses: tuple[StatusChange, ...]) -> str:
    # Sorted before the insert, so the ids (the callbacks' sequence numbers) follow the order
    # of the changes.
    return f"""timeline AS (
        INSERT INTO order_timeline (order_id, status, station_id, at, reason, actor)
        SELECT changed.id, s.status, s.station_id, s.at, s.reason, s.actor
        FROM changed, unnest(
            {p([s.status.value for s in statuses])}::text[],
            {p([s.station_id for s in statuses])}::text[],
            {p([s.at for s in statuses])}::timestamptz[],
            {p([s.reason for s in statuses])}::text[],
            {p([f"{s.actor.kind}:{s.actor.id}" for s in statuses])}::text[]
        ) WITH ORDINALITY AS s(status, station_id, at, reason, actor, position)
        ORDER BY s.position
        RETURNING id, status, station_id, at, reason)"""  # noqa: S608 (parameters only)


# The body of a status callback; its ``sequence`` is the timeline row's id, known only here.
# ``at`` is written in UTC whatever the session's TimeZone.
_STATUS_CALLBACKS_SQL = """status_callbacks AS (
    INSERT INTO callbacks (order_id, integration_id, url, body)
    SELECT changed.id, changed.integration_id, changed.callback_url,
        json_build_object(
            'order_id', changed.id,
            'external_id', changed.external_id,
            'status', timeline.status,
            'station_id', timeline.station_id,
            'reason', timeline.reason,
            'at', to_char(timeline.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'sequence', timeline.id
        )::text
    FROM changed, timeline
    WHERE changed.callback_url IS NOT NULL
    ORDER BY timeline.id)"""


def _statement(write_order: str, p: _Params, change: Change) -> str:
    """``write_order`` (an INSERT or UPDATE of the order row) and the change's timeline,
    callbacks and events, each written only if the order row was."""
    parts = [f"changed AS ({write_order} RETURNING id, integration_id, external_id, callback_url)"]
    if change.statuses:
        parts += [_timeline_sql(p, change.statuses), _STATUS_CALLBACKS_SQL]
    if change.events:
        events_sql, args = outbox.insert_sql(
            topics.CENTER_EVENTS,
            change.events,
            first_param=len(p.values) + 1,
            when="EXISTS (SELECT FROM changed)",
        )
        p.values += args
        parts.append(f"events AS ({events_sql})")
    return "WITH " + ",\n".join(parts) + "\nSELECT id FROM changed"


def _new_values(order: Order, change: Change) -> dict[str, Any]:
    """The order columns the change sets; ``version`` counts status changes."""
    values = dict(change.columns)
    if change.status is not None:
        values["status"] = change.status
        values["version"] = order["version"] + len(change.statuses)
    return values


async def insert(conn: Connection, order: dict[str, Any], change: Change) -> bool:
    """Insert a new order with its first changes; False (and nothing written) when the
    integration sent this external_id before."""
    p = _Params()
    row = order | _new_values(order, change)
    columns = ", ".join(row)
    values = ", ".join(p(value) for value in row.values())
    write_order = (
        f"INSERT INTO orders ({columns}) VALUES ({values})"  # noqa: S608 (names from code)
        " ON CONFLICT (integration_id, external_id) DO NOTHING"
    )
    return await conn.fetchval(_statement(write_order, p, change), *p.values) is not None


async def write(conn: Connection, order: Order, change: Change) -> None:
    """Write a change of a locked order; ``order`` as locked, not yet changed since."""
    p = _Params()
    assignments = [f"{column} = {p(value)}" for column, value in _new_values(order, change).items()]
    if change.statuses:
        assignments.append("updated_at = now()")
    sets = ", ".join(assignments)
    write_order = f"UPDATE orders SET {sets} WHERE id = {p(order['id'])}"  # noqa: S608
    await conn.execute(_statement(write_order, p, change), *p.values)


# --- the steps -----------------------------------------------------------------------------


def _event(order: Order, payload: EventPayload, actor: Actor, at: datetime) -> Envelope[Any]:
    return new_event(
        payload, order_id=order["id"], actor=actor, correlation_id=str(order["id"]), occurred_at=at
    )


def status_change(
    status: OrderStatus, *, station_id: str | None, reason: str | None, actor: Actor, at: datetime
) -> Change:
    """The order's public status changes: timeline, and a callback to the integration."""
    return Change(statuses=(StatusChange(status, station_id, reason, actor, at),))


def submit_change(order: Order, actor: Actor) -> Change:
    """A new order: submitted, announced with everything but the case details."""
    payload = OrderSubmitted(
        integration_id=order["integration_id"],
        external_id=order["external_id"],
        category=order["category"],
        urgency=order["urgency"],
        beneficiary_group=order["beneficiary_group"],
        location=location_of(order),
        reported_at=order["reported_at"],
        deadlines=deadlines_of(order),
    )
    at = order["submitted_at"]
    return Change(events=(_event(order, payload, actor, at),)) + status_change(
        OrderStatus.SUBMITTED, station_id=None, reason=None, actor=actor, at=at
    )


def _dispatched_payload(
    order: Order,
    station_id: str,
    dispatch_no: int,
    reason: str | None,
    accepted_at: datetime | None = None,
) -> OrderDispatched:
    return OrderDispatched(
        station_id=station_id,
        dispatch_no=dispatch_no,
        reason=reason,
        accepted_at=accepted_at,
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


def dispatch_change(
    settings: CenterSettings,
    order: Order,
    station_id: str,
    *,
    reason: str | None,
    actor: Actor,
    now: datetime,
) -> Change:
    """Send the order to ``station_id`` as dispatch number ``dispatch_no + 1``."""
    dispatch_no = order["dispatch_no"] + 1
    event = _event(order, _dispatched_payload(order, station_id, dispatch_no, reason), actor, now)
    columns = {
        "station_id": station_id,
        "dispatch_no": dispatch_no,
        "dispatch_event_id": event.event_id,
        "received_at": None,
        "next_resend_at": now + timedelta(seconds=settings.resend_interval_s),
        "resends": 0,
        "accept_due_at": _accept_due(order, now),
        "tried_stations": [*order["tried_stations"], station_id],
        "awaiting_operator": False,
        "hold_reason": None,
    }
    return Change(columns, events=(event,)) + status_change(
        OrderStatus.DISPATCHED, station_id=station_id, reason=reason, actor=actor, at=now
    )


def hold_change(
    order: Order, status: OrderStatus, reason: str, *, actor: Actor, at: datetime
) -> Change:
    """Keep the order at the center for an operator."""
    change = Change(
        {
            "awaiting_operator": True,
            "hold_reason": reason,
            "next_resend_at": None,
            "accept_due_at": None,
        }
    )
    if status is OrderStatus.UNROUTABLE:
        unroutable = OrderUnroutable(location=location_of(order), reason=reason)
        change += Change(events=(_event(order, unroutable, actor, at),))
    if order["status"] != status:
        change += status_change(
            status, station_id=order["station_id"], reason=reason, actor=actor, at=at
        )
    return change


def route_change(
    settings: CenterSettings, order: Order, stations: list[str], now: datetime
) -> Change:
    """The first dispatch of a submitted order, or unroutable when no station covers it."""
    if stations:
        return dispatch_change(settings, order, stations[0], reason=None, actor=CENTER, now=now)
    return hold_change(
        order, OrderStatus.UNROUTABLE, "no station covers this community", actor=CENTER, at=now
    )


async def record_status(
    conn: Connection,
    order: Order,
    status: OrderStatus,
    *,
    station_id: str | None,
    reason: str | None,
    actor: Actor,
    at: datetime,
    columns: dict[str, Any] | None = None,
) -> None:
    """The order's public status changes (and ``columns`` with it)."""
    change = Change(columns or {}) + status_change(
        status, station_id=station_id, reason=reason, actor=actor, at=at
    )
    await write(conn, order, change)


async def redispatch_or_hold(
    conn: Connection, settings: CenterSettings, order_id: uuid.UUID, reason: str, now: datetime
) -> None:
    """After a rejection or an escalation: the next station that has not had the order yet, or
    the operator when there is none or the order was redispatched often enough."""
    order = await lock(conn, order_id)
    assert order is not None
    status = OrderStatus(order["status"])
    if order["redispatches"] >= settings.max_redispatches:
        why = f"{reason}; redispatched {order['redispatches']} times already"
        await write(conn, order, hold_change(order, status, why, actor=CENTER, at=now))
        return
    found = await routing.candidates(
        conn, order["community_code"], order["category"], exclude=order["tried_stations"]
    )
    if not found or not found.stations:
        why = f"{reason}; no further station covers this order"
        await write(conn, order, hold_change(order, status, why, actor=CENTER, at=now))
        return
    change = Change({"redispatches": order["redispatches"] + 1}) + dispatch_change(
        settings, order, found.stations[0], reason=reason, actor=CENTER, now=now
    )
    await write(conn, order, change)


async def resend(conn: Connection, settings: CenterSettings, order: Order, now: datetime) -> None:
    """Re-send an unacknowledged dispatch: a new event, the same dispatch number."""
    payload = _dispatched_payload(order, order["station_id"], order["dispatch_no"], None)
    event = _event(
        order, payload.model_copy(update={"resend_of": order["dispatch_event_id"]}), CENTER, now
    )
    columns = {
        "next_resend_at": now + timedelta(seconds=settings.resend_interval_s),
        "resends": order["resends"] + 1,
    }
    await write(conn, order, Change(columns, events=(event,)))


async def escalate(conn: Connection, settings: CenterSettings, order: Order, now: datetime) -> None:
    """The station did not accept in time: announce it, then redispatch or hold."""
    reason = f"not accepted by {order['station_id']} in time"
    escalated = OrderEscalated(stage=Stage.ACCEPT, station_id=order["station_id"], reason=reason)
    change = Change(
        {
            "accept_due_at": None,
            "next_resend_at": None,
            "escalated_station_id": order["station_id"],
            "escalated_accept_due_at": order["accept_due_at"],
        },
        events=(_event(order, escalated, CENTER, now),),
    ) + status_change(
        OrderStatus.ESCALATED, station_id=order["station_id"], reason=reason, actor=CENTER, at=now
    )
    await write(conn, order, change)
    await redispatch_or_hold(conn, settings, order["id"], reason, now)


class AcceptOutcome(StrEnum):
    APPLY = "apply"
    TAKE_BACK = "take_back"
    DROP = "drop"


def accept_outcome(order: Order, station_id: str, accepted_at: datetime) -> AcceptOutcome:
    """What a station's ``order.accepted`` (it happened at ``accepted_at``) does to the order.

    The station holding the current dispatch: it applies while the order waits for an accept
    (also late, after an escalation that found no other station: the station still holds the
    order). The station the order was escalated away from, when it accepted before that
    dispatch's deadline: the accept wins over the redispatch, unless the order has been
    accepted elsewhere or has ended since. Anything else is about a dispatch the order has
    moved on from, and is dropped."""
    status = OrderStatus(order["status"])
    if station_id == order["station_id"]:
        waiting = status in (OrderStatus.DISPATCHED, OrderStatus.ESCALATED)
        return AcceptOutcome.APPLY if waiting else AcceptOutcome.DROP
    due = order["escalated_accept_due_at"]
    if (
        station_id == order["escalated_station_id"]
        and due is not None
        and accepted_at <= due
        and status in (OrderStatus.DISPATCHED, OrderStatus.ESCALATED, OrderStatus.REJECTED)
    ):
        return AcceptOutcome.TAKE_BACK
    return AcceptOutcome.DROP


# The order's columns once a station has accepted it.
ACCEPTED_COLUMNS = {
    "accept_due_at": None,
    "next_resend_at": None,
    "awaiting_operator": False,
    "hold_reason": None,
    "escalated_station_id": None,
    "escalated_accept_due_at": None,
}


def take_back_change(order: Order, accepted: Envelope[Any], now: datetime) -> Change:
    """An accept that happened in time wins over the redispatch made meanwhile: the order goes
    back to the accepting station as a new dispatch that carries the acceptance. Its higher
    dispatch number withdraws the redispatch at the other station, as any redispatch does;
    the station worker queues it as accepted."""
    station_id = accepted.payload.station_id
    reason = f"accepted by {station_id} in time; the redispatch to {order['station_id']} is void"
    dispatch_no = order["dispatch_no"] + 1
    payload = _dispatched_payload(order, station_id, dispatch_no, reason, accepted.occurred_at)
    event = _event(order, payload, CENTER, now)
    columns = {
        **ACCEPTED_COLUMNS,
        "station_id": station_id,
        "dispatch_no": dispatch_no,
        "dispatch_event_id": event.event_id,
        "received_at": None,
        "resends": 0,
    }
    return Change(columns, events=(event,)) + status_change(
        OrderStatus.ACCEPTED, station_id=station_id, reason=reason, actor=accepted.actor, at=now
    )


async def cancel(
    conn: Connection, order: Order, reason: str, *, actor: Actor, at: datetime
) -> None:
    cancelled = OrderCancelled(station_id=order["station_id"], reason=reason)
    change = Change(
        {
            "next_resend_at": None,
            "accept_due_at": None,
            "awaiting_operator": False,
            "hold_reason": None,
        },
        events=(_event(order, cancelled, actor, at),),
    ) + status_change(
        OrderStatus.CANCELLED, station_id=order["station_id"], reason=reason, actor=actor, at=at
    )
    await write(conn, order, change)
