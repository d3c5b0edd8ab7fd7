"""The station's rules, without a database: transitions, permissions, case visibility,
assignability and the ranking of workers to suggest."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from services.station_worker import domain
from services.station_worker.domain import (
    Action,
    Order,
    StaffMember,
    Worker,
    authorize,
    check_assignable,
    check_transition,
    rank_workers,
    require_manager,
    require_order,
    require_station,
    sees_case,
)
from shared.domain import Category, OrderStatus, Stage, current_deadline_sql
from shared.errors import Conflict, Forbidden, InvalidField, NotFound

S = OrderStatus
MANAGER = StaffMember("m", "Manager", "st-a", "station_manager", "h")
WORKER = StaffMember("w", "Worker", "st-a", "social_worker", "h")
OTHER_WORKER = StaffMember("x", "Other", "st-a", "social_worker", "h")
ELSEWHERE = StaffMember("e", "Elsewhere", "st-b", "station_manager", "h")


def order(status: OrderStatus = S.DISPATCHED, worker_id: str | None = None, v: int = 3) -> Order:
    return Order(uuid.uuid4(), "st-a", status, v, 1, Category.ELDER_CARE, worker_id, None)


ALLOWED = {
    (Action.ACCEPT, S.DISPATCHED): S.ACCEPTED,
    (Action.REJECT, S.DISPATCHED): S.REJECTED,
    (Action.ASSIGN, S.ACCEPTED): S.ASSIGNED,
    (Action.REASSIGN, S.ASSIGNED): S.ASSIGNED,
    (Action.REASSIGN, S.IN_SERVICE): S.ASSIGNED,
    (Action.START, S.ASSIGNED): S.IN_SERVICE,
    (Action.COMPLETE, S.IN_SERVICE): S.COMPLETED,
}


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("status", list(OrderStatus))
def test_each_action_moves_an_order_only_from_its_statuses(
    action: Action, status: OrderStatus
) -> None:
    o = order(status)
    if (action, status) in ALLOWED:
        assert check_transition(action, o, None) == ALLOWED[(action, status)]
        assert check_transition(action, o, o.version) == ALLOWED[(action, status)]
    else:
        with pytest.raises(Conflict) as refused:
            check_transition(action, o, None)
        assert refused.value.extra == {"current": {"status": status, "version": 3}}
        assert str(action) in refused.value.detail


def test_an_order_that_changed_since_is_a_conflict_with_its_version() -> None:
    with pytest.raises(Conflict) as refused:
        check_transition(Action.ACCEPT, order(v=4), 3)
    assert refused.value.extra == {"current": {"status": S.DISPATCHED, "version": 4}}


# Who may do what: M manager, A the assigned worker, O another worker of the station.
MAY = {
    Action.ACCEPT: {"M", "A", "O"},
    Action.REJECT: {"M", "A", "O"},
    Action.ASSIGN: {"M"},
    Action.REASSIGN: {"M"},
    Action.START: {"M", "A"},
    Action.COMPLETE: {"M", "A"},
}


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("who", ["M", "A", "O"])
def test_each_action_is_for_its_roles_only(action: Action, who: str) -> None:
    staff = {"M": MANAGER, "A": WORKER, "O": OTHER_WORKER}[who]
    o = order(worker_id=WORKER.id)
    if who in MAY[action]:
        authorize(action, staff, o)
    else:
        with pytest.raises(Forbidden):
            authorize(action, staff, o)


def test_an_unassigned_order_is_started_by_no_social_worker() -> None:
    with pytest.raises(Forbidden):
        authorize(Action.START, WORKER, order(worker_id=None))


def test_only_a_manager_manages_workers() -> None:
    require_manager(MANAGER, "manage social workers")
    with pytest.raises(Forbidden, match="only a station manager"):
        require_manager(WORKER, "manage social workers")


def test_another_stations_order_or_station_is_not_found() -> None:
    o = order()
    assert require_order(MANAGER, o) is o
    for missing in (None, o):
        with pytest.raises(NotFound):
            require_order(ELSEWHERE, missing)
    require_station(MANAGER, "st-a")
    with pytest.raises(NotFound):
        require_station(MANAGER, "st-b")


@pytest.mark.parametrize(
    ("staff", "worker_id", "sees"),
    [
        (MANAGER, None, True),
        (MANAGER, "w", True),
        (WORKER, "w", True),
        (WORKER, None, False),
        (OTHER_WORKER, "w", False),
    ],
)
def test_the_case_is_for_managers_and_the_assigned_worker(
    staff: StaffMember, worker_id: str | None, sees: bool
) -> None:
    assert sees_case(staff, worker_id) is sees


def worker(wid: str = "w", *, on_duty: bool = True, capacity: int = 2, active: int = 0,
           skills: tuple[Category, ...] = ()) -> Worker:  # fmt: skip
    return Worker(wid, f"Worker {wid}", skills, capacity, on_duty, active)


def test_an_order_goes_to_an_on_duty_worker_of_the_station_with_room() -> None:
    check_assignable(order(S.ACCEPTED), "w", worker(active=1))
    check_assignable(order(S.ASSIGNED, worker_id="x"), "w", worker())


@pytest.mark.parametrize(
    ("o", "candidate", "why"),
    [
        (order(S.ASSIGNED, worker_id="w"), worker(), "already assigned to this worker"),
        (order(S.ACCEPTED), None, "no such social worker"),
        (order(S.ACCEPTED), worker(on_duty=False), "not on duty"),
        (order(S.ACCEPTED), worker(capacity=2, active=2), "already carries 2 of 2"),
        (order(S.ACCEPTED), worker(capacity=0), "already carries 0 of 0"),
    ],
)
def test_an_order_cannot_go_to(o: Order, candidate: Worker | None, why: str) -> None:
    with pytest.raises(InvalidField, match=why) as refused:
        check_assignable(o, "w", candidate)
    assert refused.value.loc == ("body", "worker_id")


def test_workers_are_suggested_skill_match_first_then_lightest_load_then_id() -> None:
    care = (Category.ELDER_CARE,)
    workers = [
        worker("a", active=0),
        worker("b", active=1, skills=care),
        worker("c", active=0, skills=care),
        worker("d", active=0, skills=care, on_duty=False),
        worker("e", active=2, capacity=2, skills=care),
        worker("f", active=1),
        worker("g", active=0, skills=care),
        worker("h", active=0),
    ]
    ranked = [w.worker_id for w in rank_workers(workers, Category.ELDER_CARE)]
    assert ranked == ["c", "g", "b", "a", "h", "f"]


def test_a_dispatch_back_after_an_accept_in_time_arrives_accepted() -> None:
    assert domain.arrival_status(True) == S.ACCEPTED
    assert domain.arrival_status(False) == S.DISPATCHED


def test_the_queue_shows_the_open_statuses_unless_asked_for_others() -> None:
    assert domain.QueueFilter().shown_statuses == (
        S.DISPATCHED,
        S.ACCEPTED,
        S.ASSIGNED,
        S.IN_SERVICE,
    )
    asked = replace(domain.QueueFilter(), statuses=(S.CLOSED,))
    assert asked.shown_statuses == (S.CLOSED,)


MIGRATION = Path(domain.__file__).with_name("migrations") / "0002_dashboard.sql"


def test_the_due_at_column_is_the_current_stages_deadline() -> None:
    """Migrations are never edited: the released column must stay the shared rule."""
    text = MIGRATION.read_text()
    column = re.search(r"GENERATED ALWAYS AS \((.*?)\) STORED", text, re.S)
    assert column is not None
    expected = current_deadline_sql(
        {Stage.ACCEPT: "accept_by", Stage.ASSIGN: "assign_by", Stage.COMPLETE: "complete_by"},
        otherwise="'infinity'::timestamptz",
    )
    assert " ".join(column.group(1).split()) == " ".join(expected.split())
