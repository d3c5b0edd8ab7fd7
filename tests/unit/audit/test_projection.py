"""The timeliness projection is a function of the set of an order's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.domain import project
from shared.domain import OrderStatus, Stage
from shared.stats import percentile
from tests.factories.audit import OrderScript

STATIONS = ("st-a", "st-b", "st-c")
BASE = datetime(2025, 1, 1, tzinfo=UTC)


@st.composite
def orders(draw: st.DrawFn) -> tuple[OrderScript, dict[str, Any]]:
    """A plausible life of one order and what its projection must say."""
    script = OrderScript(BASE + timedelta(minutes=draw(st.integers(0, 10_000))))
    gap = st.integers(1, 600)
    rejections = draw(st.integers(0, 2))
    script.submitted()
    t = draw(st.integers(0, 300))  # 0: submitted and dispatched in one transaction
    first_dispatch = t
    for i in range(rejections + 1):
        script.dispatched(STATIONS[i], t)
        if draw(st.booleans()):
            t += draw(gap)
            script.dispatched(STATIONS[i], t, resend=True)
        t += draw(gap)
        script.received(STATIONS[i], t)
        if i < rejections:
            t += draw(gap)
            script.rejected(STATIONS[i], t)
            t += draw(gap)
    station = STATIONS[rejections]
    end = draw(st.sampled_from(["dispatched", "accepted", "in_service", "closed", "cancelled"]))
    status = OrderStatus(end)
    if end in ("accepted", "in_service", "closed"):
        t += draw(gap)
        script.accepted(station, t)
    if end in ("in_service", "closed"):
        t += draw(gap)
        script.assigned(station, "w1", t)
        t += draw(gap)
        script.started(station, "w1", t)
    if end == "closed":
        t += draw(gap)
        script.completed(station, "w1", t)
        t += draw(gap)
        script.closed(station, t)
    if end == "cancelled":
        t += draw(gap)
        script.cancelled(station, t)
    expected = {
        "status": status,
        "station_id": station,
        "submitted_at": script.submitted_at,
        "dispatched_at": script.submitted_at + timedelta(minutes=first_dispatch),
        "dispatches": rejections + 1,
        "rejections": rejections,
        "ended": end in ("closed", "cancelled"),
    }
    return script, expected


def _sort_key(event: dict[str, Any]) -> tuple[str, str]:
    return (event["occurred_at"], event["event_id"])


@settings(max_examples=100, deadline=None)
@given(orders(), st.data())
def test_any_arrival_order_and_any_duplicates_give_the_same_projection(
    order: tuple[OrderScript, dict[str, Any]], data: st.DataObject
) -> None:
    script, expected = order
    events = script.redacted()
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    arrivals = data.draw(st.permutations(events + duplicates))

    # As the consumer applies them: each new event (the inbox drops repeats) joins the
    # order's trail, and the order is recomputed from the trail so far.
    trail: dict[str, dict[str, Any]] = {}
    for event in arrivals:
        if event["event_id"] not in trail:
            trail[event["event_id"]] = event
            result = project(str(script.order_id), list(trail.values()))

    reference = project(str(script.order_id), sorted(events, key=_sort_key))
    assert result == reference
    assert reference.status is expected["status"]
    assert reference.station_id == expected["station_id"]
    assert reference.submitted_at == expected["submitted_at"]
    assert reference.dispatched_at == expected["dispatched_at"]
    assert len(reference.dispatches) == expected["dispatches"]
    assert reference.redispatches == expected["dispatches"] - 1
    assert reference.rejections == expected["rejections"]
    assert [d.station_id for d in reference.dispatches] == list(STATIONS[: expected["dispatches"]])
    assert (reference.ended_at is not None) == expected["ended"]
    assert reference.events == len(events)


def test_stage_outcomes_against_the_deadlines() -> None:
    script = OrderScript(BASE, deadlines_min={s: 60 for s in Stage})
    script.submitted().dispatched("st-a", 5).received("st-a", 6).accepted("st-a", 90)
    t = project(str(script.order_id), script.redacted())
    assert t.stage_outcome(Stage.DISPATCH, BASE) == "met"
    assert t.stage_outcome(Stage.ACCEPT, BASE) == "breached"  # done 30 minutes late
    # not done: pending until the deadline passes, breached from then on, while still open
    assert t.stage_outcome(Stage.ASSIGN, BASE + timedelta(minutes=59)) == "pending"
    assert t.stage_outcome(Stage.ASSIGN, BASE + timedelta(minutes=61)) == "breached"

    cancelled_early = OrderScript(BASE, deadlines_min={s: 60 for s in Stage})
    cancelled_early.submitted().dispatched("st-a", 5).cancelled("st-a", 30)
    t = project(str(cancelled_early.order_id), cancelled_early.redacted())
    assert t.status is OrderStatus.CANCELLED
    assert t.stage_outcome(Stage.ACCEPT, BASE + timedelta(days=1)) == "not_applicable"


def test_a_resent_dispatch_is_not_a_redispatch() -> None:
    script = OrderScript(BASE)
    script.submitted().dispatched("st-a", 1).dispatched("st-a", 20, resend=True)
    t = project(str(script.order_id), script.redacted())
    assert len(t.dispatches) == 1
    assert t.dispatched_at == BASE + timedelta(minutes=1)


def test_percentile_interpolates_between_the_nearest_values() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 0.9) == 46.0


def test_an_accept_of_a_dispatch_the_order_has_moved_on_from_changes_nothing() -> None:
    """As at the center: escalated from A to B, A's accept (late) is dropped."""
    script = OrderScript(BASE, deadlines_min={s: 30 for s in Stage})
    script.submitted().dispatched("st-a", 0).escalated("st-a", 30).dispatched("st-b", 30)
    script.accepted("st-a", 31).assigned("st-a", "w1", 32)
    t = project(str(script.order_id), script.redacted())
    assert t.status is OrderStatus.DISPATCHED
    assert t.station_id == "st-b"
    assert t.accepted_at is None
    assert t.worker_id is None


def test_a_rejection_of_a_dispatch_the_order_has_moved_on_from_changes_nothing() -> None:
    script = OrderScript(BASE)
    script.submitted().dispatched("st-a", 0).escalated("st-a", 30).dispatched("st-b", 30)
    script.rejected("st-a", 31)  # of dispatch 2 in the script's numbering: make it dispatch 1
    events = script.redacted()
    events[-1]["payload"]["dispatch_no"] = 1
    t = project(str(script.order_id), events)
    assert t.status is OrderStatus.DISPATCHED
    assert t.rejections == 0


def test_an_on_time_accept_that_won_over_the_redispatch_leaves_the_order_accepted_there() -> None:
    """A accepted at minute 29 of 30; the center had escalated to B at 30 and, hearing of the
    accept at 31, took the order back to A as accepted (a dispatch carrying ``accepted_at``)."""
    script = OrderScript(BASE, deadlines_min={s: 30 for s in Stage})
    script.submitted().dispatched("st-a", 0).accepted("st-a", 29)
    script.escalated("st-a", 30).dispatched("st-b", 30)
    script.dispatched("st-a", 31, accepted_at_minutes=29)
    t = project(str(script.order_id), script.redacted())
    assert t.status is OrderStatus.ACCEPTED
    assert t.station_id == "st-a"
    assert t.accepted_at == BASE + timedelta(minutes=29)
    assert t.stage_outcome(Stage.ACCEPT, BASE + timedelta(days=1)) == "met"
    assert [d.station_id for d in t.dispatches] == ["st-a", "st-b", "st-a"]
