"""The station's rules, pure: statuses and transitions, who may do what, who sees the case,
whom an order may go to, and which workers to suggest first. No I/O.

Every read and write is scoped to the staff member's own station: another station's order,
worker or stream is "not found", never "forbidden", so its existence does not leak.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from shared.domain import Category, OrderStatus, Urgency
from shared.errors import Conflict, Forbidden, InvalidField, NotFound

Role = Literal["station_manager", "social_worker"]

OPEN_STATUSES = (
    OrderStatus.DISPATCHED,
    OrderStatus.ACCEPTED,
    OrderStatus.ASSIGNED,
    OrderStatus.IN_SERVICE,
)
ENDED_STATUSES = (OrderStatus.COMPLETED, OrderStatus.CLOSED, OrderStatus.CANCELLED)
"""Nothing the center sends changes these any more, but a redo reopens a completed order."""
REOPENED_BY_REDO = (OrderStatus.COMPLETED,)
"""A dispatch marked ``redo`` (发回重办, after the return visit) reopens an order completed here
or at another station: the order's completion stays in its history."""
ACTIVE_STATUSES = (OrderStatus.ASSIGNED, OrderStatus.IN_SERVICE)
"""A worker's load: the orders assigned to them and not finished yet."""

NO_SUCH_ORDER = "no such order"
WORKER_FIELD = ("body", "worker_id")


@dataclass(frozen=True)
class StaffMember:
    id: str
    name: str
    station_id: str
    role: Role
    token_hash: str = field(repr=False)

    @property
    def is_manager(self) -> bool:
        return self.role == "station_manager"


@dataclass(frozen=True)
class Order:
    """An order as an action finds it at the station (its row locked while the action runs)."""

    order_id: uuid.UUID
    station_id: str
    status: OrderStatus
    version: int
    dispatch_no: int
    category: Category
    worker_id: str | None
    correlation_id: str | None


@dataclass(frozen=True)
class Worker:
    """A social worker's profile and load."""

    worker_id: str
    name: str
    skills: tuple[Category, ...]
    capacity: int
    on_duty: bool
    active_orders: int

    @property
    def has_room(self) -> bool:
        return self.active_orders < self.capacity


@dataclass(frozen=True)
class QueueFilter:
    """Which of the station's orders a listing shows (``statuses`` empty: the open ones)."""

    statuses: tuple[OrderStatus, ...] = ()
    urgencies: tuple[Urgency, ...] = ()
    overdue: bool | None = None
    worker_id: str | None = None

    @property
    def shown_statuses(self) -> tuple[OrderStatus, ...]:
        return self.statuses or OPEN_STATUSES


# ---------------------------------------------------------------------- statuses and transitions


