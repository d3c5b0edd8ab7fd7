"""The audit's rules, without a database: which event sets what, stage outcomes, what each
reader sees, and the chain's link rules."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.audit.domain import (
    GENESIS,
    HMAC_SHA256,
    LEGACY_SHA256,
    Checkpoint,
    GroupBy,
    Reader,
    Timeline,
    chain,
    figures_for,
    fold,
    legacy_link_hash,
    link_problem,
    missing_events,
    project,
    row_hash,
    seen_by,
    visible_entries,
)
from shared.domain import OrderStatus, Stage
from tests.factories.audit import OrderScript

BASE = datetime(2025, 1, 1, tzinfo=UTC)
KEY = b"k" * 32
SUPERVISOR = Reader("rdr-s", "evaluator", None)
MANAGER_A = Reader("rdr-a", "station_manager", "st-a")
MANAGER_B = Reader("rdr-b", "station_manager", "st-b")


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def timeline(script: OrderScript) -> Timeline:
    return project(str(script.order_id), script.redacted())


# -- Which event sets which time --------------------------------------------------------------


def test_each_event_sets_its_own_time_and_status() -> None:
    script = OrderScript(BASE).submitted()
    steps: list[tuple[Any, str, OrderStatus]] = [
        (lambda: script.dispatched("st-a", 1), "dispatched_at", OrderStatus.DISPATCHED),
        (lambda: script.received("st-a", 2), "received_at", OrderStatus.DISPATCHED),
        (lambda: script.accepted("st-a", 3), "accepted_at", OrderStatus.ACCEPTED),
        (lambda: script.assigned("st-a", "w1", 4), "assigned_at", OrderStatus.ASSIGNED),
        (lambda: script.started("st-a", "w1", 5), "started_at", OrderStatus.IN_SERVICE),
        (lambda: script.completed("st-a", "w1", 6), "completed_at", OrderStatus.COMPLETED),
    ]
    times = ["dispatched_at", "received_at", "accepted_at", "assigned_at", "started_at"]
    times.append("completed_at")
    t = timeline(script)
    assert (t.status, t.submitted_at) == (OrderStatus.SUBMITTED, BASE)
    for n, (add, name, status) in enumerate(steps, 1):
        add()
        t = timeline(script)
        assert t.status is status
        assert getattr(t, name) == at(n)
        # nothing later is set yet
        assert all(getattr(t, later) is None for later in times[n:])
    assert t.worker_id == "w1"
    assert t.ended_at == at(6)
    assert t.deadlines[Stage.COMPLETE] == at(21600)


def test_the_first_time_counts_and_an_ended_order_stays_ended() -> None:
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).accepted("st-a", 2)
    script.accepted("st-a", 5)
    assert timeline(script).accepted_at == at(2)
    script.cancelled("st-a", 6).accepted("st-a", 7)
    t = timeline(script)
    assert (t.status, t.ended_at) == (OrderStatus.CANCELLED, at(6))


def test_only_a_completed_order_can_be_closed() -> None:
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).cancelled("st-a", 2)
    assert timeline(script.closed("st-a", 3)).status is OrderStatus.CANCELLED
    done = OrderScript(BASE).submitted().dispatched("st-a", 1).accepted("st-a", 2)
    done.assigned("st-a", "w1", 3).completed("st-a", "w1", 4).closed("st-a", 5)
    t = timeline(done)
    assert (t.status, t.ended_at) == (OrderStatus.CLOSED, at(4))


def test_rejections_and_escalations_count_and_a_redispatch_moves_the_station() -> None:
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).rejected("st-a", 2)
    script.dispatched("st-b", 3).escalated("st-b", 10).dispatched("st-c", 10)
    t = timeline(script)
    assert (t.status, t.station_id) == (OrderStatus.DISPATCHED, "st-c")
    assert (t.rejections, t.escalations, t.redispatches) == (1, 1, 2)
    assert t.dispatched_at == at(1)  # the first dispatch
    assert t.dispatches[0].rejected_at == at(2)
    assert t.dispatches[1].rejected_at is None


def test_progress_reported_by_a_station_the_order_left_is_ignored_but_its_completion_counts() -> (
    None
):
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).escalated("st-a", 9)
    script.dispatched("st-b", 9).assigned("st-a", "w-a", 10).started("st-a", "w-a", 11)
    t = timeline(script)
    assert (t.status, t.worker_id, t.assigned_at) == (OrderStatus.DISPATCHED, None, None)
    # As at the center: the service was delivered, whatever dispatch it crossed.
    t = timeline(script.completed("st-a", "w-a", 12))
    assert (t.status, t.station_id, t.worker_id, t.completed_at) == (
        OrderStatus.COMPLETED,
        "st-a",
        "w-a",
        at(12),
    )


def test_current_stage_and_deadline_follow_shared_domain() -> None:
    script = OrderScript(BASE).submitted()
    assert timeline(script).current_stage is Stage.DISPATCH
    assert timeline(script).current_deadline == at(240)
    script.dispatched("st-a", 1)
    assert timeline(script).current_deadline == at(1440)
    script.accepted("st-a", 2)
    assert timeline(script).current_stage is Stage.ASSIGN
    script.cancelled("st-a", 3)
    assert timeline(script).current_stage is None
    assert timeline(script).current_deadline is None


# -- Stage outcomes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("done", "ended", "now", "outcome"),
    [
        (59, None, 200, "met"),
        (60, None, 200, "met"),  # on the deadline is on time
        (61, None, 200, "breached"),
        (None, None, 59, "pending"),
        (None, None, 61, "breached"),
        (None, 30, 200, "not_applicable"),  # ended before the deadline without the stage
        (None, 90, 200, "breached"),  # ended after it without the stage
    ],
)
def test_stage_outcome(done: float | None, ended: float | None, now: float, outcome: str) -> None:
    t = Timeline(
        "o",
        deadlines={Stage.ACCEPT: at(60)},
        accepted_at=None if done is None else at(done),
        ended_at=None if ended is None else at(ended),
    )
    assert t.stage_outcome(Stage.ACCEPT, at(now)) == outcome
    assert t.stage_outcome(Stage.ASSIGN, at(now)) == "not_applicable"  # no deadline known
    assert t.breached(at(now)) == ([Stage.ACCEPT] if outcome == "breached" else [])


# -- Readers ----------------------------------------------------------------------------------


def test_who_sees_which_station() -> None:
    assert SUPERVISOR.sees_station(None)
    assert SUPERVISOR.sees_station("st-x")
    assert MANAGER_A.sees_station("st-a")
    assert not MANAGER_A.sees_station("st-b")
    assert not MANAGER_A.sees_station(None)  # the center's own events
    assert not Reader("rdr-x", "station_manager", None).sees_station(None)
    assert (SUPERVISOR.scope, MANAGER_A.scope) == (None, frozenset({"st-a"}))
    entries = [{"station_id": s} for s in (None, "st-a", "st-b")]
    assert visible_entries(MANAGER_A, entries) == [{"station_id": "st-a"}]
    assert visible_entries(SUPERVISOR, entries) == entries


def _moved_from_a_to_b() -> Timeline:
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).rejected("st-a", 2)
    script.dispatched("st-b", 3).accepted("st-b", 4).assigned("st-b", "w-b", 5)
    return timeline(script)


def test_the_station_holding_the_order_sees_its_own_part_only() -> None:
    t = _moved_from_a_to_b()
    seen = seen_by(MANAGER_B, t, at(10))
    assert seen is not None
    assert seen.stages == {}  # the order's stages are partly st-a's
    assert [d.station_id for d in seen.dispatches] == ["st-b"]
    assert [(s.station_id, s.outcome(Stage.ACCEPT, at(10))) for s in seen.stints] == [
        ("st-b", "met")
    ]
    mine = seen.timeline
    assert (mine.status, mine.station_id, mine.worker_id) == (
        OrderStatus.ASSIGNED,
        "st-b",
        "w-b",
    )
    assert (mine.dispatched_at, mine.accepted_at, mine.rejections) == (None, None, 0)
    everything = seen_by(SUPERVISOR, t, at(10))
    assert everything is not None
    assert everything.timeline == t
    assert set(everything.stages) == set(Stage)
    assert [d.station_id for d in everything.dispatches] == ["st-a", "st-b"]
    assert [s.station_id for s in everything.stints] == ["st-a", "st-b"]


def test_a_redo_moved_to_another_station_shows_it_nothing_of_the_first_stations_work() -> None:
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).accepted("st-a", 2)
    script.assigned("st-a", "w-a", 3).completed("st-a", "w-a", 4, follow_up_by=date(2025, 2, 1))
    script.awaiting_feedback("st-a", 5).feedback("st-a", 6, resolved=False)
    script.sent_back("st-a", 7).accepted("st-a", 8).completed("st-a", "w-a", 9)
    script.awaiting_feedback("st-a", 10).feedback("st-a", 11, resolved=False)
    script.sent_back("st-a", 12, to_station="st-b", supervision=True)
    t = timeline(script)
    seen = seen_by(MANAGER_B, t, at(20))
    assert seen is not None
    b = seen.timeline
    assert (b.status, b.station_id, b.worker_id) == (OrderStatus.DISPATCHED, "st-b", None)
    assert [r.station_id for r in b.redos] == ["st-b"]
    assert (b.follow_ups, b.feedbacks, b.send_backs) == ((), (), 0)
    assert (b.supervision_station_id, b.supervision_opened_at) == (None, None)
    assert [d.station_id for d in seen.dispatches] == ["st-b"]
    a = seen_by(MANAGER_A, t, at(20))
    assert a is not None
    assert (a.timeline.status, a.timeline.station_id, a.timeline.send_backs) == (None, None, 2)
    assert [r.station_id for r in a.timeline.redos] == ["st-a"]
    assert len(a.timeline.feedbacks) == 2
    assert a.timeline.supervision_station_id == "st-a"
    assert t.served_by == "st-a"  # a review of this order is st-a's supervisor's


def test_a_station_the_order_left_sees_only_its_own_dispatch() -> None:
    t = _moved_from_a_to_b()
    seen = seen_by(MANAGER_A, t, at(10))
    assert seen is not None
    assert seen.stages == {}
    assert [d.station_id for d in seen.dispatches] == ["st-a"]
    blank = seen.timeline
    assert (blank.status, blank.station_id, blank.worker_id) == (None, None, None)
    assert (blank.dispatched_at, blank.accepted_at, blank.assigned_at) == (None, None, None)
    assert blank.rejections == 1  # its own
    assert blank.redispatches == 1
    assert blank.submitted_at == BASE


def test_a_station_never_sent_the_order_sees_nothing() -> None:
    assert seen_by(Reader("rdr-c", "station_manager", "st-c"), _moved_from_a_to_b(), at(10)) is None


def test_a_managers_report_covers_the_times_their_station_held_an_order() -> None:
    t = _moved_from_a_to_b()
    (a,) = figures_for(MANAGER_A, [t], GroupBy.STATION, at(10))
    assert (a.group, a.orders, a.dispatches, a.rejections) == ("st-a", 1, 1, 1)
    assert (a.open_backlog, a.redispatched_orders) == (0, 0)
    groups = figures_for(SUPERVISOR, [t], GroupBy.STATION, at(10))
    assert [(g.group, g.orders, g.dispatches, g.open_backlog) for g in groups] == [
        ("st-a", 1, 1, 0),
        ("st-b", 1, 1, 1),
        ("center", 1, 2, 0),  # an evaluator's: the center's own row
    ]
    assert groups[1].redispatched_orders == 1
    assert groups[2].stages[Stage.DISPATCH].done == 1
    by_worker = figures_for(SUPERVISOR, [t], GroupBy.WORKER, at(10))
    assert [(g.group, g.dispatches, g.rejection_rate) for g in by_worker] == [
        ("none", 1, 1.0),  # st-a's stint: rejected before anyone was assigned
        ("w-b", 1, 0.0),
        ("center", 2, 0.5),
    ]


def test_every_grouping_shows_a_station_its_own_stints_only() -> None:
    # st-a's work was sent back and redone at st-b: st-b's manager, grouping by category or
    # worker, sees st-b's stint only, never st-a's accept or worker.
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).accepted("st-a", 2)
    script.assigned("st-a", "w-a", 3).completed("st-a", "w-a", 4)
    script.awaiting_feedback("st-a", 5).feedback("st-a", 6, resolved=False)
    script.sent_back("st-a", 7, to_station="st-b").accepted("st-b", 800)
    script.assigned("st-b", "w-b", 801)
    t = timeline(script)
    assert [(s.station_id, s.worker_id) for s in t.stints] == [("st-a", "w-a"), ("st-b", "w-b")]
    for group_by, name in ((GroupBy.CATEGORY, "elder_care"), (GroupBy.WORKER, "w-b")):
        (mine,) = figures_for(MANAGER_B, [t], group_by, at(900))
        assert (mine.group, mine.orders, mine.dispatches, mine.completed) == (name, 1, 1, 0)
        accept = mine.stages[Stage.ACCEPT]
        assert (accept.done, accept.on_time, accept.breached) == (1, 0, 1)  # 793 min > 60
        assert accept.p50_seconds == 793 * 60
    (theirs,) = figures_for(MANAGER_A, [t], GroupBy.WORKER, at(900))
    assert (theirs.group, theirs.completed, theirs.open_backlog) == ("w-a", 1, 0)


# -- The chain --------------------------------------------------------------------------------


def _rows(script: OrderScript, key: bytes = KEY) -> list[dict[str, Any]]:
    links = chain(key, [e for _, e in script.events], {})
    return [vars(x) | {"seq": n} for n, x in enumerate(links, 1)]


def test_each_link_covers_the_one_before_it() -> None:
    script = OrderScript(BASE).submitted().dispatched("st-a", 1).received("st-a", 2)
    rows = _rows(script)
    assert rows[0]["prev_hash"] == GENESIS
    for before, row in itertools.pairwise(rows):
        assert row["prev_hash"] == before["hash"]
    prev = GENESIS
    for row in rows:
        assert row["hash_version"] == HMAC_SHA256
        assert row["hash"] == row_hash(KEY, prev, row)
        assert link_problem(KEY, prev, row, first_keyed_seq=1) is None
        prev = row["hash"]
    assert [r["station_id"] for r in rows] == [None, "st-a", "st-a"]
    # a chain continues after the last entry already stored
    more = chain(KEY, [script.events[0][1]], {script.order_id: "f" * 64})
    assert more[0].prev_hash == "f" * 64


def test_what_breaks_a_link() -> None:
    rows = _rows(OrderScript(BASE).submitted().dispatched("st-a", 1))
    first, second = rows
    assert link_problem(KEY, GENESIS, second, 1) == "prev_hash_mismatch"  # a removed entry
    edited = first | {"station_id": "st-x"}
    assert link_problem(KEY, GENESIS, edited, 1) == "hash_mismatch"
    assert link_problem(b"x" * 32, GENESIS, first, 1) == "hash_mismatch"  # made without the key


def test_unkeyed_entries_hold_only_before_the_first_keyed_one() -> None:
    (row,) = _rows(OrderScript(BASE).submitted())
    legacy = row | {
        "hash_version": LEGACY_SHA256,
        "hash": legacy_link_hash(GENESIS, row["event"]),
        "seq": 5,
    }
    assert link_problem(KEY, GENESIS, legacy, first_keyed_seq=None) is None
    assert link_problem(KEY, GENESIS, legacy, first_keyed_seq=9) is None
    assert link_problem(KEY, GENESIS, legacy, first_keyed_seq=3) == "legacy_hash"
    assert link_problem(KEY, GENESIS, legacy | {"hash": "0" * 64}, None) == "hash_mismatch"


def test_checkpoints_are_signed_and_fold_in_seq_order() -> None:
    digest = fold(fold(GENESIS, 1, "a"), 2, "b")
    assert digest != fold(fold(GENESIS, 2, "b"), 1, "a")
    assert digest != fold(fold(GENESIS, 1, "a"), 3, "b")
    checkpoint = Checkpoint(at=BASE, max_seq=2, entries=2, digest=digest).signed(KEY)
    assert checkpoint.valid(KEY)
    assert not checkpoint.valid(b"x" * 32)
    assert not checkpoint.model_copy(update={"entries": 1}).valid(KEY)
    again = Checkpoint.model_validate_json(checkpoint.model_dump_json())
    assert again.valid(KEY)


def test_a_producer_that_skips_a_number_has_lost_an_event() -> None:
    assert missing_events({"center": {1, 2, 3}, "station": {1, 2}}) == []
    assert missing_events({"center": {1, 3, 6}, "station": {2}}) == [
        ("center", 2),
        ("center", 4),
        ("center", 5),
        ("station", 1),
    ]
    assert missing_events({}) == []
