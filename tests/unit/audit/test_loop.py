"""The loop after the service in the audit: return visits, send-backs and their redos,
supervision, follow-ups, reviews; what the trail keeps of them; the evaluation figures."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.audit.domain import (
    DEFAULT_TARGETS,
    OrderReviewed,
    OrderSupervisionClosed,
    Reader,
    Timeline,
    chain,
    evaluation,
    own_entry,
    picked_for_review,
    project,
)
from shared.domain import OrderStatus, Satisfaction, Stage
from tests.factories.audit import SECRET, OrderScript

BASE = datetime(2025, 1, 1, tzinfo=UTC)
DAY = 1440
KEY = b"k" * 32
EVALUATOR = Reader("rdr-e", "evaluator")


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def timeline(script: OrderScript, extra: list[dict[str, Any]] | None = None) -> Timeline:
    return project(str(script.order_id), script.redacted() + (extra or []))


def served(
    station: str = "st-a", worker: str = "w1", done: float = 100, follow_up_by: date | None = None
) -> OrderScript:
    script = OrderScript(BASE).submitted().dispatched(station, 1).received(station, 2)
    script.accepted(station, 10).assigned(station, worker, 20).started(station, worker, 30)
    return script.completed(station, worker, done, follow_up_by=follow_up_by)


def test_the_personal_fields_of_every_new_event_stay_out_of_the_trail() -> None:
    script = served().awaiting_feedback("st-a", 101).feedback("st-a", 200, satisfaction="neutral")
    script.sent_back("st-a", 300, supervision=True)
    script.completed("st-a", "w1", 400, follow_up_by=date(2025, 1, 20))
    script.followed_up("st-a", "w1", 500, date(2025, 1, 10), next_by=date(2025, 2, 1))
    review = OrderReviewed(
        station_id="st-a",
        reviewer_id="rdr-s",
        timeliness=4,
        professional_quality=5,
        record_completeness=3,
        comment=f"review {SECRET}",
    )
    close = OrderSupervisionClosed(station_id="st-a", supervisor_id="rdr-s", note=f"n {SECRET}")
    own = [own_entry(p, script.order_id, "rdr-s") for p in (review, close)]
    envelopes = [e for _, e in script.events] + own
    assert sum(SECRET in e.to_json() for e in envelopes) == 6  # the events do carry them
    links = chain(KEY, envelopes, {})
    stored = json.dumps([x.event for x in links])
    assert SECRET not in stored
    by_type = {x.event_type: x.event["payload"] for x in links}
    assert "comment" not in by_type["order.feedback_received"]
    assert by_type["order.feedback_received"]["satisfaction"] == "neutral"
    assert "follow_up_plan" not in by_type["order.completed"]
    assert by_type["order.completed"]["follow_up_by"] == "2025-01-20"
    assert "summary" not in by_type["order.followed_up"]
    assert by_type["order.reviewed"]["professional_quality"] == 5
    assert "comment" not in by_type["order.reviewed"]
    assert "note" not in by_type["order.supervision_closed"]
    assert [x.station_id for x in links[-2:]] == ["st-a", "st-a"]


def test_the_loop_statuses_project_in_order() -> None:
    script = served()
    assert timeline(script).status is OrderStatus.COMPLETED
    script.awaiting_feedback("st-a", 101)
    t = timeline(script)
    assert (t.status, t.ended_at, t.feedback_due_at) == (
        OrderStatus.AWAITING_FEEDBACK,
        at(100),
        at(101 + 7 * DAY),
    )
    script.feedback("st-a", 150, source="operator", reached=False)  # nobody answered
    assert timeline(script).feedbacks == ()
    script.feedback("st-a", 200, resolved=True, satisfaction="very_satisfied")
    script.closed("st-a", 201)
    t = timeline(script)
    assert t.status is OrderStatus.CLOSED
    assert t.feedback is not None
    assert (t.feedback.satisfaction, t.feedback.resolved) == (Satisfaction.VERY_SATISFIED, True)
    assert t.ended_at == at(100)

    silent = (
        served().awaiting_feedback("st-a", 101).closed("st-a", 101 + 7 * DAY, without_feedback=True)
    )
    assert timeline(silent).status is OrderStatus.CLOSED_WITHOUT_FEEDBACK
    # final: a late event moves it nowhere
    silent.accepted("st-a", 8 * DAY)
    assert timeline(silent).status is OrderStatus.CLOSED_WITHOUT_FEEDBACK


def test_a_redo_reopens_the_order_and_is_timed_against_its_fresh_deadlines() -> None:
    script = served().awaiting_feedback("st-a", 101)
    script.feedback("st-a", 200, resolved=False, satisfaction="dissatisfied")
    script.sent_back("st-a", 300, accept_min=60, complete_min=DAY)
    t = timeline(script)
    assert (t.status, t.ended_at, t.send_backs) == (OrderStatus.DISPATCHED, None, 1)
    assert t.redispatches == 0  # a redo is not a redispatch
    assert t.dispatches[-1].send_back_no == 1
    (redo,) = t.redos
    assert (redo.accept_by, redo.complete_by) == (at(360), at(300 + DAY))
    # the first service keeps its own deadlines and times
    assert t.deadlines[Stage.ACCEPT] == at(DAY)
    assert t.accepted_at == at(10)
    assert redo.outcome(Stage.ACCEPT, at(359), None) == "pending"
    assert redo.outcome(Stage.ACCEPT, at(361), None) == "breached"

    script.accepted("st-a", 350).assigned("st-a", "w1", 351).started("st-a", "w1", 352)
    script.completed("st-a", "w1", 300 + DAY + 5)  # five minutes late
    script.awaiting_feedback("st-a", 300 + DAY + 6).feedback("st-a", 300 + DAY + 60)
    script.closed("st-a", 300 + DAY + 61)
    t = timeline(script)
    (redo,) = t.redos
    assert (redo.accepted_at, redo.completed_at) == (at(350), at(300 + DAY + 5))
    assert t.status is OrderStatus.CLOSED
    assert t.ended_at == at(300 + DAY + 5)
    assert t.completed_at == at(100)  # the first completion
    now = at(10 * DAY)
    assert t.outcomes(Stage.ACCEPT, now) == ["met", "met"]
    assert t.outcomes(Stage.COMPLETE, now) == ["met", "breached"]
    assert t.feedback is not None
    assert t.feedback.satisfaction is Satisfaction.SATISFIED
    assert len(t.feedbacks) == 2


def test_a_redo_at_another_station_moves_the_order_there() -> None:
    script = served().awaiting_feedback("st-a", 101).feedback("st-a", 200, resolved=False)
    script.sent_back("st-a", 300, to_station="st-b")
    script.accepted("st-a", 301)  # the old station's late word changes nothing
    t = timeline(script)
    assert (t.station_id, t.status) == ("st-b", OrderStatus.DISPATCHED)
    assert t.redos[0].accepted_at is None


def test_the_third_send_back_opens_supervision_and_the_supervisors_close_ends_it() -> None:
    script = served().awaiting_feedback("st-a", 101)
    for n in range(3):
        start = 200 + n * 1000
        script.feedback("st-a", start, resolved=False, satisfaction="very_dissatisfied")
        script.sent_back("st-a", start + 10, supervision=n == 2)
        if n < 2:
            script.accepted("st-a", start + 20).assigned("st-a", "w1", start + 21)
            script.completed("st-a", "w1", start + 30).awaiting_feedback("st-a", start + 31)
    t = timeline(script)
    assert (t.send_backs, len(t.redos), t.supervision_opened_at) == (3, 3, at(2210))
    assert t.under_supervision
    close = own_entry(
        OrderSupervisionClosed(station_id="st-a", supervisor_id="rdr-s", note="talked to them"),
        script.order_id,
        "rdr-s",
    )
    t = timeline(script, [close.redacted()])
    assert not t.under_supervision
    assert t.supervision_closed_at == close.occurred_at


def test_follow_ups_are_done_on_time_late_or_overdue() -> None:
    script = served(done=100).completed("st-a", "w1", 100)  # a duplicate word, not a 2nd one
    assert timeline(script).follow_ups == ()
    script = served(follow_up_by=date(2025, 1, 5)).awaiting_feedback("st-a", 101)
    t = timeline(script)
    (owed,) = t.follow_ups
    assert (owed.due_on, owed.worker_id, owed.done_on) == (date(2025, 1, 5), "w1", None)
    assert owed.outcome(datetime(2025, 1, 5, 23, tzinfo=UTC)) == "pending"
    assert owed.outcome(datetime(2025, 1, 6, 1, tzinfo=UTC)) == "breached"
    assert owed.overdue(datetime(2025, 1, 6, 1, tzinfo=UTC))

    script.followed_up("st-a", "w1", 4 * DAY, date(2025, 1, 5), next_by=date(2025, 1, 10))
    script.followed_up("st-a", "w1", 12 * DAY, date(2025, 1, 12))
    first, second = timeline(script).follow_ups
    now = datetime(2025, 2, 1, tzinfo=UTC)
    assert (first.outcome(now), first.done_on) == ("met", date(2025, 1, 5))
    assert (second.outcome(now), second.overdue(now)) == ("breached", False)  # done late


def test_the_review_pick_is_a_fixed_share_of_order_ids() -> None:
    rng = random.Random(7)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(2000)]
    picked = [i for i in ids if picked_for_review(i, 0.2)]
    assert 300 < len(picked) < 500
    assert picked == [i for i in ids if picked_for_review(i, 0.2)]  # the same every time
    assert not any(picked_for_review(i, 0.0) for i in ids)
    assert all(picked_for_review(i, 1.0) for i in ids)


def test_a_rate_with_nothing_to_count_is_null_and_neither_passes_nor_fails() -> None:
    script = OrderScript(BASE).submitted().dispatched("st-a", 1)
    (st,) = evaluation(EVALUATOR, [timeline(script)], at(2), DEFAULT_TARGETS, 0.2)
    figures = st.indicators
    for name in (
        "first_visit_satisfaction_rate",
        "satisfaction_rate",
        "send_back_rate",
        "review_coverage",
    ):
        assert (figures[name].value, figures[name].passed) == (None, None), name
    assert figures["on_time_acceptance_rate"].value is None  # pending: not counted yet
    late = evaluation(EVALUATOR, [timeline(script)], at(2 * DAY), DEFAULT_TARGETS, 0.2)[0]
    assert late.indicators["on_time_acceptance_rate"].value == 0.0
    assert late.indicators["on_time_acceptance_rate"].passed is False


def test_readers_see_the_evaluation_of_their_stations_only() -> None:
    a, b = timeline(served("st-a")), timeline(served("st-b"))
    both = [a, b]
    assert [s.station for s in evaluation(EVALUATOR, both, at(DAY), DEFAULT_TARGETS, 0.2)] == [
        "st-a",
        "st-b",
    ]
    manager = Reader("rdr-m", "station_manager", "st-b")
    assert [s.station for s in evaluation(manager, both, at(DAY), DEFAULT_TARGETS, 0.2)] == ["st-b"]
    supervisor = Reader("rdr-s", "supervisor", stations=("st-a", "st-c"))
    assert [s.station for s in evaluation(supervisor, both, at(DAY), DEFAULT_TARGETS, 0.2)] == [
        "st-a"
    ]
    county = Reader("rdr-c", "evaluator", stations=("st-b",))
    assert [s.station for s in evaluation(county, both, at(DAY), DEFAULT_TARGETS, 0.2)] == ["st-b"]
    assert (county.sees_everything, EVALUATOR.sees_everything) == (False, True)
    assert not county.supervises("st-b")
    assert supervisor.supervises("st-a")
    assert not supervisor.supervises("st-b")
    assert not manager.supervises("st-b")
    assert not EVALUATOR.supervises("st-a")


def _three_send_backs() -> OrderScript:
    script = served(follow_up_by=date(2025, 1, 9)).awaiting_feedback("st-a", 101)
    for n in range(3):
        start = 200 + n * 1000
        script.feedback("st-a", start, resolved=False, satisfaction="dissatisfied")
        script.sent_back("st-a", start + 10, supervision=n == 2)
        script.accepted("st-a", start + 20).completed("st-a", "w1", start + 30)
        script.awaiting_feedback("st-a", start + 30)  # in the same transaction as the word
    script.followed_up("st-a", "w1", 5000, date(2025, 1, 8), next_by=date(2025, 1, 20))
    return script.feedback("st-a", 5100).closed("st-a", 5100)


def test_the_loop_projects_the_same_whatever_the_arrival_order_and_duplicates() -> None:
    script = _three_send_backs()
    events = script.redacted()
    reference = project(str(script.order_id), events)
    assert (reference.status, reference.send_backs, len(reference.redos)) == (
        OrderStatus.CLOSED,
        3,
        3,
    )
    assert all(r.completed_at is not None for r in reference.redos)
    rng = random.Random(14)
    for _ in range(200):
        arrivals = events + rng.sample(events, 5)
        rng.shuffle(arrivals)
        trail: dict[str, dict[str, Any]] = {}
        for event in arrivals:
            if event["event_id"] not in trail:
                trail[event["event_id"]] = event
        assert project(str(script.order_id), list(trail.values())) == reference


def test_breaches_of_the_first_service_of_each_redo_and_of_each_follow_up() -> None:
    deadlines = {Stage.DISPATCH: 240, Stage.ACCEPT: 5, Stage.ASSIGN: 2880, Stage.COMPLETE: 21600}
    script = OrderScript(BASE, deadlines_min=deadlines)
    script.submitted().dispatched("st-a", 1).accepted("st-a", 10).assigned("st-a", "w1", 20)
    script.completed("st-a", "w1", 30, follow_up_by=date(2025, 1, 2))
    script.awaiting_feedback("st-a", 31).feedback("st-a", 40, resolved=False)
    script.sent_back("st-a", 50, accept_min=60, complete_min=120)
    script.accepted("st-a", 200)  # the redo's accept, 90 minutes late; completion pending
    t = timeline(script)
    now = at(150)
    assert [(b.stage, b.round, b.deadline) for b in t.breaches(now)] == [
        ("accept", 0, at(5)),
        ("accept", 1, at(110)),
    ]
    later = datetime(2025, 1, 3, 0, 1, tzinfo=UTC)  # the redo's completion; the follow-up of
    # the first completion was superseded by the redo
    assert [(b.stage, b.round, b.deadline) for b in t.breaches(later)] == [
        ("accept", 0, at(5)),
        ("accept", 1, at(110)),
        ("complete", 1, at(170)),
    ]
    owed = timeline(served(follow_up_by=date(2025, 1, 2)).awaiting_feedback("st-a", 101))
    assert [(b.stage, b.round, b.deadline) for b in owed.breaches(later)] == [
        ("follow_up", 1, datetime(2025, 1, 3, tzinfo=UTC))
    ]


def test_a_redispatch_during_a_redo_leaves_the_first_services_deadlines_alone() -> None:
    script = served().awaiting_feedback("st-a", 101).feedback("st-a", 200, resolved=False)
    script.sent_back("st-a", 300, accept_min=60)
    script.escalated("st-a", 360)
    script.dispatched("st-b", 360)  # with the deadlines the script knows: make them the redo's
    events = script.redacted()
    events[-1]["payload"]["deadlines"] = events[-3]["payload"]["deadlines"]
    t = project(str(script.order_id), events)
    assert t.deadlines[Stage.ACCEPT] == at(DAY)
    assert t.accepted_at == at(10)
    assert t.stage_outcome(Stage.ACCEPT, at(DAY * 30)) == "met"
    assert (t.station_id, t.redispatches, t.redos[0].accept_by) == ("st-b", 1, at(360))


def test_a_stage_the_first_service_skipped_is_not_breached_when_a_redo_reopens_it() -> None:
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).accepted("st-a", 2)
    script.completed("st-a", "w1", 3)  # never assigned: the assign stage did not apply
    script.awaiting_feedback("st-a", 3).feedback("st-a", 4, resolved=False)
    script.sent_back("st-a", 3 * DAY)  # after the assign deadline (48 h)
    t = timeline(script)
    assert t.ended_at is None
    assert t.stage_outcome(Stage.ASSIGN, at(4 * DAY)) == "not_applicable"
    assert t.breaches(at(3 * DAY + 1)) == []


def test_a_redo_supersedes_the_follow_up_still_owed_and_its_completion_may_owe_another() -> None:
    script = served(follow_up_by=date(2025, 1, 5)).awaiting_feedback("st-a", 101)
    script.feedback("st-a", 200, resolved=False).sent_back("st-a", 300)
    script.accepted("st-a", 310).completed("st-a", "w1", 320, follow_up_by=date(2025, 1, 9))
    script.followed_up("st-a", "w1", 400, date(2025, 1, 8))
    first, second = timeline(script).follow_ups
    now = datetime(2025, 3, 1, tzinfo=UTC)
    assert (first.superseded_at, first.outcome(now), first.overdue(now)) == (
        at(300),
        "not_applicable",
        False,
    )
    assert (second.done_on, second.outcome(now)) == (date(2025, 1, 8), "met")
    (st,) = evaluation(EVALUATOR, [timeline(script)], now, DEFAULT_TARGETS, 0.2)
    assert (st.follow_ups_due, st.follow_ups_done_on_time, st.follow_ups_overdue) == (1, 1, 0)
    assert [b.stage for b in timeline(script).breaches(now)] == []
