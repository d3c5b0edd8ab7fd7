"""The center's rules, pure: the order, what each step does to it, and who may do what.

A step (submit, dispatch, hold, escalate, cancel ...) is worked out as a :class:`Change`: the
order's new column values, its public status changes and the events announcing them. The
store writes a Change in one statement (order row, timeline, status callbacks, outbox), so a
use case reads the order once, asks this module what happens, and writes once.
No I/O here, no SQL, no web framework.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.dispatch_center.settings import CenterSettings
from shared.domain import (
    BeneficiaryGroup,
    Category,
    OrderStatus,
    Satisfaction,
    Stage,
    Urgency,
    current_deadline,
)
from shared.errors import Conflict, Forbidden, InvalidField
from shared.events import (
    Actor,
    CaseDetails,
    Deadlines,
    Envelope,
    EventPayload,
    Location,
    OrderAccepted,
    OrderAssigned,
    OrderAwaitingFeedback,
    OrderCancelled,
    OrderClosed,
    OrderCompleted,
    OrderDispatched,
    OrderEscalated,
    OrderFeedbackReceived,
    OrderRejected,
    OrderSentBack,
    OrderStarted,
    OrderSubmitted,
    OrderSupervisionOpened,
    OrderUnroutable,
    Redo,
    new_event,
)

CENTER = Actor(kind="system", id="dispatch_center")

# Statuses after which nothing changes any more.
FINAL = frozenset({OrderStatus.CLOSED, OrderStatus.CLOSED_WITHOUT_FEEDBACK, OrderStatus.CANCELLED})
# The service was delivered (the order waits for its return visit) or the order has ended: a
# completion changes nothing, nor may an operator redispatch or cancel it (a send-back is the
# way back to a station).
SERVED = FINAL | {OrderStatus.COMPLETED, OrderStatus.AWAITING_FEEDBACK}

# The third send-back of one order opens supervision (督办).
SUPERVISION_AT_SEND_BACKS = 3


# --- who calls the center --------------------------------------------------------------------


@dataclass(frozen=True)
class Integration:
    id: str
    name: str


@dataclass(frozen=True)
class Operator:
    id: str
    name: str
    role: str
    stations: tuple[str, ...] | None = None
    """The operator's scope (a county's stations, say): they see and act on these stations'
    orders and figures only, and orders with no station in a township one of them serves;
    anything else is 404 to them. None: every station."""

    @property
    def actor(self) -> Actor:
        return Actor(kind="operator", id=self.id)

    def covers(self, station_id: str) -> bool:
        """Whether the station is in the operator's scope."""
        return self.stations is None or station_id in self.stations


def station_scope(station_ids: Iterable[str] | None) -> tuple[str, ...] | None:
    """An operator's scope as stored: each station once, sorted; None: every station. An
    empty list is refused (it would see nothing; None is the way to see everything)."""
    if station_ids is None:
        return None
    scope = tuple(sorted(set(station_ids)))
    if not scope:
        raise InvalidField(("stations",), "names no station", type="empty_scope")
    return scope


@dataclass(frozen=True)
class Scope:
    """What an operator may touch and name: their stations, and the townships those stations
    serve as they stand before the request changes anything (so no request can widen it);
    None: everything."""

    stations: frozenset[str] | None
    townships: frozenset[str] | None

    def has_station(self, station_id: str) -> bool:
        return self.stations is None or station_id in self.stations

    def has_township(self, township_code: str) -> bool:
        return self.townships is None or township_code in self.townships


@dataclass(frozen=True)
class Named:
    """A value a request names, at ``loc``: one station, several, or a township."""

    loc: tuple[str, ...]
    stations: tuple[str, ...] = ()
    township: str | None = None

    @classmethod
    def station(cls, loc: tuple[str, ...], station_id: str | None) -> Named:
        return cls(loc, stations=() if station_id is None else (station_id,))


