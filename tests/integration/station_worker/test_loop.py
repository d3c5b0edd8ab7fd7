"""The station's part of the closed loop on the real stack: a redo dispatch (发回重办) reopens a
completed order; a completion with a follow-up gives its worker a follow-up task (跟进回访)
whose visits go out as order.followed_up; the overdue follow-ups gauge."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.station_worker.admin import revoke_staff
from shared.db import transaction_in
from shared.events import SYSTEM, OrderClosed, new_event
from tests.conftest import RunningStack
from tests.helpers import eventually, remember_personal_data
from tests.integration.station_worker.station import (
    OwnStation,
    dispatch,
    dispatched,
    new_station,
    order_when,
    publish_events,
    redo_dispatched,
)
from tests.integration.station_worker.test_station_dashboard import (
    COMPLETION,
    post,
    station_events,
)

pytestmark = pytest.mark.integration


def today() -> date:
    return datetime.now(UTC).date()


async def serve(
    http: httpx.AsyncClient,
    station: OwnStation,
    order_id: str,
    worker: str,
    completion: dict[str, Any] | None = None,
) -> httpx.Response:
    """Accept, assign to ``worker``, start and complete the order; the completion's answer."""
    token = station.workers[worker]
    assert (await post(http, station, order_id, "accept")).status_code == 200
    resp = await post(http, station, order_id, "assign", {"worker_id": worker})
    assert resp.status_code == 200, resp.text
    assert (await post(http, station, order_id, "start", token=token)).status_code == 200
    return await post(http, station, order_id, "complete", completion or COMPLETION, token=token)


async def completed_order(
    stack: RunningStack,
    http: httpx.AsyncClient,
    station: OwnStation,
    worker: str,
    completion: dict[str, Any] | None = None,
) -> str:
    order_id: str = (await dispatch(stack, http, station))["order_id"]
    done = await serve(http, station, order_id, worker, completion)
    assert done.status_code == 200, done.text
    return order_id


async def acknowledged(db: asyncpg.Pool, order_id: str) -> list[int]:
    return [
        e["payload"]["dispatch_no"]
        for e in await station_events(db, order_id)
        if e["type"] == "order.received"
    ]


# ------------------------------------------------------------------------------------ redo


async def test_a_redo_reopens_a_completed_order_with_fresh_deadlines_marked_as_redo(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True), ("b", [], 5, True)])
    a, b = station.workers
    order_id = await completed_order(stack, http, station, a)
    before = await order_when(http, station, order_id, "completed")

    redo = redo_dispatched(station.id, order_id, 2, reason="Meals stopped after two days")
    await publish_events(stack, redo)
    reopened = await order_when(http, station, order_id, "dispatched")
    assert reopened["dispatch_no"] == 2
    assert reopened["worker_id"] is None
    assert reopened["redo"] == {
        "send_back_no": 1,
        "reason": "Meals stopped after two days",
        "resolved": False,
        "satisfaction": "dissatisfied",
    }
    fresh = redo.payload.deadlines
    assert datetime.fromisoformat(reopened["deadlines"]["accept_by"]) == fresh.accept_by
    assert datetime.fromisoformat(reopened["deadlines"]["complete_by"]) == fresh.complete_by
    assert reopened["deadlines"] != before["deadlines"]
    assert datetime.fromisoformat(reopened["due_at"]) == fresh.accept_by
    # The earlier service stays in the history, the redo follows it with its reason.
    assert [h["status"] for h in reopened["history"]] == [
        "dispatched",
        "accepted",
        "assigned",
        "in_service",
        "completed",
        "dispatched",
    ]
    assert reopened["history"][-1]["note"] == "redo 1: Meals stopped after two days"
    assert await acknowledged(db, order_id) == [1, 2]

    # The queue shows it, marked as a redo.
    listing = await http.get(
        f"{station.base}/v1/stations/{station.id}/orders", headers=station.auth()
    )
    (row,) = [o for o in listing.json()["orders"] if o["order_id"] == order_id]
    assert row["redo"]["reason"] == "Meals stopped after two days"

    # And it goes through every step again, with another worker this time.
    done = await serve(http, station, order_id, b)
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["worker_id"]) == ("completed", b)
    events = await station_events(db, order_id)
    assert [e["type"] for e in events][-5:] == [
        "order.received",
        "order.accepted",
        "order.assigned",
        "order.started",
        "order.completed",
    ]


