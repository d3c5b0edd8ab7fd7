"""The closed loop's rules, without a database: a completion awaits the return visit, feedback
closes the order or holds it for an operator, the timer closes it without feedback, and a
send-back dispatches a redo with fresh deadlines (the third opens supervision)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.dispatch_center import domain
from services.dispatch_center.domain import CENTER, Feedback, Order, apply
from services.dispatch_center.settings import CenterSettings
from shared.domain import OrderStatus, Satisfaction
from shared.errors import Conflict, InvalidField
from shared.events import (
    Actor,
    OrderAwaitingFeedback,
    OrderClosed,
    OrderCompleted,
    OrderDispatched,
    OrderFeedbackReceived,
    OrderSentBack,
    OrderSupervisionOpened,
)
from tests.unit.dispatch_center.test_domain import (
    NOW,
    SUBMITTED,
    event,
    event_types,
    order,
    statuses,
)

INTEGRATION = Actor(kind="integration", id="intg")
OPERATOR = Actor(kind="operator", id="o")
LOOP_SETTINGS = CenterSettings(max_redispatches=2, resend_interval_s=60, feedback_timeout_s=3600)


def completion(station: str = "st-a") -> OrderCompleted:
    return OrderCompleted(
        station_id=station,
        worker_id="w",
        outcome="resolved",
        service_minutes=5,
        follow_up_needed=False,
        summary="done",
    )


def awaiting(**columns: object) -> Order:
    """An order completed at NOW, awaiting its return visit."""
    served = order(OrderStatus.IN_SERVICE, "st-a")
    change = domain.progress_change(LOOP_SETTINGS, served, event(completion()), NOW)
    assert change is not None
    return replace(apply(served, change), **columns)


@pytest.mark.parametrize(
    "learnt_after", [timedelta(0), timedelta(seconds=3), -timedelta(seconds=3)]
)
def test_the_wait_for_feedback_starts_when_the_center_learns_of_the_completion_never_before_it(
    learnt_after: timedelta,
) -> None:
    # The audit merges both topics by time: an awaiting_feedback stamped before (or with) its
    # completion could be listed first. A station clock ahead of the center's must not do it.
    served = order(OrderStatus.IN_SERVICE, "st-a")
    change = domain.progress_change(LOOP_SETTINGS, served, event(completion()), NOW + learnt_after)
    assert change is not None
    completed, awaiting = change.statuses
    assert awaiting.at == max(NOW + learnt_after, completed.at)
    assert change.events[0].occurred_at == awaiting.at
    assert change.events[0].payload.feedback_due_at == awaiting.at + timedelta(hours=1)


def answer(resolved: bool, satisfaction: Satisfaction, comment: str | None = None) -> Feedback:
    return Feedback("integration", True, resolved, satisfaction, comment)


def test_a_completion_awaits_the_return_visit_until_the_timeout() -> None:
    served = order(OrderStatus.IN_SERVICE, "st-a")
    change = domain.progress_change(LOOP_SETTINGS, served, event(completion()), NOW)
    assert change is not None
    assert statuses(change) == [OrderStatus.COMPLETED, OrderStatus.AWAITING_FEEDBACK]
    assert event_types(change) == [OrderAwaitingFeedback]
    assert change.events[0].payload.feedback_due_at == NOW + timedelta(hours=1)
    assert change.events[0].payload.station_id == "st-a"
    after = apply(served, change)
    assert after.feedback_due_at == NOW + timedelta(hours=1)
    assert after.version == served.version + 2


def test_the_feedback_timeout_defaults_to_seven_days() -> None:
    assert CenterSettings().feedback_timeout_s == 7 * 24 * 3600


@pytest.mark.parametrize(
    "satisfaction", [Satisfaction.VERY_SATISFIED, Satisfaction.SATISFIED, Satisfaction.NEUTRAL]
)
def test_resolved_and_not_dissatisfied_closes_the_order(satisfaction: Satisfaction) -> None:
    waiting = awaiting()
    change = domain.feedback_change(
        waiting, answer(True, satisfaction, "kind"), actor=INTEGRATION, at=NOW
    )
    assert statuses(change) == [OrderStatus.CLOSED]
    assert event_types(change) == [OrderFeedbackReceived, OrderClosed]
    received = change.events[0].payload
    assert (received.source, received.resolved, received.satisfaction) == (
        "integration",
        True,
        satisfaction,
    )
    assert received.comment == "kind"
    assert change.events[1].payload.without_feedback is False
    after = apply(waiting, change)
    assert after.feedback_due_at is None
    assert after.feedback_at == NOW


@pytest.mark.parametrize(
    ("resolved", "satisfaction", "why"),
    [
        (False, Satisfaction.SATISFIED, "not resolved"),
        (True, Satisfaction.DISSATISFIED, "dissatisfied"),
        (False, Satisfaction.VERY_DISSATISFIED, "not resolved, very_dissatisfied"),
    ],
)
def test_unresolved_or_dissatisfied_waits_for_an_operator(
    resolved: bool, satisfaction: Satisfaction, why: str
) -> None:
    waiting = awaiting()
    change = domain.feedback_change(
        waiting, answer(resolved, satisfaction), actor=INTEGRATION, at=NOW
    )
    assert statuses(change) == []  # still awaiting_feedback, now held
    assert event_types(change) == [OrderFeedbackReceived]
    after = apply(waiting, change)
    assert after.status is OrderStatus.AWAITING_FEEDBACK
    assert after.awaiting_operator is True
    assert after.hold_reason is not None
    assert why in after.hold_reason
    assert after.feedback_due_at is None  # no closing without feedback any more
    assert (after.feedback_resolved, after.feedback_satisfaction) == (resolved, satisfaction)


def test_the_first_answered_feedback_counts_later_ones_are_409() -> None:
    waiting = awaiting()
    held = apply(
        waiting,
        domain.feedback_change(
            waiting, answer(False, Satisfaction.NEUTRAL), actor=INTEGRATION, at=NOW
        ),
    )
    with pytest.raises(Conflict) as refused:
        domain.feedback_change(held, answer(True, Satisfaction.SATISFIED), actor=OPERATOR, at=NOW)
    assert refused.value.extra["current"]["status"] == "awaiting_feedback"
    for status in (OrderStatus.IN_SERVICE, OrderStatus.CLOSED, OrderStatus.COMPLETED):
        with pytest.raises(Conflict) as not_now:
            domain.feedback_change(
                order(status, "st-a"), answer(True, Satisfaction.SATISFIED), actor=OPERATOR, at=NOW
            )
        assert not_now.value.extra["current"]["status"] == status.value


def test_a_visit_that_reached_nobody_is_recorded_and_changes_nothing() -> None:
    waiting = awaiting()
    visit = domain.return_visit(False, None, None, "no answer at the door")
    change = domain.feedback_change(waiting, visit, actor=OPERATOR, at=NOW)
    assert statuses(change) == []
    assert event_types(change) == [OrderFeedbackReceived]
    assert change.events[0].payload.reached is False
    assert change.events[0].payload.source == "operator"
    assert apply(waiting, change) == waiting
    # ... and a later reached visit still counts.
    reached = domain.return_visit(True, True, Satisfaction.SATISFIED, None)
    assert statuses(domain.feedback_change(waiting, reached, actor=OPERATOR, at=NOW)) == [
        OrderStatus.CLOSED
    ]


def test_a_return_visit_has_both_answers_when_reached_and_none_otherwise() -> None:
    with pytest.raises(InvalidField) as missing:
        domain.return_visit(True, None, Satisfaction.SATISFIED, None)
    assert missing.value.loc == ("body", "resolved")
    with pytest.raises(InvalidField) as missing:
        domain.return_visit(True, True, None, None)
    assert missing.value.loc == ("body", "satisfaction")
    with pytest.raises(InvalidField) as extra:
        domain.return_visit(False, None, Satisfaction.SATISFIED, None)
    assert extra.value.loc == ("body", "satisfaction")


def test_no_feedback_in_time_closes_without_feedback() -> None:
    waiting = awaiting()
    change = domain.unanswered_change(waiting, NOW + timedelta(hours=1))
    assert statuses(change) == [OrderStatus.CLOSED_WITHOUT_FEEDBACK]
    assert event_types(change) == [OrderClosed]
    assert change.events[0].payload.without_feedback is True
    assert change.statuses[0].actor == CENTER
    assert apply(waiting, change).feedback_due_at is None
    # A timer that fires for an order whose feedback came: only cleared.
    answered = replace(waiting, feedback_at=NOW)
    assert domain.unanswered_change(answered, NOW).statuses == ()


def held_after_negative_feedback(base: Order | None = None) -> Order:
    waiting = base or awaiting()
    change = domain.feedback_change(
        waiting, answer(False, Satisfaction.DISSATISFIED), actor=INTEGRATION, at=NOW
    )
    return apply(waiting, change)


def test_a_send_back_dispatches_a_redo_with_fresh_deadlines() -> None:
    held = held_after_negative_feedback()
    later = NOW + timedelta(days=2)
    change = domain.send_back_change(
        LOOP_SETTINGS, held, "st-a", True, reason="the tap still leaks", actor=OPERATOR, now=later
    )
    assert statuses(change) == [OrderStatus.SENT_BACK, OrderStatus.DISPATCHED]
    assert event_types(change) == [OrderSentBack, OrderDispatched]
    sent_back = change.events[0].payload
    assert (sent_back.station_id, sent_back.to_station_id, sent_back.send_back_no) == (
        "st-a",
        "st-a",
        1,
    )
    dispatched = change.events[1].payload
    assert dispatched.dispatch_no == held.dispatch_no + 1
    assert dispatched.redo is not None
    assert dispatched.redo.model_dump() == {
        "send_back_no": 1,
        "reason": "the tap still leaks",
        "resolved": False,
        "satisfaction": Satisfaction.DISSATISFIED,
    }
    fresh = domain.deadlines_for(LOOP_SETTINGS, held.urgency, later)
    assert dispatched.deadlines.accept_by == fresh.accept_by
    assert dispatched.deadlines.assign_by == fresh.assign_by
    assert dispatched.deadlines.complete_by == fresh.complete_by
    assert dispatched.deadlines.dispatch_by == held.dispatch_by  # stays
    after = apply(held, change)
    assert after.status is OrderStatus.DISPATCHED
    assert after.awaiting_operator is False
    assert after.accept_due_at == fresh.accept_by  # the whole window, from the send-back
    assert after.send_backs == 1
    assert after.submitted_at == SUBMITTED
    # A re-send of the redo dispatch is a redo too.
    resent = domain.resend_change(LOOP_SETTINGS, after, later).events[0].payload
    assert resent.redo == dispatched.redo


def test_a_send_back_may_name_another_active_station() -> None:
    held = held_after_negative_feedback()
    change = domain.send_back_change(
        LOOP_SETTINGS, held, "st-b", True, reason="r", actor=OPERATOR, now=NOW
    )
    assert apply(held, change).station_id == "st-b"
    assert change.events[0].payload.to_station_id == "st-b"
    with pytest.raises(InvalidField) as inactive:
        domain.send_back_change(
            LOOP_SETTINGS, held, "st-off", False, reason="r", actor=OPERATOR, now=NOW
        )
    assert inactive.value.loc == ("body", "station_id")


@pytest.mark.parametrize(
    "not_held",
    [
        order(OrderStatus.IN_SERVICE, "st-a"),
        order(OrderStatus.CLOSED, "st-a"),
        order(OrderStatus.AWAITING_FEEDBACK, "st-a"),  # no feedback yet
    ],
)
def test_only_an_order_waiting_after_negative_feedback_is_sent_back(not_held: Order) -> None:
    with pytest.raises(Conflict) as refused:
        domain.send_back_change(
            LOOP_SETTINGS, not_held, "st-a", True, reason="r", actor=OPERATOR, now=NOW
        )
    assert refused.value.extra["current"]["status"] == not_held.status.value


def test_the_third_send_back_opens_supervision_and_each_round_takes_feedback_again() -> None:
    current = awaiting()
    opened = []
    for number in (1, 2, 3, 4):
        held = held_after_negative_feedback(current)
        change = domain.send_back_change(
            LOOP_SETTINGS, held, "st-a", True, reason=f"round {number}", actor=OPERATOR, now=NOW
        )
        opened += [
            e.payload for e in change.events if isinstance(e.payload, OrderSupervisionOpened)
        ]
        redone = apply(held, change)
        assert redone.dispatch_no == number + 1
        # The station redoes it; the completion awaits a fresh return visit.
        progressed = domain.progress_change(LOOP_SETTINGS, redone, event(completion()), NOW)
        assert progressed is not None
        current = apply(redone, progressed)
        assert current.status is OrderStatus.AWAITING_FEEDBACK
        assert current.feedback_at is None
    assert [(o.station_id, o.send_backs, o.reason) for o in opened] == [("st-a", 3, "round 3")]


def test_a_served_order_is_not_redispatched_or_cancelled_by_an_operator() -> None:
    for served in (awaiting(), held_after_negative_feedback()):
        with pytest.raises(Conflict):
            domain.cancel_change(served, "why", actor=OPERATOR, at=NOW)
        with pytest.raises(Conflict):
            domain.operator_redispatch_change(
                LOOP_SETTINGS, served, "st-b", True, reason="why", actor=OPERATOR, now=NOW
            )


def test_an_accept_that_arrives_after_the_service_takes_back_nothing_not_even_the_redo() -> None:
    from tests.factories.center import CenterOrder

    # st-a at work; an operator moves the order to st-b, which lets it escalate (nobody else
    # covers it); st-a's completion crosses all that; the visit fails, st-a redoes it.
    o = CenterOrder().submitted("st-a").accepted("st-a", 10).assigned("st-a", 11)
    o.started("st-a", 12).redispatched("st-b", 20).escalated(81).completed("st-a", 90)
    o.visited(100, resolved=False, satisfaction=Satisfaction.DISSATISFIED).sent_back("st-a", 110)
    redo = o.order
    o.accepted("st-b", 79, learnt=120)  # st-b had accepted in time, an age ago
    assert o.order == redo