def check_named(scope: Scope, unknown: Iterable[str], named: Iterable[Named]) -> None:
    """The one scope check of every value an operator's request names: each station must
    exist and be in the scope (else 422 ``unknown_station``: outside the scope a station is
    as unknown as a missing one), each township must be served by one of the operator's
    stations (else 422 ``out_of_scope``). The first field outside is named."""
    missing = set(unknown)
    for n in named:
        if outside := [s for s in n.stations if s in missing or not scope.has_station(s)]:
            detail = (
                "no station with this id"
                if len(n.stations) == 1
                else f"unknown stations: {outside}"
            )
            raise InvalidField(n.loc, detail, type="unknown_station")
        if n.township is not None and not scope.has_township(n.township):
            raise InvalidField(
                n.loc, "none of your stations serves this township", type="out_of_scope"
            )


def station_usable(operator: Operator, station_id: str, active: bool) -> bool:
    """Whether the operator may (re)dispatch or send an order to the station: an active one
    in their scope. Outside it the station is as unknown to them as a missing one."""
    return active and operator.covers(station_id)


def may_manage_deployment(operator: Operator) -> Operator:
    """Integrations serve the whole deployment: only an operator bound to no stations may
    see or manage them."""
    if operator.stations is not None:
        raise Forbidden("integrations belong to the whole deployment, not to your stations")
    return operator


def may_act(operator: Operator) -> Operator:
    """Operators may act; viewers may only look."""
    if operator.role != "operator":
        raise Forbidden("this operator may only read")
    return operator


def over_rate_limit(requests: int, own_limit: int | None, default_limit: int) -> int | None:
    """The limit the integration is over with ``requests`` in this window; None when within."""
    limit = own_limit or default_limit
    return limit if requests > limit else None


# --- the order -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """An order as the center keeps it (one row of ``orders``)."""

    id: uuid.UUID
    integration_id: str
    external_id: str
    request_hash: str
    status: OrderStatus
    version: int
    station_id: str | None
    dispatch_no: int
    category: Category
    urgency: Urgency
    beneficiary_group: BeneficiaryGroup
    township_code: str
    community_code: str
    reported_at: datetime
    submitted_at: datetime
    dispatch_by: datetime
    accept_by: datetime
    assign_by: datetime
    complete_by: datetime
    callback_url: str | None
    case_details: Mapping[str, Any]
    """Personal data: never logged, sent only to the station."""
    received_at: datetime | None = None
    dispatch_event_id: uuid.UUID | None = None
    next_resend_at: datetime | None = None
    resends: int = 0
    accept_due_at: datetime | None = None
    redispatches: int = 0
    tried_stations: tuple[str, ...] = ()
    awaiting_operator: bool = False
    hold_reason: str | None = None
    escalated_station_id: str | None = None
    escalated_accept_due_at: datetime | None = None
    feedback_due_at: datetime | None = None
    feedback_at: datetime | None = None
    feedback_resolved: bool | None = None
    feedback_satisfaction: Satisfaction | None = None
    send_backs: int = 0
    send_back_reason: str | None = None
    deadlines_from: datetime | None = None
    """When accept_by, assign_by and complete_by were counted from: the submission (None)
    or the last send-back."""

    @property
    def redo(self) -> Redo | None:
        """What a dispatch of the order says of its last send-back; None: never sent back."""
        if self.send_backs == 0:
            return None
        return Redo(
            send_back_no=self.send_backs,
            reason=self.send_back_reason or "",
            resolved=self.feedback_resolved,
            satisfaction=self.feedback_satisfaction,
        )

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(
            dispatch_by=self.dispatch_by,
            accept_by=self.accept_by,
            assign_by=self.assign_by,
            complete_by=self.complete_by,
        )

    @property
    def location(self) -> Location:
        return Location(township_code=self.township_code, community_code=self.community_code)

    def pick(self, *names: str) -> dict[str, Any]:
        """These fields by name (for the views and events that copy them)."""
        return {name: getattr(self, name) for name in names}

    def described(self) -> dict[str, Any]:
        """What every announcement of the order says about it (without personal data)."""
        return {
            **self.pick("category", "urgency", "beneficiary_group"),
            "location": self.location,
            "deadlines": self.deadlines,
        }

    def current_deadline(self) -> datetime | None:
        return current_deadline(
            self.status,
            {
                Stage.DISPATCH: self.dispatch_by,
                Stage.ACCEPT: self.accept_by,
                Stage.ASSIGN: self.assign_by,
                Stage.COMPLETE: self.complete_by,
            },
        )

    def overdue(self, now: datetime) -> bool:
        """Open and past the deadline of the stage it is in."""
        deadline = self.current_deadline()
        return deadline is not None and deadline < now