async def test_a_redo_may_go_to_another_station(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    other = await new_station(stack, db)
    (a,) = station.workers
    order_id = await completed_order(stack, http, station, a)
    await publish_events(stack, redo_dispatched(other.id, order_id, 2))
    moved = await order_when(http, other, order_id, "dispatched")
    assert (moved["station_id"], moved["redo"]["send_back_no"]) == (other.id, 1)
    gone = await http.get(f"{station.base}/v1/orders/{order_id}", headers=station.auth())
    assert gone.status_code == 404


async def test_a_later_dispatch_that_is_not_a_redo_leaves_a_completed_order_alone(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    (a,) = station.workers
    order_id = await completed_order(stack, http, station, a)
    later = dispatched(station.id, order_id=uuid.UUID(order_id), dispatch_no=2)
    await publish_events(stack, later)
    await dispatch(stack, http, station)  # the consumer got past it
    kept = await order_when(http, station, order_id)
    assert (kept["status"], kept["dispatch_no"], kept["redo"]) == ("completed", 1, None)
    assert await acknowledged(db, order_id) == [1]


async def test_a_redo_delivered_twice_or_late_is_applied_once(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    (a,) = station.workers
    order_id = await completed_order(stack, http, station, a)
    redo = redo_dispatched(station.id, order_id, 2)
    await publish_events(stack, redo, redo)
    reopened = await order_when(http, station, order_id, "dispatched")
    accepted = await post(http, station, order_id, "accept")
    assert accepted.status_code == 200, accepted.text
    # The same event again, a re-send of it (same dispatch_no, new id) and the first dispatch
    # redelivered late: the order stays as it is.
    resent = redo_dispatched(station.id, order_id, 2)
    first = dispatched(station.id, order_id=uuid.UUID(order_id), dispatch_no=1)
    await publish_events(stack, redo, resent, first)
    await dispatch(stack, http, station)  # the consumer got past them
    after = await order_when(http, station, order_id)
    assert (after["status"], after["dispatch_no"]) == ("accepted", 2)
    assert after["version"] == reopened["version"] + 1
    assert [h["status"] for h in after["history"]].count("dispatched") == 2
    # Acknowledged once per event that reached it: the duplicate is not seen at all.
    assert await acknowledged(db, order_id) == [1, 2, 2]


# ------------------------------------------------------------------------------- follow-ups

PLAN = "Check the meal delivery is still arriving; bring the pension form"


async def follow_ups(
    http: httpx.AsyncClient, station: OwnStation, token: str | None = None, **params: Any
) -> list[dict[str, Any]]:
    resp = await http.get(
        f"{station.base}/v1/stations/{station.id}/follow-ups",
        params=params,
        headers=station.auth(token),
    )
    assert resp.status_code == 200, resp.text
    tasks: list[dict[str, Any]] = resp.json()["follow_ups"]
    return tasks


async def visit(
    http: httpx.AsyncClient,
    station: OwnStation,
    order_id: str,
    body: Any,
    token: str | None = None,
) -> httpx.Response:
    return await http.post(
        f"{station.base}/v1/orders/{order_id}/follow-ups", json=body, headers=station.auth(token)
    )


def with_follow_up(by: date, plan: str | None = PLAN) -> dict[str, Any]:
    return (
        COMPLETION
        | {"follow_up_needed": True, "follow_up_by": by.isoformat()}
        | ({"follow_up_plan": plan} if plan else {})
    )


async def test_a_follow_up_is_the_workers_task_until_its_last_visit(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True), ("b", [], 5, True)])
    (a, a_token), (_b, b_token) = station.workers.items()
    remember_personal_data(PLAN)
    due = today() + timedelta(days=7)
    order_id = await completed_order(stack, http, station, a, with_follow_up(due))
    completed = (await station_events(db, order_id))[-1]
    assert completed["type"] == "order.completed"
    assert completed["payload"]["follow_up_by"] == due.isoformat()
    assert completed["payload"]["follow_up_plan"] == PLAN

    # On the worker's list, and on the queue's row, with its due day.
    (task,) = await follow_ups(http, station, a_token)
    assert (task["order_id"], task["worker_id"], task["due_on"]) == (order_id, a, due.isoformat())
    assert (task["overdue"], task["needs_manager"], task["visits"]) == (False, False, 0)
    assert await follow_ups(http, station, b_token) == []
    assert [t["order_id"] for t in await follow_ups(http, station)] == [order_id]
    listing = await http.get(
        f"{station.base}/v1/stations/{station.id}/orders",
        params={"status": "completed"},
        headers=station.auth(a_token),
    )
    (row,) = listing.json()["orders"]
    assert row["follow_up"] == {
        "worker_id": a,
        "due_on": due.isoformat(),
        "overdue": False,
        "worker_active": True,
    }
    order = await order_when(http, station, order_id)
    assert order["follow_up_task"]["plan"] == PLAN
    b_view = (
        await http.get(f"{station.base}/v1/orders/{order_id}", headers=station.auth(b_token))
    ).json()
    assert (b_view["follow_up_task"]["plan"], b_view["case"]) == (None, None)

    # Another worker may not record its visit; its own worker may.
    summary = "Meals arrive daily; pension form handed in"
    remember_personal_data(summary)
    next_by = today() + timedelta(days=30)
    body = {
        "visited_on": today().isoformat(),
        "summary": summary,
        "next_follow_up_by": next_by.isoformat(),
    }
    assert (await visit(http, station, order_id, body, b_token)).status_code == 403
    resp = await visit(http, station, order_id, body, a_token)
    assert resp.status_code == 201, resp.text
    recorded = resp.json()
    assert (recorded["due_on"], recorded["ended_at"]) == (next_by.isoformat(), None)
    assert [(v["visited_on"], v["summary"]) for v in recorded["visits"]] == [
        (today().isoformat(), summary)
    ]
    followed = (await station_events(db, order_id))[-1]
    assert followed["type"] == "order.followed_up"
    assert followed["actor"] == {"kind": "station_staff", "id": a}
    assert followed["payload"] == {
        "station_id": station.id,
        "worker_id": a,
        "visited_on": today().isoformat(),
        "summary": summary,
        "next_follow_up_by": next_by.isoformat(),
    }
    (task,) = await follow_ups(http, station, a_token)
    assert (task["due_on"], task["visits"]) == (next_by.isoformat(), 1)

    # A manager records the last visit: the task ends, the list is empty.
    last = {"visited_on": today().isoformat(), "summary": "All settled", "next_follow_up_by": None}
    resp = await visit(http, station, order_id, last)
    assert resp.status_code == 201, resp.text
    assert resp.json()["end_reason"] == "done"
    assert (await station_events(db, order_id))[-1]["payload"]["next_follow_up_by"] is None
    assert await follow_ups(http, station) == []
    again = await visit(http, station, order_id, last)
    assert again.status_code == 409
    ended = await order_when(http, station, order_id)
    assert ended["follow_up"] is None
    assert ended["follow_up_task"]["end_reason"] == "done"
    assert [h["status"] for h in ended["history"]][-2:] == ["followed_up", "followed_up"]


async def test_a_follow_up_of_a_worker_who_left_goes_to_the_managers(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True), ("b", [], 5, True)])
    (a, _a_token), (b, b_token) = station.workers.items()
    due = today() + timedelta(days=3)
    order_id = await completed_order(stack, http, station, a, with_follow_up(due, None))
    assert await follow_ups(http, station, unattended="true") == []
    async with transaction_in("station_worker", stack.database_url) as conn:
        assert await revoke_staff(conn, a)

    (task,) = await follow_ups(http, station, unattended="true")
    assert (task["order_id"], task["worker_active"], task["needs_manager"]) == (
        order_id,
        False,
        True,
    )
    reassign_url = f"{station.base}/v1/orders/{order_id}/follow-ups/reassign"
    resp = await http.post(reassign_url, json={"worker_id": b}, headers=station.auth(b_token))
    assert resp.status_code == 403
    resp = await http.post(reassign_url, json={"worker_id": a}, headers=station.auth())
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["body", "worker_id"]
    resp = await http.post(reassign_url, json={"worker_id": b}, headers=station.auth())
    assert resp.status_code == 200, resp.text
    assert (resp.json()["worker_id"], resp.json()["worker_active"]) == (b, True)
    assert await follow_ups(http, station, unattended="true") == []
    assert [t["order_id"] for t in await follow_ups(http, station, b_token)] == [order_id]
    # The new worker sees the case now, and records the visit under their name.
    mine = (
        await http.get(f"{station.base}/v1/orders/{order_id}", headers=station.auth(b_token))
    ).json()
    assert mine["case"] is not None
    body = {"visited_on": today().isoformat(), "summary": "Visited", "next_follow_up_by": None}
    assert (await visit(http, station, order_id, body, b_token)).status_code == 201
    assert (await station_events(db, order_id))[-1]["payload"]["worker_id"] == b


