"""What changes an order at the station: its staff's actions, and the center's dispatches,
cancellations and closings.

An action locks the order's row, checks the role, the status and the expected version, then
changes the order, records its history and writes its event to the outbox in one transaction:
of two staff acting at once, exactly one wins and the other gets 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.station_worker import store
from services.station_worker.api.schemas import AssignBody, CompleteBody, RejectBody, StationOrder
from services.station_worker.domain import (
    OPEN_STATUSES,
    Action,
    Order,
    StaffMember,
    arrival_status,
    authorize,
    check_assignable,
    check_follow_up,
    check_transition,
    require_order,
    today,
)
from services.station_worker.queue import order_view
from shared import outbox, topics
from shared.db import Connection, Pool
from shared.domain import OrderStatus
from shared.events import (
    Actor,
    Envelope,
    EventPayload,
    OrderAccepted,
    OrderAssigned,
    OrderCompleted,
    OrderDispatched,
    OrderReceived,
    OrderRejected,
    OrderStarted,
    new_event,
)


@dataclass(frozen=True)
class Attempt:
    """``staff`` acts on ``order_id``, as they saw it at ``expected_version`` (None: any)."""

    staff: StaffMember
    order_id: uuid.UUID
    expected_version: int | None


MakeEvent = Callable[[Order], EventPayload]
Then = Callable[[Connection, Order, datetime], Awaitable[None]]
"""More of the action's work, in its transaction (an error there undoes the action)."""


async def act(
    pool: Pool,
    attempt: Attempt,
    action: Action,
    event: MakeEvent,
    *,
    worker_id: str | None = None,
    note: str | None = None,
    then: Then | None = None,
) -> StationOrder:
    """Apply ``action`` to the order, or raise the domain error that says why. ``worker_id``
    (assign, reassign) is checked against the station's workers; None keeps the order's."""
    staff = attempt.staff
    async with pool.acquire() as conn, conn.transaction():
        order = require_order(
            staff, await store.lock_order(conn, staff.station_id, attempt.order_id)
        )
        authorize(action, staff, order)
        to = check_transition(action, order, attempt.expected_version)
        if worker_id is not None:
            worker = await store.lock_worker(conn, staff.station_id, worker_id)
            check_assignable(order, worker_id, worker)
        now = datetime.now(UTC)
        actor = Actor(kind="station_staff", id=staff.id)
        await store.move_order(conn, order.order_id, to, worker_id, now)
        await store.add_history(conn, order.order_id, staff.station_id, to, now, actor.text, note)
        if then is not None:
            await then(conn, order, now)
        await outbox.add(
            conn,
            topics.STATION_EVENTS,
            new_event(
                event(order),
                order_id=order.order_id,
                actor=actor,
                correlation_id=order.correlation_id,
                occurred_at=now,
            ),
        )
        return await order_view(conn, staff, order.order_id)


async def accept(pool: Pool, attempt: Attempt) -> StationOrder:
    station_id = attempt.staff.station_id
    return await act(pool, attempt, Action.ACCEPT, lambda _: OrderAccepted(station_id=station_id))


async def reject(pool: Pool, attempt: Attempt, body: RejectBody) -> StationOrder:
    def event(o: Order) -> EventPayload:
        return OrderRejected(
            station_id=o.station_id,
            dispatch_no=o.dispatch_no,
            reason_code=body.reason_code,
            note=body.note,
        )

    return await act(pool, attempt, Action.REJECT, event, note=body.reason_code)


async def assign(
    pool: Pool, attempt: Attempt, body: AssignBody, action: Action = Action.ASSIGN
) -> StationOrder:
    def event(o: Order) -> EventPayload:
        return OrderAssigned(station_id=o.station_id, worker_id=body.worker_id)

    return await act(pool, attempt, action, event, worker_id=body.worker_id, note=body.worker_id)


async def start(pool: Pool, attempt: Attempt) -> StationOrder:
    def event(o: Order) -> EventPayload:
        return OrderStarted(station_id=o.station_id, worker_id=o.worker_id or "")

    return await act(pool, attempt, Action.START, event)


async def complete(pool: Pool, attempt: Attempt, body: CompleteBody) -> StationOrder:
    """Complete the service; with ``follow_up_by``, the completing worker gets a follow-up task
    due that day (the completion's ``follow_up_needed`` is then true)."""

    def event(o: Order) -> EventPayload:
        return OrderCompleted(
            station_id=o.station_id,
            worker_id=o.worker_id or "",
            outcome=body.outcome,
            service_minutes=body.service_minutes,
            follow_up_needed=body.follow_up_needed or body.follow_up_by is not None,
            summary=body.summary,
            follow_up_by=body.follow_up_by,
            follow_up_plan=body.follow_up_plan,
        )

    async def open_follow_up(conn: Connection, o: Order, now: datetime) -> None:
        check_follow_up(body.follow_up_by, body.follow_up_plan, today(now))
        if body.follow_up_by is not None and o.worker_id is not None:
            await store.open_follow_up(
                conn,
                o.order_id,
                o.station_id,
                o.worker_id,
                body.follow_up_by,
                body.follow_up_plan,
                now,
            )

    return await act(pool, attempt, Action.COMPLETE, event, note=body.outcome, then=open_follow_up)


# --------------------------------------------------------------------- what the center sends


async def receive(conn: Connection, event: Envelope[OrderDispatched]) -> None:
    """Queue the order at its station and tell the center it arrived.

    A redispatch (higher ``dispatch_no``) replaces the earlier one, also when it moves the
    order to another station; an older dispatch changes nothing. A re-sent dispatch (same
    ``dispatch_no``, new event id) changes nothing either but is acknowledged again: the center
    re-sends because it never heard the first acknowledgement (lost with a broker restart).
    A redispatch that crossed the order's completion (or closing, or cancellation) changes
    nothing and is not acknowledged: the center learns of the completion and keeps it.

    A redo (发回重办: ``redo`` set, after the return visit) is the exception: it reopens the
    completed order, here or at another station, as a new dispatch with its fresh deadlines
    and no worker; the earlier steps stay in the order's history, and an open follow-up task
    of the earlier completion ends as superseded.
    """
    p = event.payload
    now = datetime.now(UTC)
    status = arrival_status(p.accepted_at is not None)
    if await store.queue_dispatch(conn, event.order_id, p, status, now, event.correlation_id):
        note = p.reason
        if p.redo is not None:
            note = f"redo {p.redo.send_back_no}: {p.redo.reason}"
            await store.supersede_follow_up(conn, event.order_id, now)
        await store.add_history(
            conn, event.order_id, p.station_id, status, now, event.actor.text, note
        )
    elif not await store.holds_dispatch(conn, event.order_id, p.station_id, p.dispatch_no):
        return
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


async def end(
    conn: Connection,
    event: Envelope[Any],
    status: OrderStatus,
    after: Sequence[OrderStatus],
    note: str | None,
) -> None:
    """The order ends at the station; its case details are erased after the retention time."""
    station_id = await store.end_order(conn, event.order_id, status, after)
    if station_id is not None:
        await store.add_history(
            conn, event.order_id, station_id, status, event.occurred_at, event.actor.text, note
        )


CANCELLABLE = (*OPEN_STATUSES, OrderStatus.REJECTED)
"""Also an order this station rejected that the center held, so its case details go too."""
