"""The station's rules, pure: statuses and transitions, who may do what, who sees the case,
whom an order may go to, and which workers to suggest first. No I/O.

Every read and write is scoped to the staff member's own station: another station's order,
worker or stream is "not found", never "forbidden", so its existence does not leak.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
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
"""Nothing the center sends changes these any more."""
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


def sees_case(staff: StaffMember, worker_id: str | None) -> bool:
    """Case details are for the station's managers and the order's assigned worker only."""
    return staff.is_manager or (worker_id is not None and staff.id == worker_id)


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