@dataclass(frozen=True)
class OrderFilter:
    """Which orders an operator lists; None: any."""

    status: OrderStatus | None
    station_id: str | None
    urgency: Urgency | None
    overdue: bool | None
    awaiting_operator: bool | None


@dataclass(frozen=True)
class Station:
    id: str
    name: str
    township_code: str
    active: bool = True


@dataclass(frozen=True)
class Community:
    code: str
    name: str
    township_code: str
    station_id: str | None
    """The covering station; None: nobody."""
    fallbacks: list[str]

    def check(self) -> None:
        """The covering station and the fallbacks name each station once."""
        check_coverage(self.station_id, self.fallbacks)


@dataclass(frozen=True)
class TimelineEntry:
    status: OrderStatus
    at: datetime
    station_id: str | None
    reason: str | None
    actor: str | None


def deadlines_for(settings: CenterSettings, urgency: Urgency, submitted_at: datetime) -> Deadlines:
    """Every stage's deadline, measured from submission."""
    offsets = settings.deadline_offsets(urgency)
    return Deadlines(
        dispatch_by=submitted_at + offsets[Stage.DISPATCH],
        accept_by=submitted_at + offsets[Stage.ACCEPT],
        assign_by=submitted_at + offsets[Stage.ASSIGN],
        complete_by=submitted_at + offsets[Stage.COMPLETE],
    )


# --- routing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    township_code: str
    """The community's township, for intake to check the request's location against."""
    stations: list[str]
    """Best first: the township's category override, the covering station, the fallbacks."""


def distinct_stations(ranked: Iterable[str | None], exclude: Iterable[str] = ()) -> list[str]:
    """The ranked station ids, each once, none of ``exclude``."""
    skip = set(exclude)
    ordered: list[str] = []
    for station_id in ranked:
        if station_id is not None and station_id not in ordered and station_id not in skip:
            ordered.append(station_id)
    return ordered


def checked_location(township_code: str, found: Candidates | None) -> Candidates:
    """The community's candidates, once it exists and lies in the request's township."""
    if found is None:
        raise InvalidField(
            ("body", "location", "community_code"), "unknown community", type="unknown_community"
        )
    if found.township_code != township_code:
        raise InvalidField(
            ("body", "location", "township_code"),
            "the community is not in this township",
            type="township_mismatch",
        )
    return found


# --- changes ---------------------------------------------------------------------------------


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

    def values(self, order: Order) -> dict[str, Any]:
        """The order columns the change sets; ``version`` counts status changes."""
        values = dict(self.columns)
        if self.status is not None:
            values["status"] = self.status
            values["version"] = order.version + len(self.statuses)
        return values


def apply(order: Order, change: Change) -> Order:
    """The order as it is after ``change``."""
    return replace(order, **change.values(order))


def _event(order: Order, payload: EventPayload, actor: Actor, at: datetime) -> Envelope[Any]:
    return new_event(
        payload, order_id=order.id, actor=actor, correlation_id=str(order.id), occurred_at=at
    )


def status_change(
    status: OrderStatus, *, station_id: str | None, reason: str | None, actor: Actor, at: datetime
) -> Change:
    """The order's public status changes: timeline, and a callback to the integration."""
    return Change(statuses=(StatusChange(status, station_id, reason, actor, at),))


