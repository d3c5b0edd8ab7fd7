"""The station's rules of the closed loop, without a database: which dispatch reopens a
completed order, follow-up dates, who records a follow-up visit, who sees its case."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.station_worker.domain import (
    ENDED_STATUSES,
    FollowUp,
    Order,
    StaffMember,
    authorize_follow_up,
    check_follow_up,
    check_follow_up_worker,
    check_visit,
    follow_up_overdue,
    kept_statuses,
    require_open_follow_up,
    sees_case,
    today,
)
from shared.domain import Category, OrderStatus
from shared.errors import Conflict, Forbidden, InvalidField

S = OrderStatus
MANAGER = StaffMember("m", "Manager", "st-a", "station_manager", "h")
WORKER = StaffMember("w", "Worker", "st-a", "social_worker", "h")
OTHER_WORKER = StaffMember("x", "Other", "st-a", "social_worker", "h")
DAY = date(2026, 12, 2)
TASK = FollowUp(uuid.uuid4(), "st-a", "w", DAY + timedelta(days=7), DAY, True, 1)


def test_only_a_redo_reopens_a_completed_order() -> None:
    assert kept_statuses(redo=False) == ENDED_STATUSES
    assert S.COMPLETED in kept_statuses(redo=False)
    assert S.COMPLETED not in kept_statuses(redo=True)
    # A closed or cancelled order stays so, redo or not.
    assert {S.CLOSED, S.CANCELLED} <= set(kept_statuses(redo=True))


def test_a_follow_up_day_is_the_utc_day_and_is_overdue_the_day_after() -> None:
    late_evening_east = datetime(2026, 12, 3, 7, 0, tzinfo=timezone(timedelta(hours=8)))
    assert today(late_evening_east) == date(2026, 12, 2)
    assert today(datetime(2026, 12, 2, 23, 59, tzinfo=UTC)) == DAY
    assert not follow_up_overdue(DAY, DAY)
    assert not follow_up_overdue(DAY + timedelta(days=1), DAY)
    assert follow_up_overdue(DAY - timedelta(days=1), DAY)


@pytest.mark.parametrize(
    ("by", "plan"),
    [(None, None), (DAY, None), (DAY, "plan"), (DAY + timedelta(days=366), "plan")],
)
def test_a_completion_may_owe_a_follow_up_from_its_day_to_a_year_after(
    by: date | None, plan: str | None
) -> None:
    check_follow_up(by, plan, DAY)


@pytest.mark.parametrize(
    ("by", "plan", "loc", "why"),
    [
        (DAY - timedelta(days=1), None, ("body", "follow_up_by"), "before the completion"),
        (DAY + timedelta(days=367), None, ("body", "follow_up_by"), "within 366 days"),
        (None, "plan", ("body", "follow_up_plan"), "needs a follow_up_by"),
    ],
)
def test_a_completions_follow_up_cannot_be(
    by: date | None, plan: str | None, loc: tuple[str, str], why: str
) -> None:
    with pytest.raises(InvalidField, match=why) as refused:
        check_follow_up(by, plan, DAY)
    assert refused.value.loc == loc


@pytest.mark.parametrize(
    ("visited_on", "next_by"),
    [
        (DAY, None),
        (DAY, DAY),
        (DAY + timedelta(days=3), DAY + timedelta(days=30)),
        (DAY + timedelta(days=3), DAY + timedelta(days=3 + 366)),
    ],
)
def test_a_visit_falls_between_the_completion_and_today(
    visited_on: date, next_by: date | None
) -> None:
    check_visit(TASK, visited_on, next_by, today=DAY + timedelta(days=3))


@pytest.mark.parametrize(
    ("visited_on", "next_by", "loc", "why"),
    [
        (DAY + timedelta(days=4), None, ("body", "visited_on"), "before it is made"),
        (DAY - timedelta(days=1), None, ("body", "visited_on"), "before the completion"),
        (DAY + timedelta(days=2), DAY + timedelta(days=1), ("body", "next_follow_up_by"), "visit"),
        (DAY, DAY + timedelta(days=367), ("body", "next_follow_up_by"), "within 366 days"),
    ],
)
def test_a_visit_cannot_be(
    visited_on: date, next_by: date | None, loc: tuple[str, str], why: str
) -> None:
    with pytest.raises(InvalidField, match=why) as refused:
        check_visit(TASK, visited_on, next_by, today=DAY + timedelta(days=3))
    assert refused.value.loc == loc


def test_a_follow_up_visit_is_for_its_worker_or_a_manager() -> None:
    authorize_follow_up(WORKER, TASK)
    authorize_follow_up(MANAGER, TASK)
    with pytest.raises(Forbidden):
        authorize_follow_up(OTHER_WORKER, TASK)
    with pytest.raises(Forbidden):
        authorize_follow_up(WORKER, replace(TASK, worker_id="x"))


def test_only_an_open_follow_up_takes_a_visit() -> None:
    o = Order(uuid.uuid4(), "st-a", S.COMPLETED, 6, 1, Category.ELDER_CARE, "w", None)
    assert require_open_follow_up(TASK, o) is TASK
    with pytest.raises(Conflict) as none:
        require_open_follow_up(None, o)
    assert none.value.extra["current"] == {"status": S.COMPLETED, "version": 6}
    with pytest.raises(Conflict) as ended:
        require_open_follow_up(replace(TASK, is_open=False, version=3), o)
    assert ended.value.extra["current"] == {
        "follow_up": "ended",
        "due_on": TASK.due_on.isoformat(),
        "version": 3,
    }


def test_a_follow_up_goes_to_another_active_social_worker() -> None:
    check_follow_up_worker(TASK, "x", is_active_worker=True)
    for worker_id, active, why in (("w", True, "already"), ("x", False, "no such active")):
        with pytest.raises(InvalidField, match=why) as refused:
            check_follow_up_worker(TASK, worker_id, active)
        assert refused.value.loc == ("body", "worker_id")


@pytest.mark.parametrize(
    ("staff", "worker_id", "follow_up_worker", "sees"),
    [
        (MANAGER, None, None, True),
        (WORKER, "w", None, True),
        (WORKER, "x", "w", True),  # the follow-up went to them after the service
        (WORKER, None, "w", True),
        (OTHER_WORKER, "w", "w", False),
        (OTHER_WORKER, None, None, False),
    ],
)
def test_the_case_is_also_for_the_follow_ups_worker(
    staff: StaffMember, worker_id: str | None, follow_up_worker: str | None, sees: bool
) -> None:
    assert sees_case(staff, worker_id, follow_up_worker) is sees
