"""The audit follows an order that moves between stations as the center moves it: histories
made by the center's own domain functions (tests/factories/center.py), so every event is one
production emits."""

from __future__ import annotations

from services.audit.domain import Timeline, project
from shared.domain import OrderStatus, Satisfaction
from tests.factories.center import CenterOrder, at


def projected(o: CenterOrder) -> Timeline:
    t = project(str(o.order_id), o.redacted())
    # The audit agrees with the center on where the order is and what it is.
    assert (t.status, t.station_id) == (o.order.status, o.order.station_id)
    return t


def sent_back_once(station: str = "st-x") -> CenterOrder:
    """Served by ``station`` (accepted at 10, completed at 13), visited unresolved at 20 and
    sent back to ``station`` at 30."""
    o = CenterOrder().submitted(station).received(station, 1).served(station, 10)
    o.visited(20, resolved=False, satisfaction=Satisfaction.DISSATISFIED)
    return o.sent_back(station, 30)


def test_a_redo_rejected_and_redispatched_stays_one_round_that_moves_to_the_new_station() -> None:
    o = sent_back_once().rejected("st-x", 35, "st-y").served("st-y", 40)
    redos = [e.payload.redo for e in o.events if e.type == "order.dispatched"]
    # The center marks the redispatch within the redo as the redo, as the redo's dispatch.
    assert [r and r.send_back_no for r in redos] == [None, 1, 1]
    t = projected(o)
    assert t.status is OrderStatus.AWAITING_FEEDBACK
    assert [d.station_id for d in t.dispatches] == ["st-x", "st-x", "st-y"]
    (redo,) = t.redos
    assert (redo.send_back_no, redo.station_id, redo.dispatch_no) == (1, "st-y", 3)
    assert (redo.accepted_at, redo.completed_at) == (at(40), at(43))


def test_a_redo_an_operator_redispatches_before_acceptance_is_one_round() -> None:
    o = sent_back_once().redispatched("st-y", 35).served("st-y", 40)
    t = projected(o)
    (redo,) = t.redos
    assert (redo.station_id, redo.accepted_at, redo.completed_at) == ("st-y", at(40), at(43))


def test_a_redo_accepted_then_redispatched_by_an_operator_waits_for_the_new_stations_accept() -> (
    None
):
    o = sent_back_once().accepted("st-x", 32).redispatched("st-y", 35)
    t = projected(o)
    (redo,) = t.redos
    assert (redo.station_id, redo.accepted_at) == ("st-y", None)
    t = projected(o.served("st-y", 40))
    assert (t.redos[0].accepted_at, t.redos[0].completed_at) == (at(40), at(43))


def test_a_redo_escalated_to_another_station_is_one_round() -> None:
    o = sent_back_once()
    o.escalated(30 + 61, "st-y").served("st-y", 100)
    t = projected(o)
    (redo,) = t.redos
    assert (redo.station_id, redo.accepted_at) == ("st-y", at(100))


def test_a_take_back_during_a_redo_keeps_its_acceptance() -> None:
    # st-x accepted the redo in time (at 50); the center learnt of it only after it had
    # escalated the redo to st-y (at 91), and gave the order back to st-x.
    o = sent_back_once().escalated(91, "st-y").accepted("st-x", 50, learnt=95)
    assert o.order.status is OrderStatus.ACCEPTED
    assert o.order.station_id == "st-x"
    t = projected(o)
    (redo,) = t.redos
    assert (redo.station_id, redo.accepted_at) == ("st-x", at(50))


def test_a_completion_that_crossed_an_operators_redispatch_counts_for_the_station_that_did_it() -> (
    None
):
    o = CenterOrder().submitted("st-x").received("st-x", 1).accepted("st-x", 10)
    o.assigned("st-x", 11).started("st-x", 12)
    o.redispatched("st-y", 20).completed("st-x", 21)
    assert o.order.status is OrderStatus.AWAITING_FEEDBACK
    assert o.order.station_id == "st-x"
    t = projected(o)
    assert (t.completed_at, t.worker_id) == (at(21), "w1")


def test_a_completion_in_a_redo_that_crossed_a_redispatch_ends_the_round_at_its_station() -> None:
    o = sent_back_once().accepted("st-x", 32).assigned("st-x", 33).started("st-x", 34)
    o.redispatched("st-y", 35).completed("st-x", 36)
    t = projected(o)
    (redo,) = t.redos
    assert (redo.station_id, redo.completed_at) == ("st-x", at(36))


def test_steps_of_a_station_after_the_order_was_completed_elsewhere_change_nothing() -> None:
    o = CenterOrder().submitted("st-x").accepted("st-x", 10).assigned("st-x", 11)
    o.started("st-x", 12).redispatched("st-y", 20).completed("st-x", 21)
    o.accepted("st-y", 22)  # the station worker never queues it; were it to accept anyway
    t = projected(o)
    assert (t.station_id, t.accepted_at) == ("st-x", at(10))