def submit_change(order: Order, actor: Actor) -> Change:
    """A new order: submitted, announced with everything but the case details."""
    payload = OrderSubmitted(
        **order.pick("integration_id", "external_id", "reported_at"), **order.described()
    )
    at = order.submitted_at
    return Change(events=(_event(order, payload, actor, at),)) + status_change(
        OrderStatus.SUBMITTED, station_id=None, reason=None, actor=actor, at=at
    )


def station_deadlines(order: Order, accept_due: datetime) -> Deadlines:
    """The deadlines a dispatch's station is held to: the order's windows counted from that
    dispatch, whose accept deadline (when it escalates) is ``accept_due``."""
    return order.deadlines.shifted(accept_due - order.accept_by)


def _dispatched_payload(
    order: Order,
    station_id: str,
    dispatch_no: int,
    reason: str | None,
    accept_due: datetime | None,
    accepted_at: datetime | None = None,
) -> OrderDispatched:
    return OrderDispatched(
        station_id=station_id,
        dispatch_no=dispatch_no,
        reason=reason,
        accepted_at=accepted_at,
        redo=order.redo,
        station_deadlines=None if accept_due is None else station_deadlines(order, accept_due),
        submitted_at=order.submitted_at,
        case=CaseDetails.model_validate(order.case_details),
        **order.described(),
    )