async def overdue_gauge(http: httpx.AsyncClient, station: OwnStation) -> float | None:
    text = (await http.get(f"{station.base}/metrics")).text
    found = re.search(
        rf'^swd_follow_ups_overdue{{station="{re.escape(station.id)}"}} (\S+)$', text, re.M
    )
    return None if found is None else float(found.group(1))


async def test_the_overdue_follow_ups_gauge_counts_tasks_past_their_day(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    ((a, a_token),) = station.workers.items()
    ids = [
        await completed_order(stack, http, station, a, with_follow_up(today(), None))
        for _ in range(2)
    ]

    async def gauge_is(n: float) -> bool:
        return await overdue_gauge(http, station) == n

    await eventually(lambda: gauge_is(0), timeout_s=15)
    # Time passes: the first task's day is behind us.
    await db.execute(
        "UPDATE station_worker.follow_ups SET due_on = due_on - 2 WHERE order_id = $1",
        uuid.UUID(ids[0]),
    )
    await eventually(lambda: gauge_is(1), timeout_s=15)
    overdue = await follow_ups(http, station, a_token, overdue="true")
    assert [(t["order_id"], t["overdue"]) for t in overdue] == [(ids[0], True)]
    row = await order_when(http, station, ids[0])
    assert row["follow_up"]["overdue"] is True
    # A visit made late still counts, and clears it.
    body = {"visited_on": today().isoformat(), "summary": "Late visit", "next_follow_up_by": None}
    assert (await visit(http, station, ids[0], body, a_token)).status_code == 201
    await eventually(lambda: gauge_is(0), timeout_s=15)


# --------------------------------------------------------------------- authorization, input


async def test_follow_ups_are_the_stations_own_and_refuse_hostile_input(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    theirs = await new_station(stack, db, [("x", [], 5, True)])
    ((a, a_token),) = station.workers.items()
    order_id = await completed_order(
        stack, http, station, a, with_follow_up(today() + timedelta(days=5), None)
    )
    good = {"visited_on": today().isoformat(), "summary": "Visited", "next_follow_up_by": None}

    for token in (theirs.manager, *theirs.workers.values()):
        assert (await visit(http, theirs, order_id, good, token)).status_code == 404
        resp = await http.post(
            f"{theirs.base}/v1/orders/{order_id}/follow-ups/reassign",
            json={"worker_id": a},
            headers=theirs.auth(token),
        )
        assert resp.status_code == 404
        resp = await http.get(
            f"{station.base}/v1/stations/{station.id}/follow-ups", headers=theirs.auth(token)
        )
        assert resp.status_code == 404
    assert (await visit(http, station, uuid.uuid4(), good)).status_code == 404
    assert (
        await http.post(f"{station.base}/v1/orders/{order_id}/follow-ups", json=good)
    ).status_code == 401
    resp = await http.get(
        f"{station.base}/v1/stations/{station.id}/follow-ups",
        params={"worker_id": "someone-else"},
        headers=station.auth(a_token),
    )
    assert resp.status_code == 403

    tomorrow = (today() + timedelta(days=1)).isoformat()
    yesterday = (today() - timedelta(days=1)).isoformat()
    bad_bodies: list[tuple[Any, list[Any]]] = [
        (good | {"summary": "a\x00b"}, ["body", "summary"]),
        (good | {"summary": "ring \x07 bell"}, ["body", "summary"]),
        (good | {"summary": "x" * 8001}, ["body", "summary"]),
        (good | {"summary": ""}, ["body", "summary"]),
        (good | {"summary": 42}, ["body", "summary"]),
        (good | {"visited_on": 20261202}, ["body", "visited_on"]),
        (good | {"visited_on": "yesterday"}, ["body", "visited_on"]),
        (good | {"visited_on": tomorrow}, ["body", "visited_on"]),
        (good | {"visited_on": yesterday}, ["body", "visited_on"]),  # before the completion
        (good | {"next_follow_up_by": yesterday}, ["body", "next_follow_up_by"]),
        (good | {"next_follow_up_by": "2999-01-01"}, ["body", "next_follow_up_by"]),
        (good | {"next_follow_up_by": True}, ["body", "next_follow_up_by"]),
        (good | {"extra": 1}, ["body", "extra"]),
        ({"summary": "Visited"}, ["body", "visited_on"]),
        ([good], ["body"]),
    ]
    for body, loc in bad_bodies:
        resp = await visit(http, station, order_id, body, a_token)
        assert resp.status_code == 422, (body if len(str(body)) < 200 else loc, resp.text)
        assert resp.json()["errors"][0]["loc"][: len(loc)] == loc, resp.text
    # Nothing was recorded by any of it.
    (task,) = await follow_ups(http, station)
    assert task["visits"] == 0
    assert [e["type"] for e in await station_events(db, order_id)][-1] == "order.completed"


async def test_a_completions_follow_up_is_checked_and_a_redo_supersedes_it(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    ((a, a_token),) = station.workers.items()
    order_id = (await dispatch(stack, http, station))["order_id"]
    await post(http, station, order_id, "accept")
    await post(http, station, order_id, "assign", {"worker_id": a})
    await post(http, station, order_id, "start", token=a_token)
    yesterday = today() - timedelta(days=1)
    for body, loc in [
        (with_follow_up(yesterday), ["body", "follow_up_by"]),
        (with_follow_up(today() + timedelta(days=400)), ["body", "follow_up_by"]),
        (COMPLETION | {"follow_up_by": "next week"}, ["body", "follow_up_by"]),
        (COMPLETION | {"follow_up_plan": PLAN}, ["body", "follow_up_plan"]),
        (with_follow_up(today(), "plan\x00"), ["body", "follow_up_plan"]),
        (with_follow_up(today(), "p" * 4001), ["body", "follow_up_plan"]),
    ]:
        resp = await post(http, station, order_id, "complete", body, token=a_token)
        assert resp.status_code == 422, (loc, resp.text)
        assert resp.json()["errors"][0]["loc"][: len(loc)] == loc, resp.text
    assert (await order_when(http, station, order_id))["status"] == "in_service"
    # follow_up_by implies follow_up_needed.
    body = with_follow_up(today() + timedelta(days=2)) | {"follow_up_needed": False}
    done = await post(http, station, order_id, "complete", body, token=a_token)
    assert done.status_code == 200, done.text
    assert (await station_events(db, order_id))[-1]["payload"]["follow_up_needed"] is True
    assert done.json()["follow_up"]["due_on"] == (today() + timedelta(days=2)).isoformat()

    # The resident was not satisfied: the redo replaces the follow-up of that completion.
    await publish_events(stack, redo_dispatched(station.id, order_id, 2))
    reopened = await order_when(http, station, order_id, "dispatched")
    assert reopened["follow_up"] is None
    assert reopened["follow_up_task"]["end_reason"] == "superseded"
    assert await follow_ups(http, station) == []
    good = {"visited_on": today().isoformat(), "summary": "Visited", "next_follow_up_by": None}
    assert (await visit(http, station, order_id, good, a_token)).status_code == 409


async def test_a_closed_orders_case_stays_while_its_follow_up_is_open_then_all_is_erased(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    # The test services erase after SWD_STATION_PERSONAL_DATA_RETENTION_S=1 (conftest).
    station = await new_station(stack, db, [("a", [], 5, True)])
    ((a, a_token),) = station.workers.items()
    kept_open, plain = [
        await completed_order(stack, http, station, a, with_follow_up(today())) for _ in range(2)
    ]
    summary = "Visited; the daughter now helps on weekdays"
    remember_personal_data(summary, PLAN)
    body = {"visited_on": today().isoformat(), "summary": summary, "next_follow_up_by": None}
    assert (await visit(http, station, plain, body, a_token)).status_code == 201
    for order_id in (kept_open, plain):
        await publish_events(
            stack,
            new_event(
                OrderClosed(station_id=station.id), order_id=uuid.UUID(order_id), actor=SYSTEM
            ),
        )

    async def erased(order_id: str) -> dict[str, Any] | None:
        order = await order_when(http, station, order_id, "closed")
        return order if order["case_erased_at"] is not None else None

    gone = await eventually(lambda: erased(plain), timeout_s=30)
    assert gone["case"] is None
    assert [v["summary"] for v in gone["follow_up_task"]["visits"]] == [None]
    assert gone["follow_up_task"]["plan"] is None
    # The other one's follow-up is still owed: its worker still needs the address.
    still = await order_when(http, station, kept_open, "closed")
    assert (still["case_erased_at"], still["follow_up_task"]["plan"]) == (None, PLAN)
    assert still["case"] is not None
    body = body | {"summary": "Last visit"}
    assert (await visit(http, station, kept_open, body, a_token)).status_code == 201
    await eventually(lambda: erased(kept_open), timeout_s=30)


async def test_of_two_last_visits_recorded_at_once_exactly_one_ends_the_task(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    ((a, a_token),) = station.workers.items()
    order_id = await completed_order(stack, http, station, a, with_follow_up(today(), None))
    body = {"visited_on": today().isoformat(), "summary": "Visited", "next_follow_up_by": None}
    results = await asyncio.gather(
        *(visit(http, station, order_id, body, t) for t in (a_token, station.manager) * 3)
    )
    assert sorted(r.status_code for r in results) == [201] + [409] * 5
    events = [e for e in await station_events(db, order_id) if e["type"] == "order.followed_up"]
    assert len(events) == 1
    # Whoever recorded it, the visit is the task's worker's.
    assert events[0]["payload"]["worker_id"] == a
