"""The center's rules, without a database: Change builders, progress rules, which dispatch an
``order.accepted`` belongs to, deadlines, the current stage, who may act."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.dispatch_center import domain
from services.dispatch_center.domain import (
    CENTER,
    AcceptOutcome,
    Candidates,
    Change,
    Operator,
    Order,
    accept_outcome,
    apply,
)
from services.dispatch_center.settings import CenterSettings
from shared.domain import BeneficiaryGroup, Category, OrderStatus, Urgency
from shared.errors import Conflict, Forbidden, InvalidField
from shared.events import (
    Actor,
    EventPayload,
    OrderAccepted,
    OrderAssigned,
    OrderCancelled,
    OrderCompleted,
    OrderDispatched,
    OrderEscalated,
    OrderRejected,
    OrderStarted,
    OrderSubmitted,
    OrderUnroutable,
    new_event,
)

SETTINGS = CenterSettings(max_redispatches=2, resend_interval_s=60)
SUBMITTED = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
NOW = SUBMITTED + timedelta(minutes=10)
DEADLINE = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
STATION = Actor(kind="station_staff", id="staff-1")
CASE = {
    "beneficiary_name": "A. Resident",
    "beneficiary_phone": None,
    "address": "1 Road",
    "reporter_name": "R. Porter",
    "reporter_phone": "+86 123456",
    "reporter_role": "grid_member",
    "description": "needs help",
    "consent_to_share": True,
}


def order(
    status: OrderStatus = OrderStatus.SUBMITTED, station: str | None = None, **columns: Any
) -> Order:
    base = Order(
        id=uuid.UUID(int=1),
        integration_id="intg",
        external_id="ext-1",
        request_hash="h",
        status=status,
        version=1,
        station_id=station,
        dispatch_no=0 if station is None else 1,
        category=Category.ELDER_CARE,
        urgency=Urgency.URGENT,
        beneficiary_group=BeneficiaryGroup.OTHERS,
        township_code="TS",
        community_code="C1",
        reported_at=SUBMITTED,
        submitted_at=SUBMITTED,
        dispatch_by=SUBMITTED + timedelta(minutes=30),
        accept_by=SUBMITTED + timedelta(hours=4),
        assign_by=SUBMITTED + timedelta(hours=8),
        complete_by=SUBMITTED + timedelta(days=3),
        callback_url=None,
        case_details=CASE,
        tried_stations=() if station is None else (station,),
    )
    return replace(base, **columns)


def event(payload: EventPayload, at: datetime = NOW, actor: Actor = STATION) -> Any:
    return new_event(payload, order_id=uuid.UUID(int=1), actor=actor, occurred_at=at)


def statuses(change: Change) -> list[OrderStatus]:
    return [s.status for s in change.statuses]


def event_types(change: Change) -> list[type[EventPayload]]:
    return [type(e.payload) for e in change.events]


# --- intake --------------------------------------------------------------------------------


def test_a_new_order_is_submitted_then_dispatched_to_the_best_station() -> None:
    new = order()
    change = domain.submit_change(new, Actor(kind="integration", id="intg")) + domain.route_change(
        SETTINGS, new, ["st-a", "st-b"], SUBMITTED
    )
    assert statuses(change) == [OrderStatus.SUBMITTED, OrderStatus.DISPATCHED]
    assert event_types(change) == [OrderSubmitted, OrderDispatched]
    assert change.statuses[0].actor.text == "integration:intg"
    assert change.statuses[1].actor == CENTER
    after = apply(new, change)
    assert after.status is OrderStatus.DISPATCHED
    assert after.version == 3  # one per status change
    assert after.station_id == "st-a"
    assert after.dispatch_no == 1
    assert after.tried_stations == ("st-a",)
    assert after.accept_due_at == new.accept_by  # the first dispatch: the accept deadline
    assert after.next_resend_at == SUBMITTED + timedelta(seconds=60)
    assert change.events[1].payload.case.beneficiary_name == "A. Resident"


def test_an_order_no_station_covers_is_unroutable_and_held() -> None:
    new = order()
    change = domain.route_change(SETTINGS, new, [], SUBMITTED)
    assert statuses(change) == [OrderStatus.UNROUTABLE]
    assert event_types(change) == [OrderUnroutable]
    after = apply(new, change)
    assert after.awaiting_operator is True
    assert after.hold_reason == "no station covers this community"
    assert after.accept_due_at is None


def test_the_location_must_exist_and_lie_in_the_township() -> None:
    found = Candidates(township_code="TS", stations=["st-a"])
    assert domain.checked_location("TS", found) is found
    with pytest.raises(InvalidField) as unknown:
        domain.checked_location("TS", None)
    assert unknown.value.loc == ("body", "location", "community_code")
    with pytest.raises(InvalidField) as elsewhere:
        domain.checked_location("OTHER", found)
    assert elsewhere.value.type == "township_mismatch"


def test_stations_are_ranked_once_without_the_excluded() -> None:
    ranked = ["st-o", None, "st-a", "st-o", "st-b", "st-c"]
    assert domain.distinct_stations(ranked) == ["st-o", "st-a", "st-b", "st-c"]
    assert domain.distinct_stations(ranked, exclude=("st-a", "st-c")) == ["st-o", "st-b"]


# --- timers --------------------------------------------------------------------------------


def test_a_resend_is_a_new_event_for_the_same_dispatch() -> None:
    dispatched = order(OrderStatus.DISPATCHED, "st-a", dispatch_event_id=uuid.UUID(int=7))
    change = domain.resend_change(SETTINGS, dispatched, NOW)
    assert change.statuses == ()
    (sent,) = change.events
    assert sent.payload.dispatch_no == 1
    assert sent.payload.resend_of == uuid.UUID(int=7)
    assert apply(dispatched, change).resends == 1


def test_an_escalation_redispatches_to_the_next_station_in_one_change() -> None:
    dispatched = order(OrderStatus.DISPATCHED, "st-a", accept_due_at=DEADLINE)
    change = domain.escalate_change(SETTINGS, dispatched, ["st-b"], NOW)
    assert statuses(change) == [OrderStatus.ESCALATED, OrderStatus.DISPATCHED]
    assert event_types(change) == [OrderEscalated, OrderDispatched]
    after = apply(dispatched, change)
    assert after.version == 3
    assert (after.station_id, after.dispatch_no, after.redispatches) == ("st-b", 2, 1)
    assert after.escalated_station_id == "st-a"
    assert after.escalated_accept_due_at == DEADLINE
    assert after.tried_stations == ("st-a", "st-b")
    # The new station gets the whole acceptance window again.
    assert after.accept_due_at == NOW + (dispatched.accept_by - dispatched.submitted_at)
    assert change.statuses[1].reason == "not accepted by st-a in time"


def test_an_escalation_with_no_further_station_holds_the_order() -> None:
    dispatched = order(OrderStatus.DISPATCHED, "st-a", accept_due_at=DEADLINE)
    change = domain.escalate_change(SETTINGS, dispatched, [], NOW)
    assert statuses(change) == [OrderStatus.ESCALATED]
    after = apply(dispatched, change)
    assert after.awaiting_operator is True
    assert after.station_id == "st-a"
    assert after.hold_reason == "not accepted by st-a in time; no further station covers this order"


def test_an_order_redispatched_often_enough_waits_for_an_operator() -> None:
    assert domain.may_redispatch(SETTINGS, order(redispatches=1))
    assert not domain.may_redispatch(SETTINGS, order(redispatches=2))
    maxed = order(OrderStatus.ESCALATED, "st-a", redispatches=2)
    change = domain.redispatch_or_hold(SETTINGS, maxed, ["st-b"], "why", NOW)
    assert statuses(change) == []  # it stays escalated
    assert apply(maxed, change).hold_reason == "why; redispatched 2 times already"


# --- station events ------------------------------------------------------------------------


def test_a_rejection_of_the_current_dispatch_redispatches() -> None:
    dispatched = order(OrderStatus.DISPATCHED, "st-a")
    rejected = OrderRejected(station_id="st-a", dispatch_no=1, reason_code="no_capacity")
    assert domain.rejection_counts(dispatched, rejected)
    assert domain.rejection_counts(replace(dispatched, status=OrderStatus.ACCEPTED), rejected)
    assert not domain.rejection_counts(replace(dispatched, dispatch_no=2), rejected)
    assert not domain.rejection_counts(replace(dispatched, station_id="st-b"), rejected)
    assert not domain.rejection_counts(replace(dispatched, status=OrderStatus.ASSIGNED), rejected)
    change = domain.reject_change(SETTINGS, dispatched, event(rejected), ["st-b"], NOW)
    assert statuses(change) == [OrderStatus.REJECTED, OrderStatus.DISPATCHED]
    assert change.statuses[0].reason == "no_capacity"
    assert change.statuses[1].reason == "rejected by st-a: no_capacity"
    assert apply(dispatched, change).station_id == "st-b"


ESCALATED_TO_B = {"escalated_station_id": "st-a", "escalated_accept_due_at": DEADLINE}
ON_TIME, LATE = DEADLINE - timedelta(minutes=1), DEADLINE + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("row", "station", "at", "outcome"),
    [
        # The station holding the dispatch, dispatched or escalated with no other station left.
        (order(OrderStatus.DISPATCHED, "st-a"), "st-a", ON_TIME, AcceptOutcome.APPLY),
        (order(OrderStatus.ESCALATED, "st-a"), "st-a", LATE, AcceptOutcome.APPLY),
        (order(OrderStatus.ACCEPTED, "st-a"), "st-a", ON_TIME, AcceptOutcome.DROP),
        (order(OrderStatus.CANCELLED, "st-a"), "st-a", ON_TIME, AcceptOutcome.DROP),
        # Escalated from A to B: A's accept before A's deadline wins, a late one is dropped.
        (
            order(OrderStatus.DISPATCHED, "st-b", **ESCALATED_TO_B),
            "st-a",
            ON_TIME,
            AcceptOutcome.TAKE_BACK,
        ),
        (
            order(OrderStatus.DISPATCHED, "st-b", **ESCALATED_TO_B),
            "st-a",
            DEADLINE,
            AcceptOutcome.TAKE_BACK,
        ),
        (order(OrderStatus.DISPATCHED, "st-b", **ESCALATED_TO_B), "st-a", LATE, AcceptOutcome.DROP),
        # ... B rejected it meanwhile and it waits for an operator: A still wins.
        (
            order(OrderStatus.REJECTED, "st-b", **ESCALATED_TO_B),
            "st-a",
            ON_TIME,
            AcceptOutcome.TAKE_BACK,
        ),
        # ... but not once B has accepted, nor after a cancel.
        (
            order(OrderStatus.ACCEPTED, "st-b", **ESCALATED_TO_B),
            "st-a",
            ON_TIME,
            AcceptOutcome.DROP,
        ),
        (
            order(OrderStatus.CANCELLED, "st-b", **ESCALATED_TO_B),
            "st-a",
            ON_TIME,
            AcceptOutcome.DROP,
        ),
        # A station the order was never escalated from.
        (
            order(OrderStatus.DISPATCHED, "st-b", **ESCALATED_TO_B),
            "st-c",
            ON_TIME,
            AcceptOutcome.DROP,
        ),
        (order(OrderStatus.DISPATCHED, "st-b"), "st-a", ON_TIME, AcceptOutcome.DROP),
    ],
)
def test_an_accept_applies_wins_back_the_order_or_is_dropped(
    row: Order, station: str, at: datetime, outcome: AcceptOutcome
) -> None:
    assert accept_outcome(row, station, at) is outcome


def test_an_accept_of_the_current_dispatch_accepts_the_order() -> None:
    dispatched = order(OrderStatus.DISPATCHED, "st-a", accept_due_at=DEADLINE, next_resend_at=NOW)
    change = domain.accept_change(dispatched, event(OrderAccepted(station_id="st-a")), NOW)
    assert change is not None
    assert statuses(change) == [OrderStatus.ACCEPTED]
    after = apply(dispatched, change)
    assert (after.accept_due_at, after.next_resend_at) == (None, None)
    assert after.received_at == NOW  # an accept implies the station has the order
    assert domain.accept_change(after, event(OrderAccepted(station_id="st-a")), NOW) is None


def test_an_accept_in_time_takes_the_order_back_from_the_redispatch() -> None:
    redispatched = order(OrderStatus.DISPATCHED, "st-b", dispatch_no=2, **ESCALATED_TO_B)
    accepted = event(OrderAccepted(station_id="st-a"), at=ON_TIME)
    change = domain.accept_change(redispatched, accepted, NOW)
    assert change is not None
    assert statuses(change) == [OrderStatus.ACCEPTED]
    (dispatched,) = change.events
    assert dispatched.payload.dispatch_no == 3
    assert dispatched.payload.accepted_at == ON_TIME
    after = apply(redispatched, change)
    assert (after.station_id, after.escalated_station_id) == ("st-a", None)


def progress(payload_type: type[EventPayload], station: str) -> EventPayload:
    if payload_type is OrderCompleted:
        return OrderCompleted(
            station_id=station,
            worker_id="w",
            outcome="resolved",
            service_minutes=5,
            follow_up_needed=False,
            summary="done",
        )
    return payload_type(station_id=station, worker_id="w")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("payload_type", "status", "station", "moves_to"),
    [
        (OrderAssigned, OrderStatus.ACCEPTED, "st-a", OrderStatus.ASSIGNED),
        (OrderAssigned, OrderStatus.ASSIGNED, "st-a", OrderStatus.ASSIGNED),  # reassigned
        (OrderAssigned, OrderStatus.IN_SERVICE, "st-a", OrderStatus.ASSIGNED),
        (OrderAssigned, OrderStatus.DISPATCHED, "st-a", None),
        (OrderAssigned, OrderStatus.ACCEPTED, "st-b", None),  # another station's
        (OrderAssigned, OrderStatus.COMPLETED, "st-a", None),
        (OrderStarted, OrderStatus.ASSIGNED, "st-a", OrderStatus.IN_SERVICE),
        (OrderStarted, OrderStatus.ACCEPTED, "st-a", None),
        (OrderStarted, OrderStatus.IN_SERVICE, "st-a", None),
        (OrderStarted, OrderStatus.ASSIGNED, "st-b", None),
        (OrderCompleted, OrderStatus.IN_SERVICE, "st-a", OrderStatus.COMPLETED),
        (OrderCompleted, OrderStatus.ASSIGNED, "st-a", OrderStatus.COMPLETED),
        # A completion ends any open order, even after a redispatch crossed it...
        (OrderCompleted, OrderStatus.DISPATCHED, "st-b", OrderStatus.COMPLETED),
        # ... but not an order that has ended.
        (OrderCompleted, OrderStatus.CANCELLED, "st-a", None),
        (OrderCompleted, OrderStatus.COMPLETED, "st-a", None),
        # ... nor one served already, awaiting its return visit or closed.
        (OrderCompleted, OrderStatus.AWAITING_FEEDBACK, "st-a", None),
        (OrderCompleted, OrderStatus.CLOSED, "st-a", None),
        (OrderCompleted, OrderStatus.CLOSED_WITHOUT_FEEDBACK, "st-a", None),
        (OrderAssigned, OrderStatus.AWAITING_FEEDBACK, "st-a", None),
    ],
)
def test_progress_moves_the_status_it_may_follow(
    payload_type: type[EventPayload],
    status: OrderStatus,
    station: str,
    moves_to: OrderStatus | None,
) -> None:
    current = order(status, "st-a")
    change = domain.progress_change(SETTINGS, current, event(progress(payload_type, station)), NOW)
    expected = [moves_to] if moves_to else None
    if moves_to is OrderStatus.COMPLETED:  # and at once awaiting the return visit
        expected = [OrderStatus.COMPLETED, OrderStatus.AWAITING_FEEDBACK]
    assert (statuses(change) if change else None) == expected


def test_a_completion_crossing_a_redispatch_gives_the_order_to_the_completing_station() -> None:
    redispatched = order(OrderStatus.DISPATCHED, "st-b", accept_due_at=DEADLINE, next_resend_at=NOW)
    change = domain.progress_change(
        SETTINGS, redispatched, event(progress(OrderCompleted, "st-a")), NOW
    )
    assert change is not None
    after = apply(redispatched, change)
    assert (after.station_id, after.accept_due_at, after.next_resend_at) == ("st-a", None, None)
    assert change.statuses[0].station_id == "st-a"


# --- operators -----------------------------------------------------------------------------

VIEWER = Operator(id="v", name="V", role="viewer")
OPERATOR = Operator(id="o", name="O", role="operator")


def test_only_operators_may_act() -> None:
    assert domain.may_act(OPERATOR) is OPERATOR
    with pytest.raises(Forbidden):
        domain.may_act(VIEWER)
    assert OPERATOR.actor.text == "operator:o"


@pytest.mark.parametrize(
    "final", [OrderStatus.COMPLETED, OrderStatus.CLOSED, OrderStatus.CANCELLED]
)
def test_an_ended_order_cannot_be_redispatched_or_cancelled(final: OrderStatus) -> None:
    ended = order(final, "st-a", version=5)
    with pytest.raises(Conflict) as refused:
        domain.cancel_change(ended, "why", actor=OPERATOR.actor, at=NOW)
    assert refused.value.extra["current"] == {"status": final.value, "version": 5}
    with pytest.raises(Conflict):
        domain.operator_redispatch_change(
            SETTINGS, ended, "st-b", True, reason="why", actor=OPERATOR.actor, now=NOW
        )


def test_an_operator_redispatches_to_an_active_station_only() -> None:
    held = order(OrderStatus.UNROUTABLE, None, awaiting_operator=True)
    with pytest.raises(InvalidField) as inactive:
        domain.operator_redispatch_change(
            SETTINGS, held, "st-off", False, reason="why", actor=OPERATOR.actor, now=NOW
        )
    assert inactive.value.loc == ("body", "station_id")
    change = domain.operator_redispatch_change(
        SETTINGS, held, "st-b", True, reason="why", actor=OPERATOR.actor, now=NOW
    )
    assert statuses(change) == [OrderStatus.DISPATCHED]
    assert change.statuses[0].actor == OPERATOR.actor
    assert apply(held, change).awaiting_operator is False


def test_a_cancel_ends_the_order_and_its_timers() -> None:
    dispatched = order(OrderStatus.DISPATCHED, "st-a", accept_due_at=DEADLINE, next_resend_at=NOW)
    change = domain.cancel_change(dispatched, "duplicate", actor=OPERATOR.actor, at=NOW)
    assert statuses(change) == [OrderStatus.CANCELLED]
    assert event_types(change) == [OrderCancelled]
    after = apply(dispatched, change)
    assert (after.accept_due_at, after.next_resend_at) == (None, None)


def test_the_unroutable_filter() -> None:
    assert domain.listed_status(None, None) is None
    assert domain.listed_status(OrderStatus.ACCEPTED, None) is OrderStatus.ACCEPTED
    assert domain.listed_status(None, True) is OrderStatus.UNROUTABLE
    assert domain.listed_status(OrderStatus.ACCEPTED, False) is OrderStatus.ACCEPTED
    with pytest.raises(InvalidField, match="contradicts"):
        domain.listed_status(OrderStatus.ACCEPTED, True)
    with pytest.raises(InvalidField, match="only unroutable=true"):
        domain.listed_status(None, False)


def test_coverage_names_each_station_once() -> None:
    domain.check_coverage("st-a", ["st-b", "st-c"])
    domain.check_coverage(None, [])
    with pytest.raises(InvalidField, match="covering station"):
        domain.check_coverage("st-a", ["st-a"])
    with pytest.raises(InvalidField, match="twice"):
        domain.check_coverage(None, ["st-b", "st-b"])


def test_the_rate_limit_is_the_integrations_own_or_the_default() -> None:
    assert domain.over_rate_limit(10, None, 10) is None
    assert domain.over_rate_limit(11, None, 10) == 10
    assert domain.over_rate_limit(11, 20, 10) is None
    assert domain.over_rate_limit(21, 20, 10) == 20


# --- deadlines and the current stage -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "deadline"),
    [
        (OrderStatus.SUBMITTED, "dispatch_by"),
        (OrderStatus.UNROUTABLE, "dispatch_by"),
        (OrderStatus.REJECTED, "dispatch_by"),
        (OrderStatus.ESCALATED, "dispatch_by"),
        (OrderStatus.DISPATCHED, "accept_by"),
        (OrderStatus.ACCEPTED, "assign_by"),
        (OrderStatus.ASSIGNED, "complete_by"),
        (OrderStatus.IN_SERVICE, "complete_by"),
        (OrderStatus.COMPLETED, None),
        (OrderStatus.CLOSED, None),
        (OrderStatus.CANCELLED, None),
    ],
)
def test_the_current_deadline_and_overdue(status: OrderStatus, deadline: str | None) -> None:
    current = order(status)
    expected = None if deadline is None else getattr(current, deadline)
    assert current.current_deadline() == expected
    long_after = SUBMITTED + timedelta(days=30)
    assert current.overdue(long_after) is (deadline is not None)
    assert not current.overdue(SUBMITTED)


def test_deadlines_follow_the_urgency() -> None:
    emergency = domain.deadlines_for(CenterSettings(), Urgency.EMERGENCY, SUBMITTED)
    assert emergency.dispatch_by == SUBMITTED + timedelta(minutes=5)
    assert emergency.complete_by == SUBMITTED + timedelta(hours=24)