def accept_due(order: Order, now: datetime) -> datetime:
    """When this dispatch escalates: the order's acceptance window (accept_by - submitted_at)
    from now. For the first dispatch, at submission, that is accept_by; a redispatched order (or
    one an operator dispatches late) gives its station the whole window again, or it would
    escalate at once. After a send-back the window is counted from the send-back
    (``deadlines_from``). Derived from the row, so every replica agrees."""
    window: timedelta = order.accept_by - (order.deadlines_from or order.submitted_at)
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
    dispatch_no = order.dispatch_no + 1
    due = accept_due(order, now)
    payload = _dispatched_payload(order, station_id, dispatch_no, reason, due)
    event = _event(order, payload, actor, now)
    columns = {
        "station_id": station_id,
        "dispatch_no": dispatch_no,
        "dispatch_event_id": event.event_id,
        "received_at": None,
        "next_resend_at": now + timedelta(seconds=settings.resend_interval_s),
        "resends": 0,
        "accept_due_at": due,
        "tried_stations": (*order.tried_stations, station_id),
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
        unroutable = OrderUnroutable(location=order.location, reason=reason)
        change += Change(events=(_event(order, unroutable, actor, at),))
    if order.status != status:
        change += status_change(
            status, station_id=order.station_id, reason=reason, actor=actor, at=at
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


def may_redispatch(settings: CenterSettings, order: Order) -> bool:
    """Whether the center may still redispatch the order by itself (else an operator must)."""
    return order.redispatches < settings.max_redispatches


def redispatch_or_hold(
    settings: CenterSettings, order: Order, stations: list[str], reason: str, now: datetime
) -> Change:
    """After a rejection or an escalation: the next station that has not had the order yet
    (``stations``, best first, without the tried ones), or the operator when there is none or
    the order was redispatched often enough."""
    if not may_redispatch(settings, order):
        why = f"{reason}; redispatched {order.redispatches} times already"
        return hold_change(order, order.status, why, actor=CENTER, at=now)
    if not stations:
        why = f"{reason}; no further station covers this order"
        return hold_change(order, order.status, why, actor=CENTER, at=now)
    return Change({"redispatches": order.redispatches + 1}) + dispatch_change(
        settings, order, stations[0], reason=reason, actor=CENTER, now=now
    )


def then(order: Order, first: Change, decide: Callable[[Order], Change]) -> Change:
    """``first``, and what ``decide`` makes of the order as ``first`` left it."""
    return first + decide(apply(order, first))


def resend_change(settings: CenterSettings, order: Order, now: datetime) -> Change:
    """Re-send an unacknowledged dispatch: a new event, the same dispatch number."""
    assert order.station_id is not None
    payload = _dispatched_payload(
        order, order.station_id, order.dispatch_no, None, order.accept_due_at
    )
    event = _event(
        order, payload.model_copy(update={"resend_of": order.dispatch_event_id}), CENTER, now
    )
    columns = {
        "next_resend_at": now + timedelta(seconds=settings.resend_interval_s),
        "resends": order.resends + 1,
    }
    return Change(columns, events=(event,))


def escalate_change(
    settings: CenterSettings, order: Order, stations: list[str], now: datetime
) -> Change:
    """The station did not accept in time: announce it, then redispatch (to the first of
    ``stations``) or hold."""
    reason = f"not accepted by {order.station_id} in time"
    escalated = OrderEscalated(stage=Stage.ACCEPT, station_id=order.station_id, reason=reason)
    change = Change(
        {
            "accept_due_at": None,
            "next_resend_at": None,
            "escalated_station_id": order.station_id,
            "escalated_accept_due_at": order.accept_due_at,
        },
        events=(_event(order, escalated, CENTER, now),),
    ) + status_change(
        OrderStatus.ESCALATED, station_id=order.station_id, reason=reason, actor=CENTER, at=now
    )
    return then(order, change, lambda o: redispatch_or_hold(settings, o, stations, reason, now))


def rejection_counts(order: Order, rejected: OrderRejected) -> bool:
    """A rejection of the order's current dispatch, while it waits or was accepted."""
    return (
        order.station_id == rejected.station_id
        and order.dispatch_no == rejected.dispatch_no
        and order.status in (OrderStatus.DISPATCHED, OrderStatus.ACCEPTED)
    )


def reject_change(
    settings: CenterSettings,
    order: Order,
    event: Envelope[OrderRejected],
    stations: list[str],
    now: datetime,
) -> Change:
    """The station returned the order: rejected, then the next station or an operator."""
    p = event.payload
    rejected = Change({"accept_due_at": None, "next_resend_at": None}) + status_change(
        OrderStatus.REJECTED,
        station_id=p.station_id,
        reason=p.reason_code,
        actor=event.actor,
        at=event.occurred_at,
    )
    reason = f"rejected by {p.station_id}: {p.reason_code}"
    return then(order, rejected, lambda o: redispatch_or_hold(settings, o, stations, reason, now))


# --- what the stations report ----------------------------------------------------------------


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
    status = order.status
    if station_id == order.station_id:
        waiting = status in (OrderStatus.DISPATCHED, OrderStatus.ESCALATED)
        return AcceptOutcome.APPLY if waiting else AcceptOutcome.DROP
    due = order.escalated_accept_due_at
    if (
        station_id == order.escalated_station_id
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


def take_back_change(order: Order, accepted: Envelope[OrderAccepted], now: datetime) -> Change:
    """An accept that happened in time wins over the redispatch made meanwhile: the order goes
    back to the accepting station as a new dispatch that carries the acceptance. Its higher
    dispatch number withdraws the redispatch at the other station, as any redispatch does;
    the station worker queues it as accepted."""
    station_id = accepted.payload.station_id
    reason = f"accepted by {station_id} in time; the redispatch to {order.station_id} is void"
    dispatch_no = order.dispatch_no + 1
    payload = _dispatched_payload(
        order,
        station_id,
        dispatch_no,
        reason,
        order.escalated_accept_due_at,
        accepted_at=accepted.occurred_at,
    )
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


def accept_change(order: Order, event: Envelope[OrderAccepted], now: datetime) -> Change | None:
    """What a station's accept does to the order (:func:`accept_outcome`); None: nothing."""
    outcome = accept_outcome(order, event.payload.station_id, event.occurred_at)
    if outcome is AcceptOutcome.TAKE_BACK:
        return take_back_change(order, event, now)
    if outcome is AcceptOutcome.DROP:
        return None
    columns = {**ACCEPTED_COLUMNS, "received_at": order.received_at or event.occurred_at}
    return Change(columns) + status_change(
        OrderStatus.ACCEPTED,
        station_id=order.station_id,
        reason=None,
        actor=event.actor,
        at=event.occurred_at,
    )


# What the station reports after accepting -> the public status, and the statuses it may
# follow. (An accept: accept_outcome; a completion also ends an order in any open status.)
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


def complete_change(
    settings: CenterSettings, order: Order, event: Envelope[OrderCompleted], now: datetime
) -> Change:
    """The service was delivered, whatever the center did meanwhile: an operator's redispatch
    that crossed the completion is void (the station worker keeps a completed order and never
    queues such a redispatch); the order is the completing station's. Completed, the order
    awaits its return visit from when the center learns of it (``now``): never before the
    completion, so the two statuses and events keep their order wherever they are merged."""
    station_id = event.payload.station_id
    # Served: an accept of an earlier dispatch, however late it arrives, takes nothing back.
    columns: dict[str, Any] = {"escalated_station_id": None, "escalated_accept_due_at": None}
    if order.station_id != station_id:
        columns |= {
            "station_id": station_id,
            "accept_due_at": None,
            "next_resend_at": None,
            "awaiting_operator": False,
            "hold_reason": None,
        }
    completed = Change(columns) + status_change(
        OrderStatus.COMPLETED,
        station_id=station_id,
        reason=None,
        actor=event.actor,
        at=event.occurred_at,
    )
    awaiting_since = max(now, event.occurred_at)
    return completed + awaiting_feedback_change(settings, order, station_id, awaiting_since)


def awaiting_feedback_change(
    settings: CenterSettings, order: Order, station_id: str, since: datetime
) -> Change:
    """After a completion: the center waits for the return visit until ``feedback_due_at``
    (counted from ``since``); this round's feedback is still to come."""
    due = since + timedelta(seconds=settings.feedback_timeout_s)
    awaiting = OrderAwaitingFeedback(station_id=station_id, feedback_due_at=due)
    columns = {
        "feedback_due_at": due,
        "feedback_at": None,
        "feedback_resolved": None,
        "feedback_satisfaction": None,
    }
    return Change(columns, events=(_event(order, awaiting, CENTER, since),)) + status_change(
        OrderStatus.AWAITING_FEEDBACK,
        station_id=station_id,
        reason=None,
        actor=CENTER,
        at=since,
    )


def progress_change(
    settings: CenterSettings, order: Order, event: Envelope[Any], now: datetime
) -> Change | None:
    """What an order.assigned, order.started or order.completed does; None: nothing (another
    station's, or a status it does not follow). A completion applies in any status until the
    order was served or has ended."""
    if isinstance(event.payload, OrderCompleted):
        return None if order.status in SERVED else complete_change(settings, order, event, now)
    status, after = PROGRESS[type(event.payload)]
    if order.station_id != event.payload.station_id or order.status not in after:
        return None
    return status_change(
        status, station_id=order.station_id, reason=None, actor=event.actor, at=event.occurred_at
    )


# --- the return visit (回访), closing, the send-back for redo (发回重办) -----------------------


@dataclass(frozen=True)
class Feedback:
    """A return visit's result. ``reached`` false (an operator reached nobody): no answer."""

    source: str
    """integration or operator"""
    reached: bool
    resolved: bool | None
    satisfaction: Satisfaction | None
    comment: str | None
    """Personal data: never logged."""

    @property
    def closes(self) -> bool:
        """Resolved and not dissatisfied: the order closes."""
        return (
            self.resolved is True
            and self.satisfaction is not None
            and not self.satisfaction.dissatisfied
        )


def return_visit(
    reached: bool, resolved: bool | None, satisfaction: Satisfaction | None, comment: str | None
) -> Feedback:
    """An operator's visit or call: reached, it has both answers; not reached, neither."""
    for loc, value in (("resolved", resolved), ("satisfaction", satisfaction)):
        if reached and value is None:
            raise InvalidField(("body", loc), "required when the visit reached the resident")
        if not reached and value is not None:
            raise InvalidField(
                ("body", loc), "a visit that reached nobody has no answer", type="unexpected"
            )
    return Feedback("operator", reached, resolved, satisfaction, comment)


def _current(order: Order) -> dict[str, Any]:
    return {"status": order.status.value, "version": order.version}


def takes_feedback(order: Order) -> Order:
    """An order awaiting its return visit whose feedback has not come yet; 409 otherwise."""
    if order.status is not OrderStatus.AWAITING_FEEDBACK:
        raise Conflict(
            f"the order is {order.status}, not awaiting feedback", current=_current(order)
        )
    if order.feedback_at is not None:
        raise Conflict("the order's feedback was given already", current=_current(order))
    return order


def _feedback_hold_reason(feedback: Feedback) -> str:
    found = []
    if feedback.resolved is not True:
        found.append("not resolved")
    if feedback.satisfaction is not None and feedback.satisfaction.dissatisfied:
        found.append(str(feedback.satisfaction))
    return "return visit: " + ", ".join(found) + "; send it back for redo"


def feedback_change(order: Order, feedback: Feedback, *, actor: Actor, at: datetime) -> Change:
    """The first answered feedback of the round counts: resolved and not dissatisfied closes
    the order; otherwise it waits for an operator to send it back. A visit that reached
    nobody is recorded and changes nothing."""
    takes_feedback(order)
    assert order.station_id is not None  # a completed order has its station
    received = OrderFeedbackReceived(
        station_id=order.station_id,
        source="operator" if feedback.source == "operator" else "integration",
        reached=feedback.reached,
        resolved=feedback.resolved,
        satisfaction=feedback.satisfaction,
        comment=feedback.comment,
    )
    change = Change(events=(_event(order, received, actor, at),))
    if not feedback.reached:
        return change
    change += Change(
        {
            "feedback_at": at,
            "feedback_resolved": feedback.resolved,
            "feedback_satisfaction": feedback.satisfaction,
            "feedback_due_at": None,
        }
    )
    if feedback.closes:
        return change + close_change(order, without_feedback=False, actor=actor, at=at)
    reason = _feedback_hold_reason(feedback)
    return change + hold_change(order, OrderStatus.AWAITING_FEEDBACK, reason, actor=actor, at=at)


def close_change(order: Order, *, without_feedback: bool, actor: Actor, at: datetime) -> Change:
    """The order is closed: resolved at the return visit, or no feedback came in time."""
    status = OrderStatus.CLOSED_WITHOUT_FEEDBACK if without_feedback else OrderStatus.CLOSED
    closed = OrderClosed(station_id=order.station_id, without_feedback=without_feedback)
    return Change(
        {"feedback_due_at": None, "awaiting_operator": False, "hold_reason": None},
        events=(_event(order, closed, actor, at),),
    ) + status_change(status, station_id=order.station_id, reason=None, actor=actor, at=at)


def unanswered_change(order: Order, now: datetime) -> Change:
    """The feedback timer fired: closed without feedback while it is still awaited (else
    the timer is only cleared)."""
    if order.status is OrderStatus.AWAITING_FEEDBACK and order.feedback_at is None:
        return close_change(order, without_feedback=True, actor=CENTER, at=now)
    return Change({"feedback_due_at": None})


def send_back_change(
    settings: CenterSettings,
    order: Order,
    station_id: str,
    station_active: bool,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
) -> Change:
    """Send the order back for redo (发回重办) after a negative return visit: sent_back, then a
    dispatch marked ``redo`` to ``station_id`` with the accept, assign and complete deadlines
    counted from now (dispatch_by stays). The third send-back opens supervision."""
    if not (
        order.status is OrderStatus.AWAITING_FEEDBACK
        and order.feedback_at is not None
        and order.awaiting_operator
    ):
        raise Conflict(
            "only an order waiting after a negative return visit may be sent back",
            current=_current(order),
        )
    if not station_active:
        raise InvalidField(
            ("body", "station_id"), "no active station with this id", type="unknown_station"
        )
    served = order.station_id
    assert served is not None
    send_back_no = order.send_backs + 1
    fresh = deadlines_for(settings, order.urgency, now)
    columns = {
        "send_backs": send_back_no,
        "send_back_reason": reason,
        "deadlines_from": now,
        "accept_by": fresh.accept_by,
        "assign_by": fresh.assign_by,
        "complete_by": fresh.complete_by,
        "redispatches": 0,
        "feedback_due_at": None,
    }
    sent_back = OrderSentBack(
        station_id=served, to_station_id=station_id, send_back_no=send_back_no, reason=reason
    )
    events = [_event(order, sent_back, actor, now)]
    if send_back_no == SUPERVISION_AT_SEND_BACKS:
        opened = OrderSupervisionOpened(station_id=served, send_backs=send_back_no, reason=reason)
        events.append(_event(order, opened, actor, now))
    first = Change(columns, events=tuple(events)) + status_change(
        OrderStatus.SENT_BACK, station_id=served, reason=reason, actor=actor, at=now
    )
    return then(
        order,
        first,
        lambda o: dispatch_change(settings, o, station_id, reason=reason, actor=actor, now=now),
    )


# --- what operators do -----------------------------------------------------------------------


def still_open(order: Order) -> Order:
    """An order an operator may still redispatch or cancel; 409 once it was served (a
    send-back is the way back to a station) or has ended."""
    if order.status in SERVED:
        raise Conflict(f"the order is {order.status}", current=_current(order))
    return order


def operator_redispatch_change(
    settings: CenterSettings,
    order: Order,
    station_id: str,
    station_active: bool,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
) -> Change:
    still_open(order)
    if not station_active:
        raise InvalidField(
            ("body", "station_id"), "no active station with this id", type="unknown_station"
        )
    return dispatch_change(settings, order, station_id, reason=reason, actor=actor, now=now)


def cancel_change(order: Order, reason: str, *, actor: Actor, at: datetime) -> Change:
    still_open(order)
    cancelled = OrderCancelled(station_id=order.station_id, reason=reason)
    return Change(
        {
            "next_resend_at": None,
            "accept_due_at": None,
            "awaiting_operator": False,
            "hold_reason": None,
        },
        events=(_event(order, cancelled, actor, at),),
    ) + status_change(
        OrderStatus.CANCELLED, station_id=order.station_id, reason=reason, actor=actor, at=at
    )


def listed_status(status: OrderStatus | None, unroutable: bool | None) -> OrderStatus | None:
    """The status filter of an order listing, with its ``unroutable`` shorthand."""
    if unroutable is None:
        return status
    if status is not None and (status is OrderStatus.UNROUTABLE) != unroutable:
        raise InvalidField(("query", "unroutable"), "contradicts status", type="conflicting_filter")
    if unroutable:
        return OrderStatus.UNROUTABLE
    if status is None:
        raise InvalidField(
            ("query", "unroutable"), "only unroutable=true filters", type="unsupported_filter"
        )
    return status


def check_coverage(station_id: str | None, fallbacks: list[str]) -> None:
    """A community's covering station and fallbacks name each station once."""
    if station_id is not None and station_id in fallbacks:
        raise InvalidField(
            ("body", "fallbacks"), "lists the covering station", type="duplicate_station"
        )
    if len(set(fallbacks)) != len(fallbacks):
        raise InvalidField(("body", "fallbacks"), "lists a station twice", type="duplicate_station")


# --- status callbacks ------------------------------------------------------------------------


@dataclass(frozen=True)
class DueCallback:
    """A status callback leased for one delivery attempt."""

    id: int
    integration_id: str
    url: str
    body: str
    attempts: int
    secret: str
    """Encrypted (Fernet)."""


def backoff(settings: CenterSettings, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: base, 2 x base, 4 x base ... capped."""
    seconds = settings.callback_backoff_base_s * 2 ** (attempts - 1)
    return timedelta(seconds=min(seconds, settings.callback_backoff_max_s))