class Action(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    ASSIGN = "assign"
    REASSIGN = "reassign"
    START = "start"
    COMPLETE = "complete"


@dataclass(frozen=True)
class Transition:
    allowed_from: tuple[OrderStatus, ...]
    to: OrderStatus


TRANSITIONS: dict[Action, Transition] = {
    Action.ACCEPT: Transition((OrderStatus.DISPATCHED,), OrderStatus.ACCEPTED),
    Action.REJECT: Transition((OrderStatus.DISPATCHED,), OrderStatus.REJECTED),
    Action.ASSIGN: Transition((OrderStatus.ACCEPTED,), OrderStatus.ASSIGNED),
    # A reassigned order waits for its new worker to start it.
    Action.REASSIGN: Transition(ACTIVE_STATUSES, OrderStatus.ASSIGNED),
    Action.START: Transition((OrderStatus.ASSIGNED,), OrderStatus.IN_SERVICE),
    Action.COMPLETE: Transition((OrderStatus.IN_SERVICE,), OrderStatus.COMPLETED),
}


def current(order: Order) -> dict[str, object]:
    """What a 409 says about the order."""
    return {"status": order.status, "version": order.version}


def check_transition(action: Action, order: Order, expected_version: int | None) -> OrderStatus:
    """The status ``action`` moves ``order`` to; Conflict when its status (or, with
    ``expected_version``, its version) does not allow it."""
    transition = TRANSITIONS[action]
    if order.status not in transition.allowed_from:
        raise Conflict(f"cannot {action} an order that is {order.status}", current=current(order))
    if expected_version is not None and expected_version != order.version:
        raise Conflict(
            f"the order changed (version {order.version}, not {expected_version})",
            current=current(order),
        )
    return transition.to


def kept_statuses(redo: bool) -> tuple[OrderStatus, ...]:
    """The statuses a newer dispatch (higher ``dispatch_no``) leaves the order in: the ended
    ones, except that a redo reopens a completed order."""
    if not redo:
        return ENDED_STATUSES
    return tuple(s for s in ENDED_STATUSES if s not in REOPENED_BY_REDO)


def arrival_status(accepted_before: bool) -> OrderStatus:
    """A dispatch back at a station that accepted an earlier one in time is accepted already."""
    return OrderStatus.ACCEPTED if accepted_before else OrderStatus.DISPATCHED


# ---------------------------------------------------------------------------------- permissions

MANAGERS_ONLY = frozenset({Action.ASSIGN, Action.REASSIGN})
ASSIGNED_WORKER_OR_MANAGER = {
    Action.START: "start the service",
    Action.COMPLETE: "complete the service",
}
# Accept and reject: the station manager or the duty social worker (docs/domain.md).


def require_station(staff: StaffMember, station_id: str) -> None:
    if staff.station_id != station_id:
        raise NotFound("no such station")


def require_order(staff: StaffMember, order: Order | None) -> Order:
    """The order, when it is at the staff member's station; NotFound otherwise."""
    if order is None or order.station_id != staff.station_id:
        raise NotFound(NO_SUCH_ORDER)
    return order


def require_manager(staff: StaffMember, what: str) -> None:
    if not staff.is_manager:
        raise Forbidden(f"only a station manager may {what}")


def authorize(action: Action, staff: StaffMember, order: Order) -> None:
    """Forbidden unless ``staff`` (of the order's station) may do ``action`` to ``order``."""
    if action in MANAGERS_ONLY:
        require_manager(staff, str(action))
    elif action in ASSIGNED_WORKER_OR_MANAGER and not (
        staff.is_manager or staff.id == order.worker_id
    ):
        what = ASSIGNED_WORKER_OR_MANAGER[action]
        raise Forbidden(f"only the assigned social worker or a manager may {what}")


def sees_case(
    staff: StaffMember, worker_id: str | None, follow_up_worker: str | None = None
) -> bool:
    """Case details are for the station's managers, the order's assigned worker and the worker
    of its open follow-up task only."""
    return staff.is_manager or staff.id in {w for w in (worker_id, follow_up_worker) if w}


# ------------------------------------------------------------------------------------- workers


def check_assignable(order: Order, worker_id: str, worker: Worker | None) -> None:
    """InvalidField at the body's ``worker_id`` unless ``worker`` (looked up by ``worker_id``
    at the order's station, None when there is none) can take ``order``."""
    if worker_id == order.worker_id:
        raise InvalidField(WORKER_FIELD, "the order is already assigned to this worker")
    if worker is None:
        raise InvalidField(WORKER_FIELD, "no such social worker at this station")
    if not worker.on_duty:
        raise InvalidField(WORKER_FIELD, "the social worker is not on duty")
    if not worker.has_room:
        raise InvalidField(
            WORKER_FIELD,
            f"the social worker already carries {worker.active_orders} of {worker.capacity} orders",
        )


def rank_workers(workers: Iterable[Worker], category: Category) -> list[Worker]:
    """On-duty workers with room for one more order: skill match first, then the lightest
    load, then by id."""
    return sorted(
        (w for w in workers if w.on_duty and w.has_room),
        key=lambda w: (category not in w.skills, w.active_orders, w.worker_id),
    )


# ----------------------------------------------------------------------------------- follow-ups

FOLLOW_UP_HORIZON = timedelta(days=366)
"""How far ahead a follow-up visit may be planned."""
FOLLOW_UP_BY_FIELD = ("body", "follow_up_by")
FOLLOW_UP_PLAN_FIELD = ("body", "follow_up_plan")
VISITED_ON_FIELD = ("body", "visited_on")
NEXT_FOLLOW_UP_FIELD = ("body", "next_follow_up_by")


@dataclass(frozen=True)
class FollowUp:
    """A follow-up task (跟进回访) as an action finds it (its row locked while the action runs):
    the worker owes the resident a visit by ``due_on``. ``completed_on`` is the day of the
    completion that opened it; no visit is earlier."""

    order_id: uuid.UUID
    station_id: str
    worker_id: str
    due_on: date
    completed_on: date
    is_open: bool
    version: int


def today(now: datetime) -> date:
    """The calendar day of ``now``: follow-up days are UTC days."""
    return now.astimezone(UTC).date()


def follow_up_overdue(due_on: date, today: date) -> bool:
    """A follow-up is overdue once its due day has passed (it may be made on the day)."""
    return due_on < today


def check_follow_up(follow_up_by: date | None, plan: str | None, completed_on: date) -> None:
    """InvalidField unless a completion's follow-up is a date from ``completed_on`` to a year
    after it, with a plan only when there is a date."""
    if follow_up_by is None:
        if plan is not None:
            raise InvalidField(FOLLOW_UP_PLAN_FIELD, "a follow-up plan needs a follow_up_by date")
        return
    _check_ahead(FOLLOW_UP_BY_FIELD, follow_up_by, completed_on, "the completion")


def _check_ahead(loc: tuple[str, str], when: date, start: date, what: str) -> None:
    if when < start:
        raise InvalidField(loc, f"must not be before {what} ({start.isoformat()})")
    if when > start + FOLLOW_UP_HORIZON:
        raise InvalidField(loc, f"must be within {FOLLOW_UP_HORIZON.days} days of {what}")


def check_visit(task: FollowUp, visited_on: date, next_by: date | None, today: date) -> None:
    """InvalidField unless the visit falls between the completion and ``today`` and the next
    follow-up (if any) is not before the visit (nor more than a year after it)."""
    if visited_on > today:
        raise InvalidField(VISITED_ON_FIELD, "a visit cannot be recorded before it is made")
    if visited_on < task.completed_on:
        raise InvalidField(
            VISITED_ON_FIELD,
            f"must not be before the completion ({task.completed_on.isoformat()})",
        )
    if next_by is not None:
        _check_ahead(NEXT_FOLLOW_UP_FIELD, next_by, visited_on, "the visit")


def follow_up_current(task: FollowUp) -> dict[str, object]:
    """What a 409 says about the follow-up task."""
    return {
        "follow_up": "open" if task.is_open else "ended",
        "due_on": task.due_on.isoformat(),
        "version": task.version,
    }


def require_open_follow_up(task: FollowUp | None, order: Order) -> FollowUp:
    """The order's open follow-up task; Conflict when it has none (or it ended)."""
    if task is None:
        raise Conflict("the order has no follow-up task", current=current(order))
    if not task.is_open:
        raise Conflict("the order's follow-up task has ended", current=follow_up_current(task))
    return task


def authorize_follow_up(staff: StaffMember, task: FollowUp) -> None:
    """Forbidden unless ``staff`` is the task's worker or a manager of its station."""
    if not (staff.is_manager or staff.id == task.worker_id):
        raise Forbidden("only the follow-up's social worker or a manager may record its visits")


def check_follow_up_worker(task: FollowUp, worker_id: str, is_active_worker: bool) -> None:
    """InvalidField at the body's ``worker_id`` unless the follow-up can go to that worker
    (an active social worker of the station, not the one who has it)."""
    if worker_id == task.worker_id:
        raise InvalidField(WORKER_FIELD, "the follow-up is already this worker's")
    if not is_active_worker:
        raise InvalidField(WORKER_FIELD, "no such active social worker at this station")
