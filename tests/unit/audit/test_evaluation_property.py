"""The audit's evaluation equals a reference written apart from it (reference.py), on order
histories made by driving the center's own domain (accept, reject, escalate, redispatch,
take-back, complete, a completion crossing a redispatch, return visits, send-backs up to
supervision), the events delivered in any order with any duplicates."""

from __future__ import annotations

import random
from dataclasses import fields
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.audit.domain import (
    DEFAULT_TARGETS,
    Reader,
    evaluate_center,
    evaluation,
    project,
)
from shared.domain import OrderStatus, Satisfaction
from tests.factories.center import BASE, CenterOrder
from tests.unit.audit.reference import reference

EVALUATOR = Reader("rdr-e", "evaluator")
STATIONS = ("st-a", "st-b", "st-c")
STEPS = (1, 5, 20, 45, 90, 200, 400)
AT_WORK = (OrderStatus.ASSIGNED, OrderStatus.IN_SERVICE)
SERVED = (
    OrderStatus.COMPLETED,
    OrderStatus.AWAITING_FEEDBACK,
    OrderStatus.CLOSED,
    OrderStatus.CLOSED_WITHOUT_FEEDBACK,
)


def minutes(o: CenterOrder, when: Any) -> float:
    return float((when - BASE) / timedelta(minutes=1))


def actions(o: CenterOrder, crossing: str | None, may_take_back: bool) -> list[str]:
    order, status = o.order, o.order.status
    found = []
    if status is OrderStatus.DISPATCHED:
        found += ["accept", "reject", "escalate", "redispatch"]
    elif status is OrderStatus.ESCALATED:
        found += ["accept", "redispatch"] if order.awaiting_operator else ["accept"]
    elif status in (OrderStatus.REJECTED, OrderStatus.UNROUTABLE) and order.awaiting_operator:
        found += ["redispatch"]
    elif status is OrderStatus.ACCEPTED:
        found += ["assign", "reject", "redispatch"]
    elif status is OrderStatus.ASSIGNED:
        found += ["start", "complete", "redispatch"]
    elif status is OrderStatus.IN_SERVICE:
        found += ["complete", "redispatch"]
    elif status is OrderStatus.AWAITING_FEEDBACK and order.feedback_at is None:
        found += ["visit_closes", "visit_fails", "unanswered"]
    elif status is OrderStatus.AWAITING_FEEDBACK and order.awaiting_operator:
        found += ["send_back"]
    if (
        may_take_back
        and order.escalated_station_id is not None
        and order.escalated_accept_due_at is not None
        and status in (OrderStatus.DISPATCHED, OrderStatus.ESCALATED, OrderStatus.REJECTED)
    ):
        found.append("take_back")
    if crossing is not None and status not in SERVED:
        found.append("cross_complete")
    return found


