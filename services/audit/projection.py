"""The timeliness projection: what one order's events say about its stages and deadlines.

A pure function of the *set* of the order's events: duplicates are dropped by event id and the
events are taken in the order they happened (``occurred_at``, then event id), whatever order
they arrived in. The consumer recomputes an order from its whole trail on every event, and
``swdispatch audit rebuild`` does the same for every order, so both always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.domain import OrderStatus, Stage

ENDED = frozenset({OrderStatus.COMPLETED, OrderStatus.CLOSED, OrderStatus.CANCELLED})

# The status an event moves an order to; events not listed (received, a re-sent dispatch)
# leave the status as it is.
STATUS_AFTER = {
    "order.submitted": OrderStatus.SUBMITTED,
    "order.unroutable": OrderStatus.UNROUTABLE,
    "order.dispatched": OrderStatus.DISPATCHED,
    "order.accepted": OrderStatus.ACCEPTED,
    "order.rejected": OrderStatus.REJECTED,
    "order.escalated": OrderStatus.ESCALATED,
    "order.assigned": OrderStatus.ASSIGNED,
    "order.started": OrderStatus.IN_SERVICE,
    "order.completed": OrderStatus.COMPLETED,
    "order.closed": OrderStatus.CLOSED,
    "order.cancelled": OrderStatus.CANCELLED,
}


@dataclass(frozen=True)
class Dispatch:
    """One dispatch of the order to a station (re-sends of it are not new dispatches)."""

    dispatch_no: int
    station_id: str
    dispatched_at: datetime
    reason: str | None = None
    received_at: datetime | None = None
    rejected_at: datetime | None = None
    reject_reason_code: str | None = None


@dataclass(frozen=True)
class Timeline:
    order_id: str
    status: OrderStatus | None = None
    station_id: str | None = None
    worker_id: str | None = None
    category: str | None = None
    urgency: str | None = None
    submitted_at: datetime | None = None
    dispatched_at: datetime | None = None
    received_at: datetime | None = None
    accepted_at: datetime | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    deadlines: dict[Stage, datetime] = field(default_factory=dict)
    dispatches: tuple[Dispatch, ...] = ()
    rejections: int = 0
    escalations: int = 0
    events: int = 0

    @property
    def redispatches(self) -> int:
        return max(len(self.dispatches) - 1, 0)

    def done_at(self, stage: Stage) -> datetime | None:
        return {
            Stage.DISPATCH: self.dispatched_at,
            Stage.ACCEPT: self.accepted_at,
            Stage.ASSIGN: self.assigned_at,
            Stage.COMPLETE: self.completed_at,
        }[stage]

    def stage_outcome(self, stage: Stage, now: datetime) -> str:
        """``met``, ``breached``, ``pending`` (open, deadline ahead) or ``not_applicable``
        (no deadline known, or the order ended before the deadline without this stage)."""
        deadline = self.deadlines.get(stage)
        if deadline is None:
            return "not_applicable"
        done = self.done_at(stage)
        if done is not None:
            return "met" if done <= deadline else "breached"
        if deadline < (self.ended_at or now):
            return "breached"
        return "pending" if self.ended_at is None else "not_applicable"


def _first(current: datetime | None, at: datetime) -> datetime:
    return at if current is None else current


# Events written in one transaction may carry the same time: break ties by lifecycle step.
LIFECYCLE_RANK: dict[str, float] = {
    **{kind: rank for rank, kind in enumerate(STATUS_AFTER)},
    "order.received": 2.5,
    # The center escalates and redispatches in one transaction: the escalation comes first.
    "order.escalated": 1.5,
}


def _sort_key(event: dict[str, Any]) -> tuple[datetime, float, str]:
    return (
        datetime.fromisoformat(event["occurred_at"]),
        LIFECYCLE_RANK.get(event["type"], 99),
        str(event["event_id"]),
    )


def project(order_id: str, events: Iterable[dict[str, Any]]) -> Timeline:
    """The timeline of one order from its (redacted, JSON-form) events."""
    unique = {str(e["event_id"]): e for e in events}
    t = Timeline(order_id=order_id)
    dispatches: dict[int, Dispatch] = {}
    for event in sorted(unique.values(), key=_sort_key):
        t = _apply(t, dispatches, event)
    return replace(t, dispatches=tuple(dispatches[n] for n in sorted(dispatches)))


def _apply(t: Timeline, dispatches: dict[int, Dispatch], event: dict[str, Any]) -> Timeline:
    kind: str = event["type"]
    at = datetime.fromisoformat(event["occurred_at"])
    p: dict[str, Any] = event["payload"]
    t = replace(t, events=t.events + 1)
    if "deadlines" in p:
        t = replace(
            t,
            deadlines={
                Stage.DISPATCH: datetime.fromisoformat(p["deadlines"]["dispatch_by"]),
                Stage.ACCEPT: datetime.fromisoformat(p["deadlines"]["accept_by"]),
                Stage.ASSIGN: datetime.fromisoformat(p["deadlines"]["assign_by"]),
                Stage.COMPLETE: datetime.fromisoformat(p["deadlines"]["complete_by"]),
            },
        )
    if "category" in p:
        t = replace(t, category=p["category"], urgency=p["urgency"])

    if _of_a_superseded_dispatch(t, dispatches, kind, p):
        return t
    if kind == "order.submitted":
        t = replace(t, submitted_at=at)
    elif kind == "order.dispatched":
        if t.submitted_at is None:
            t = replace(t, submitted_at=datetime.fromisoformat(p["submitted_at"]))
        no = int(p["dispatch_no"])
        if no in dispatches:
            return t  # a re-send (``resend_of``) of a dispatch: not a redispatch
        dispatches[no] = Dispatch(no, p["station_id"], at, reason=p.get("reason"))
        t = replace(t, dispatched_at=_first(t.dispatched_at, at), station_id=p["station_id"])
        if p.get("accepted_at"):
            # Back to a station that accepted an earlier dispatch in time: accepted then.
            accepted_at = datetime.fromisoformat(p["accepted_at"])
            t = replace(t, accepted_at=_first(t.accepted_at, accepted_at))
            return _move(t, OrderStatus.ACCEPTED, at)
    elif kind == "order.received":
        no = int(p["dispatch_no"])
        if no in dispatches and dispatches[no].received_at is None:
            dispatches[no] = replace(dispatches[no], received_at=at)
        t = replace(t, received_at=_first(t.received_at, at))
    elif kind == "order.rejected":
        no = int(p["dispatch_no"])
        if no in dispatches and dispatches[no].rejected_at is None:
            dispatches[no] = replace(
                dispatches[no], rejected_at=at, reject_reason_code=p["reason_code"]
            )
        t = replace(t, rejections=t.rejections + 1)
    elif kind == "order.escalated":
        t = replace(t, escalations=t.escalations + 1)
    elif kind == "order.accepted":
        t = replace(t, accepted_at=_first(t.accepted_at, at), station_id=p["station_id"])
    elif kind == "order.assigned":
        t = replace(t, assigned_at=_first(t.assigned_at, at), worker_id=p["worker_id"])
    elif kind == "order.started":
        t = replace(t, started_at=_first(t.started_at, at), worker_id=p["worker_id"])
    elif kind == "order.completed":
        t = replace(t, completed_at=_first(t.completed_at, at), worker_id=p["worker_id"])

    return _move(t, STATUS_AFTER.get(kind), at)


# What a station reports about the dispatch it holds.
STATION_PROGRESS = frozenset(
    {"order.accepted", "order.assigned", "order.started", "order.completed"}
)


def _of_a_superseded_dispatch(
    t: Timeline, dispatches: dict[int, Dispatch], kind: str, p: dict[str, Any]
) -> bool:
    """A station's report about a dispatch the order has moved on from (another station, an
    older dispatch number): the center ignores it, and so does the projection."""
    if kind in STATION_PROGRESS:
        return t.station_id is not None and p["station_id"] != t.station_id
    if kind == "order.rejected":
        return bool(dispatches) and int(p["dispatch_no"]) != max(dispatches)
    return False


def _move(t: Timeline, status: OrderStatus | None, at: datetime) -> Timeline:
    """Move to ``status``; an ended order stays ended (only a completed one can be closed)."""
    if status is None:
        return t
    if t.status in ENDED and not (
        t.status is OrderStatus.COMPLETED and status is OrderStatus.CLOSED
    ):
        return t
    ended_at = t.ended_at
    if status in ENDED and ended_at is None:
        ended_at = at
    return replace(t, status=status, ended_at=ended_at)
