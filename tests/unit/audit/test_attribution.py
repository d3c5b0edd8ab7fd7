"""Each figure goes to the station that held the order when it was made: stints judged by the
station's own deadlines (counted from its dispatch), service rounds charged to the station that
completed them, the center's waits and return visits in a row of their own. Histories made by
the center's own domain functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.audit.domain import (
    DEFAULT_TARGETS,
    CenterEvaluation,
    Reader,
    StationEvaluation,
    Timeline,
    closed_months,
    evaluate_center,
    evaluation,
    month_of,
    month_period,
    project,
)
from shared.domain import Satisfaction
from tests.factories.center import CenterOrder, at

EVALUATOR = Reader("rdr-e", "evaluator")
LATER = at(10_000)


def timeline(o: CenterOrder) -> Timeline:
    return project(str(o.order_id), o.redacted())


def by_station(*orders: CenterOrder) -> dict[str, StationEvaluation]:
    found = evaluation(EVALUATOR, [timeline(o) for o in orders], LATER, DEFAULT_TARGETS, 0.0)
    return {s.station: s for s in found}


def center(*orders: CenterOrder, now: datetime = LATER) -> CenterEvaluation:
    return evaluate_center([timeline(o) for o in orders], now, DEFAULT_TARGETS)


def figures(s: StationEvaluation, *names: str) -> tuple[object, ...]:
    return tuple(getattr(s, n) for n in names)


TIMELY = ("stints", "accepts_on_time", "accepts_late", "completions_on_time", "completions_late")


def test_a_station_dispatched_late_is_judged_from_its_own_dispatch() -> None:
    # Unroutable for three hours (the center's time), then an operator sends it to st-y,
    # which accepts 20 min and completes 4 h after its own dispatch (windows: 1 h, 6 h).
    o = CenterOrder().submitted().redispatched("st-y", 180)
    dispatched = next(e for e in o.events if e.type == "order.dispatched").payload
    assert dispatched.station_deadlines.accept_by == at(240)  # the center counts from 180
    o.served("st-y", 200).completed("st-y", 180 + 240)
    stations = by_station(o)
    assert figures(stations["st-y"], *TIMELY) == (1, 1, 0, 1, 0)
    c = center(o)
    assert (c.dispatches_on_time, c.dispatches_late) == (0, 1)


def test_an_escalation_is_the_late_stations_breach_and_the_next_stations_window_is_its_own() -> (
    None
):
    # st-x lets the hour pass; st-y, dispatched at 61, accepts at 100 (by its own 121).
    o = CenterOrder().submitted("st-x").escalated(61, "st-y").served("st-y", 100)
    stations = by_station(o)
    assert figures(stations["st-x"], *TIMELY) == (1, 0, 1, 0, 0)
    assert figures(stations["st-y"], *TIMELY) == (1, 1, 0, 1, 0)


def test_a_timely_rejection_then_a_hold_at_the_center_is_no_breach_of_the_station() -> None:
    o = CenterOrder().submitted("st-x").rejected("st-x", 10)  # no other station: held
    assert o.order.awaiting_operator
    x = by_station(o)["st-x"]
    assert figures(x, *TIMELY) == (1, 0, 0, 0, 0)
    assert (x.rejections, x.indicators["rejection_rate"].value) == (1, 1.0)
    c = center(o)
    assert c.waits == 1
    assert c.wait_p90_seconds == (LATER - at(10)).total_seconds()


def test_a_late_arriving_timely_sign_off_is_on_time_for_its_station_and_nothing_for_the_other() -> (
    None
):
    # st-x accepted at 50 (by 60); the center learnt of it at 70, after escalating to st-y.
    o = CenterOrder().submitted("st-x").escalated(61, "st-y").accepted("st-x", 50, learnt=70)
    o.assigned("st-x", 71).started("st-x", 72).completed("st-x", 80)
    stations = by_station(o)
    assert figures(stations["st-x"], *TIMELY) == (1, 1, 0, 1, 0)
    assert figures(stations["st-y"], *TIMELY) == (1, 0, 0, 0, 0)


def test_a_send_back_redone_elsewhere_is_charged_to_the_station_whose_work_was_sent_back() -> None:
    o = CenterOrder().submitted("st-x").served("st-x", 10)
    o.visited(20, resolved=False, satisfaction=Satisfaction.DISSATISFIED).sent_back("st-y", 30)
    o.served("st-y", 40).visited(50, satisfaction=Satisfaction.VERY_SATISFIED)
    stations = by_station(o)
    rounds = ("completed", "with_feedback", "satisfied", "first_visits", "send_backs")
    assert figures(stations["st-x"], *rounds) == (1, 1, 0, 1, 1)
    assert figures(stations["st-y"], *rounds) == (1, 1, 1, 0, 0)
    x, y = stations["st-x"].indicators, stations["st-y"].indicators
    assert (x["send_back_rate"].value, x["first_visit_satisfaction_rate"].value) == (1.0, 0.0)
    assert (y["send_back_rate"].value, y["satisfaction_rate"].value) == (0.0, 1.0)
    assert y["first_visit_satisfaction_rate"].value is None


def test_a_redo_rejected_and_redone_elsewhere_gives_each_station_its_own_part() -> None:
    o = CenterOrder().submitted("st-x").served("st-x", 10)
    o.visited(20, resolved=False, satisfaction=Satisfaction.DISSATISFIED).sent_back("st-x", 30)
    o.rejected("st-x", 35, "st-y").served("st-y", 40).visited(50)
    stations = by_station(o)
    x, y = stations["st-x"], stations["st-y"]
    assert figures(x, *TIMELY, "rejections", "completed", "send_backs") == (2, 1, 0, 1, 0, 1, 1, 1)
    assert figures(y, *TIMELY, "rejections", "completed", "satisfied") == (1, 1, 0, 1, 0, 0, 1, 1)


def test_supervision_is_the_station_whose_work_was_sent_back_the_third_time() -> None:
    o = CenterOrder().submitted("st-x").served("st-x", 10)
    for n, minutes in enumerate((20, 60, 100)):
        o.visited(minutes, resolved=False, satisfaction=Satisfaction.DISSATISFIED)
        o.sent_back("st-y" if n == 2 else "st-x", minutes + 5)
        if n < 2:
            o.served("st-x", minutes + 10)
    stations = by_station(o)
    assert (stations["st-x"].supervision_opened, stations["st-x"].send_backs) == (1, 3)
    assert stations["st-y"].supervision_opened == 0


def test_the_return_visit_rate_is_the_centers_and_counts_closed_windows_only() -> None:
    waiting = CenterOrder().submitted("st-x").served("st-x", 10)  # due 24 h after 13
    answered = CenterOrder().submitted("st-x").served("st-x", 10).visited(20)
    unanswered = CenterOrder().submitted("st-x").served("st-x", 10).unanswered(13 + 24 * 60)
    c = center(waiting, answered, unanswered, now=at(1000))
    assert (c.visits_due, c.visited) == (2, 1)
    assert c.indicators["return_visit_rate"].value == 0.5
    assert "return_visit_rate" not in by_station(answered)["st-x"].indicators
    assert center(waiting, now=at(13 + 24 * 60)).visits_due == 1  # its window has closed
    early = center(waiting, now=at(100))
    assert (early.visits_due, early.indicators["return_visit_rate"].value) == (0, None)


# -- Periods: a figure counts in the period of its own event -----------------------------------


def in_period(o: CenterOrder, start: float, end: float, now: datetime = LATER) -> StationEvaluation:
    period = (at(start), at(end))
    found = evaluation(EVALUATOR, [timeline(o)], now, DEFAULT_TARGETS, 0.0, period=period)
    return {s.station: s for s in found}["st-x"]


def test_each_stage_counts_in_the_period_it_was_done_in_time_or_its_deadline_passed() -> None:
    # Accepted on time at 30 (period 1); completed late at 500 (deadline 360: period 2).
    o = CenterOrder().submitted("st-x").accepted("st-x", 30).assigned("st-x", 31)
    o.started("st-x", 32).completed("st-x", 500).visited(600, satisfaction=Satisfaction.NEUTRAL)
    first, second, third = in_period(o, 0, 300), in_period(o, 300, 400), in_period(o, 400, 9000)
    assert figures(first, *TIMELY) == (1, 1, 0, 0, 0)
    assert figures(second, *TIMELY) == (0, 0, 0, 0, 1)  # breached when its deadline passed
    assert figures(third, *TIMELY, "completed", "with_feedback") == (0, 0, 0, 0, 0, 1, 1)


def test_a_closed_periods_figures_do_not_change_with_what_happens_later() -> None:
    o = CenterOrder().submitted("st-x").accepted("st-x", 30).assigned("st-x", 31)
    o.started("st-x", 32).completed("st-x", 100)
    before = in_period(o, 0, 200, now=at(250))
    o.visited(300, resolved=False, satisfaction=Satisfaction.DISSATISFIED).sent_back("st-x", 310)
    o.rejected("st-x", 320, "st-y").served("st-y", 400)
    after = in_period(o, 0, 200, now=at(5000))
    assert after == before
    assert figures(after, *TIMELY, "completed") == (1, 1, 0, 1, 0, 1)


def test_the_centers_return_visit_counts_when_its_window_closed() -> None:
    o = CenterOrder().submitted("st-x").served("st-x", 10).visited(2000)
    period = (at(0), at(1000))
    assert evaluate_center([timeline(o)], LATER, DEFAULT_TARGETS, period).visits_due == 0
    later = (at(1000), at(3000))
    c = evaluate_center([timeline(o)], LATER, DEFAULT_TARGETS, later)
    assert (c.visits_due, c.visited, c.dispatches_on_time) == (1, 1, 0)


def test_months_begin_and_end_in_the_countys_time_zone() -> None:
    november = month_period(date(2026, 11, 1), "Asia/Shanghai")
    assert november == (
        datetime(2026, 10, 31, 16, tzinfo=UTC),
        datetime(2026, 11, 30, 16, tzinfo=UTC),
    )
    assert month_of(november, "Asia/Shanghai") == date(2026, 11, 1)
    assert month_of((november[0], november[1] - timedelta(seconds=1)), "Asia/Shanghai") is None
    assert month_period(date(2026, 12, 1), "Asia/Shanghai")[1] == datetime(
        2026, 12, 31, 16, tzinfo=UTC
    )
    # November is closed 8 days after it ends: not yet on 7 December.
    first, now = datetime(2026, 9, 15, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)
    assert closed_months(first, now, "Asia/Shanghai", timedelta(days=8)) == [
        date(2026, 9, 1),
        date(2026, 10, 1),
    ]