def drive(data: st.DataObject, submitted: float) -> CenterOrder:
    """One order's history, each step one the center or a station could take there."""
    o = CenterOrder(submitted_minutes=submitted)
    first = data.draw(st.sampled_from([(), ("st-a",), ("st-b", "st-c")]))
    o.submitted(*first)
    now = submitted
    crossing: str | None = None
    # A station that accepted in time, unaware that it was escalated, until it is sent the
    # order again.
    may_take_back = False
    for _ in range(data.draw(st.integers(1, 16))):
        found = actions(o, crossing, may_take_back)
        if not found:
            break
        action = data.draw(st.sampled_from(found))
        now += data.draw(st.sampled_from(STEPS))
        order, here = o.order, o.order.station_id
        others = [s for s in STATIONS if s not in order.tried_stations]
        if action == "accept":
            assert here is not None
            o.accepted(here, now)
        elif action == "reject":
            assert here is not None
            o.rejected(here, now, *data.draw(st.sampled_from([[], others])))
        elif action == "escalate":
            assert order.accept_due_at is not None
            now = max(now, minutes(o, order.accept_due_at))
            o.escalated(now, *data.draw(st.sampled_from([[], others])))
        elif action == "redispatch":
            to = data.draw(st.sampled_from([s for s in STATIONS if s != here]))
            if order.status in AT_WORK:
                crossing = here
            o.redispatched(to, now)
        elif action == "take_back":
            assert order.escalated_station_id is not None
            assert order.escalated_accept_due_at is not None
            accepted = minutes(o, order.escalated_accept_due_at) - 1
            o.accepted(order.escalated_station_id, accepted, learnt=now)
        elif action == "assign":
            assert here is not None
            o.assigned(here, now)
        elif action == "start":
            assert here is not None
            o.started(here, now)
        elif action == "complete":
            assert here is not None
            o.completed(here, now)
        elif action == "cross_complete":
            assert crossing is not None
            o.completed(crossing, now)
        elif action == "visit_closes":
            satisfaction = data.draw(
                st.sampled_from(
                    [Satisfaction.VERY_SATISFIED, Satisfaction.SATISFIED, Satisfaction.NEUTRAL]
                )
            )
            o.visited(now, resolved=True, satisfaction=satisfaction)
        elif action == "visit_fails":
            o.visited(now, resolved=False, satisfaction=data.draw(st.sampled_from(Satisfaction)))
        elif action == "unanswered":
            assert order.feedback_due_at is not None
            now = max(now, minutes(o, order.feedback_due_at))
            o.unanswered(now)
        elif action == "send_back":
            o.sent_back(data.draw(st.sampled_from(STATIONS)), now)
        if o.order.status in SERVED:
            crossing = None
        if action == "escalate":
            may_take_back = True
        elif action == "take_back" or o.order.station_id == o.order.escalated_station_id:
            may_take_back = False
    return o


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_evaluation_equals_the_reference_whatever_the_order_of_delivery(
    data: st.DataObject,
) -> None:
    orders = [drive(data, submitted=60.0 * i) for i in range(data.draw(st.integers(1, 3)))]
    end = max(e.occurred_at for o in orders for e in o.events)
    now = end + timedelta(minutes=data.draw(st.sampled_from([0, 30, 600, 3000])))
    timelines = []
    for o in orders:
        delivered = o.redacted()
        delivered += [random.Random(len(delivered)).choice(delivered) for _ in range(2)]
        shuffled = data.draw(st.permutations(delivered))
        t = project(str(o.order_id), shuffled)
        assert len({r.send_back_no for r in t.redos}) == len(t.redos)  # one round each
        assert (t.status, t.station_id) == (o.order.status, o.order.station_id)
        timelines.append(t)

    # All time, or a period cut anywhere in the histories: a figure counts in its event's.
    cuts = sorted(data.draw(st.lists(st.sampled_from(range(0, 3000, 7)), min_size=2, max_size=2)))
    period = None if cuts[0] == cuts[1] else tuple(BASE + timedelta(minutes=m) for m in cuts)
    expected = reference([o.redacted() for o in orders], now, period)
    found = evaluation(EVALUATOR, timelines, now, DEFAULT_TARGETS, 0.0, period=period)
    assert sorted(s.station for s in found) == sorted(set(expected) - {"center"})
    for s in found:
        ref = expected[s.station]
        counts = {
            f.name: getattr(s, f.name)
            for f in fields(s)
            if isinstance(getattr(s, f.name), int) and f.name in ref
        }
        assert counts == {name: ref[name] for name in counts}, s.station
        assert {k: ref.get(k, 0) for k in ("accepts_late", "completions_late", "send_backs")} == {
            k: getattr(s, k) for k in ("accepts_late", "completions_late", "send_backs")
        }, s.station
        for name, value in s.indicators.items():
            if name in ref:
                assert value.value == ref[name], (s.station, name)

    center = evaluate_center(timelines, now, DEFAULT_TARGETS, period)
    ref_center = expected["center"]
    assert {
        name: getattr(center, name)
        for name in ("orders", "dispatches_on_time", "dispatches_late", "waits", "visits_due")
    } | {"visited": center.visited} == {
        name: ref_center[name]
        for name in (
            "orders",
            "dispatches_on_time",
            "dispatches_late",
            "waits",
            "visits_due",
            "visited",
        )
    }
    for name, value in center.indicators.items():
        assert value.value == ref_center[name], name
