"""The station dashboard API on the real stack: transitions, races, roles, stations, stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.station_worker.admin import revoke_staff
from shared.db import transaction_in
from shared.events import SYSTEM, OrderCancelled, OrderClosed, OrderCompleted
from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import eventually, get_json_when, post_request
from tests.integration.dispatch_center.center_support import center_order, send_station_events
from tests.integration.station_worker.station import (
    OwnStation,
    dispatch,
    dispatched,
    new_station,
    order_when,
    publish,
    routed_station,
)

pytestmark = pytest.mark.integration

ALL_CATEGORIES = ["elder_care", "life_assistance", "psychological_counselling"]
COMPLETION = {
    "outcome": "served",
    "service_minutes": 45,
    "summary": "Visited; arranged meal delivery.",
    "follow_up_needed": False,
}
ACTIONS: dict[str, dict[str, Any] | None] = {
    "accept": None,
    "reject": {"reason_code": "no_capacity", "note": None},
    "assign": {"worker_id": "placeholder"},
    "reassign": {"worker_id": "placeholder"},
    "start": None,
    "complete": COMPLETION,
}


async def post(
    http: httpx.AsyncClient,
    station: OwnStation,
    order_id: Any,
    action: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        f"{station.base}/v1/orders/{order_id}/{action}",
        json=body,
        headers={**station.auth(token), **(headers or {})},
    )


async def station_events(db: asyncpg.Pool, order_id: Any) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT body FROM station_worker.outbox WHERE key = $1 ORDER BY id", str(order_id)
    )
    return [json.loads(r["body"]) for r in rows]


async def test_an_order_goes_through_every_station_step_and_each_emits_its_event(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    # The real path in: an integration's request, routed by the center to st-liuhe.
    body = request_body(41, category="elder_care")
    body["location"] |= {"township_code": "TS-LH", "community_code": "LH-HAIYUN"}
    created = await post_request(http, stack, body)
    order_id = created.json()["order_id"]
    station = OwnStation("st-liuhe", stack.urls["station_worker"], stack.manager_token("st-liuhe"))
    worker_id = "st-liuhe-sw1"
    worker_token = stack.credentials["stations"]["st-liuhe"]["social_worker_tokens"][worker_id]
    order = await order_when(http, station, order_id)
    assert order["status"] == "dispatched"
    assert order["due_at"] == order["deadlines"]["accept_by"]

    accepted = await post(http, station, order_id, "accept", headers={"If-Match": '"1"'})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert accepted.headers["ETag"] == '"2"'
    assert accepted.json()["due_at"] == order["deadlines"]["assign_by"]

    assigned = await post(http, station, order_id, "assign", {"worker_id": worker_id})
    assert (assigned.status_code, assigned.json()["worker_id"]) == (200, worker_id)
    started = await post(http, station, order_id, "start", token=worker_token)
    assert started.json()["status"] == "in_service", started.text
    done = await post(http, station, order_id, "complete", COMPLETION, token=worker_token)
    assert done.status_code == 200, done.text
    final = done.json()
    assert final["status"] == "completed"
    assert final["due_at"] is None
    assert [h["status"] for h in final["history"]] == [
        "dispatched",
        "accepted",
        "assigned",
        "in_service",
        "completed",
    ]
    assert [h["actor"] for h in final["history"][1:]] == [
        "station_staff:st-liuhe-manager",
        "station_staff:st-liuhe-manager",
        f"station_staff:{worker_id}",
        f"station_staff:{worker_id}",
    ]

    events = await station_events(db, order_id)
    assert [e["type"] for e in events] == [
        "order.received",
        "order.accepted",
        "order.assigned",
        "order.started",
        "order.completed",
    ]
    assert events[2]["payload"]["worker_id"] == worker_id
    assert events[4]["payload"]["service_minutes"] == 45
    assert events[4]["actor"] == {"kind": "station_staff", "id": worker_id}
    # One correlation id follows the order from intake to completion.
    assert {e["correlation_id"] for e in events} == {events[0]["correlation_id"]}

    trail = await get_json_when(
        http,
        f"{stack.urls['audit']}/v1/orders/{order_id}/trail",
        {"Authorization": f"Bearer {stack.supervisor_token}"},
        lambda t: len(t) >= 8,
    )
    assert [e["event_type"] for e in trail][-5:] == [
        "order.accepted",
        "order.assigned",
        "order.started",
        "order.completed",
        "order.awaiting_feedback",  # the center waits for the return visit
    ]
    assert COMPLETION["summary"] not in json.dumps(trail)


async def test_every_action_the_status_does_not_allow_is_409_with_the_status(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", ALL_CATEGORIES, 5, True), ("b", [], 5, True)])
    a, b = station.workers
    order = await dispatch(stack, http, station)
    order_id = order["order_id"]
    allowed = {
        "dispatched": {"accept", "reject"},
        "accepted": {"assign"},
        "assigned": {"start", "reassign"},
        "in_service": {"complete", "reassign"},
        "completed": set(),
    }
    steps = [("accept", None), ("assign", {"worker_id": a}), ("start", None)]
    steps += [("complete", COMPLETION)]
    for status, allowed_actions in allowed.items():
        for action, body in ACTIONS.items():
            if action in allowed_actions:
                continue
            if body and "worker_id" in body:
                body = {"worker_id": b}
            resp = await post(http, station, order_id, action, body)
            assert resp.status_code == 409, (status, action, resp.text)
            assert resp.json()["current"]["status"] == status
        if steps:
            action, body = steps.pop(0)
            assert (await post(http, station, order_id, action, body)).status_code == 200

    # Rejection and cancellation end the order too: nothing is allowed afterwards.
    rejected = await dispatch(stack, http, station)
    resp = await post(http, station, rejected["order_id"], "reject", {"reason_code": "duplicate"})
    assert resp.json()["status"] == "rejected"
    assert (await post(http, station, rejected["order_id"], "accept")).json()["current"][
        "status"
    ] == "rejected"


async def test_a_rejection_carries_its_reason_and_keeps_the_note_out_of_the_audit(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db)
    order = await dispatch(stack, http, station)
    bad = await post(http, station, order["order_id"], "reject", {"reason_code": "bored"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "reason_code"]
    note = "The resident moved to Shaxi last week"
    resp = await post(
        http,
        station,
        order["order_id"],
        "reject",
        {"reason_code": "outside_coverage", "note": note},
    )
    assert resp.status_code == 200
    rejected = (await station_events(db, order["order_id"]))[-1]
    assert rejected["type"] == "order.rejected"
    assert rejected["payload"] | {"note": None} == {
        "station_id": station.id,
        "dispatch_no": 1,
        "reason_code": "outside_coverage",
        "note": None,
    }
    assert rejected["payload"]["note"] == note
    trail = await get_json_when(
        http,
        f"{stack.urls['audit']}/v1/orders/{order['order_id']}/trail",
        {"Authorization": f"Bearer {stack.supervisor_token}"},
        lambda t: any(e["event_type"] == "order.rejected" for e in t),
    )
    assert note not in json.dumps(trail)


async def test_of_staff_acting_at_once_on_one_order_exactly_one_wins(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True), ("b", [], 5, True)])
    order = await dispatch(stack, http, station)
    tokens = [station.manager, *station.workers.values()]
    results = await asyncio.gather(
        *(post(http, station, order["order_id"], "accept", token=t) for t in tokens * 2)
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [409] * (len(tokens) * 2 - 1)
    events = await station_events(db, order["order_id"])
    assert [e["type"] for e in events].count("order.accepted") == 1

    # With If-Match, a stale version loses even when the status would allow the action.
    a, b = station.workers
    await post(http, station, order["order_id"], "assign", {"worker_id": a})
    current = (await order_when(http, station, order["order_id"]))["version"]
    stale = {"If-Match": f'"{current - 1}"'}
    reassign_a, reassign_b = await asyncio.gather(
        post(http, station, order["order_id"], "reassign", {"worker_id": b}, headers=stale),
        post(
            http,
            station,
            order["order_id"],
            "reassign",
            {"worker_id": b},
            headers={"If-Match": f'"{current}"'},
        ),
    )
    assert (reassign_a.status_code, reassign_b.status_code) == (409, 200)
    assert reassign_a.json()["current"]["version"] in (current, current + 1)
    bad = await post(http, station, order["order_id"], "start", headers={"If-Match": "yes"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["header", "if-match"]


async def test_roles_and_tokens(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True), ("b", [], 5, True)])
    (a, a_token), (_, b_token) = station.workers.items()
    order = await dispatch(stack, http, station)
    order_id = order["order_id"]
    url = f"{station.base}/v1/orders/{order_id}"
    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, headers=station.auth("swds_not-a-token"))).status_code == 401
    assert (await http.get(url, headers=station.auth(a_token))).status_code == 200

    # The duty social worker may accept; only a manager assigns and manages workers.
    assert (await post(http, station, order_id, "accept", token=a_token)).status_code == 200
    forbidden = await post(http, station, order_id, "assign", {"worker_id": a}, token=a_token)
    assert forbidden.status_code == 403
    workers_url = f"{station.base}/v1/stations/{station.id}/workers"
    profile = {"worker_id": a, "skills": [], "capacity": 1}
    resp = await http.post(workers_url, json=profile, headers=station.auth(a_token))
    assert resp.status_code == 403
    assert (await post(http, station, order_id, "assign", {"worker_id": a})).status_code == 200
    # Only the assigned worker (or a manager) starts and completes it.
    assert (await post(http, station, order_id, "start", token=b_token)).status_code == 403
    assert (await post(http, station, order_id, "start", token=a_token)).status_code == 200
    resp = await post(http, station, order_id, "complete", COMPLETION, token=b_token)
    assert resp.status_code == 403
    mine = await http.get(
        f"{station.base}/v1/stations/{station.id}/orders",
        params={"worker_id": a},
        headers=station.auth(a_token),
    )
    assert [o["order_id"] for o in mine.json()["orders"]] == [order_id]


async def test_another_station_gets_404_for_orders_workers_and_stream(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    ours = await new_station(stack, db, [("a", [], 5, True)])
    theirs = await new_station(stack, db, [("x", [], 5, True)])
    order = await dispatch(stack, http, ours)
    order_id = order["order_id"]
    ours_worker = next(iter(ours.workers))
    for token in (theirs.manager, *theirs.workers.values()):
        auth = theirs.auth(token)
        assert (
            await http.get(f"{ours.base}/v1/orders/{order_id}", headers=auth)
        ).status_code == 404
        suggested = f"{ours.base}/v1/orders/{order_id}/suggested-workers"
        assert (await http.get(suggested, headers=auth)).status_code == 404
        for action, body in ACTIONS.items():
            if body and "worker_id" in body:
                body = {"worker_id": ours_worker}
            resp = await post(http, theirs, order_id, action, body, token=token)
            assert resp.status_code == 404, (action, resp.text)
        for path in ("orders", "workers", "stream"):
            resp = await http.get(f"{ours.base}/v1/stations/{ours.id}/{path}", headers=auth)
            assert resp.status_code == 404, path
        resp = await http.post(
            f"{ours.base}/v1/stations/{ours.id}/workers",
            json={"worker_id": ours_worker, "skills": [], "capacity": 9},
            headers=auth,
        )
        assert resp.status_code == 404
    # Nor can a manager take another station's social worker onto their own orders or roster.
    theirs_worker = next(iter(theirs.workers))
    await post(http, ours, order_id, "accept")
    resp = await post(http, ours, order_id, "assign", {"worker_id": theirs_worker})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["body", "worker_id"]
    resp = await http.post(
        f"{ours.base}/v1/stations/{ours.id}/workers",
        json={"worker_id": theirs_worker, "skills": [], "capacity": 1},
        headers=ours.auth(),
    )
    assert resp.status_code == 422
    # The order is untouched by all of it.
    after = await order_when(http, ours, order_id)
    assert (after["status"], after["worker_id"]) == ("accepted", None)


async def test_suggestions_rank_on_duty_workers_by_skill_then_load(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(
        stack,
        db,
        [
            ("busy-match", ["elder_care"], 3, True),
            ("free-match", ["elder_care", "life_assistance"], 3, True),
            ("no-match", ["child_protection"], 3, True),
            ("off-duty", ["elder_care"], 3, False),
            ("full", ["elder_care"], 1, True),
        ],
    )
    ids = {wid.removeprefix(f"{station.id}-"): wid for wid in station.workers}
    for worker in ("busy-match", "full"):
        load = await dispatch(stack, http, station, category="child_protection")
        await post(http, station, load["order_id"], "accept")
        resp = await post(http, station, load["order_id"], "assign", {"worker_id": ids[worker]})
        assert resp.status_code == 200, resp.text

    order = await dispatch(stack, http, station, category="elder_care")
    resp = await http.get(
        f"{station.base}/v1/orders/{order['order_id']}/suggested-workers", headers=station.auth()
    )
    ranked = [(w["worker_id"], w["skill_match"], w["active_orders"]) for w in resp.json()]
    assert ranked == [
        (ids["free-match"], True, 0),
        (ids["busy-match"], True, 1),
        (ids["no-match"], False, 0),
    ]
    await post(http, station, order["order_id"], "accept")
    for worker, why in (("off-duty", "not on duty"), ("full", "already carries 1 of 1")):
        resp = await post(http, station, order["order_id"], "assign", {"worker_id": ids[worker]})
        assert resp.status_code == 422
        assert why in resp.json()["errors"][0]["msg"]

    # The roster shows the loads; a manager updates a profile (200) or adds one (201).
    roster = await http.get(
        f"{station.base}/v1/stations/{station.id}/workers", headers=station.auth()
    )
    loads = {w["worker_id"]: w["active_orders"] for w in roster.json()}
    assert loads == {ids["busy-match"]: 1, ids["full"]: 1} | {
        ids[w]: 0 for w in ("free-match", "no-match", "off-duty")
    }
    resp = await http.post(
        f"{station.base}/v1/stations/{station.id}/workers",
        json={
            "worker_id": ids["off-duty"],
            "skills": ["elder_care"],
            "capacity": 3,
            "on_duty": True,
        },
        headers=station.auth(),
    )
    assert resp.status_code == 200
    assert resp.json()["on_duty"] is True
    bad = await http.post(
        f"{station.base}/v1/stations/{station.id}/workers",
        json={"worker_id": ids["full"], "skills": ["cooking"], "capacity": 1},
        headers=station.auth(),
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"][:2] == ["body", "skills"]


async def test_the_queue_is_sorted_by_deadline_filtered_and_paged(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 10, True)])
    worker = next(iter(station.workers))
    made = [
        await dispatch(stack, http, station, urgency=urgency, accept_in=timedelta(minutes=minutes))
        for urgency, minutes in [
            ("routine", 300),
            ("emergency", -5),
            ("urgent", 60),
            ("routine", -30),
            ("urgent", 120),
        ]
    ]
    url = f"{station.base}/v1/stations/{station.id}/orders"

    async def listing(**params: Any) -> list[str]:
        resp = await http.get(url, params=params, headers=station.auth())
        assert resp.status_code == 200, resp.text
        return [o["order_id"] for o in resp.json()["orders"]]

    by_deadline = [made[i]["order_id"] for i in (3, 1, 2, 4, 0)]
    assert await listing() == by_deadline
    assert await listing(overdue="true") == by_deadline[:2]
    assert await listing(overdue="false") == by_deadline[2:]
    assert await listing(urgency=["urgent", "emergency"]) == [by_deadline[i] for i in (1, 2, 3)]
    first = (await http.get(url, headers=station.auth())).json()["orders"][0]
    assert first["overdue"] is True
    assert "case" not in first  # personal data is on the order, not in the listing

    paged: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await http.get(url, params=params, headers=station.auth())).json()
        paged += [o["order_id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == by_deadline

    # Accepting moves the order to its next deadline; finished orders leave the open queue.
    await post(http, station, made[0]["order_id"], "accept")
    await post(http, station, made[0]["order_id"], "assign", {"worker_id": worker})
    await post(http, station, made[3]["order_id"], "reject", {"reason_code": "duplicate"})
    assert await listing(worker_id=worker) == [made[0]["order_id"]]
    assert await listing(status="rejected") == [made[3]["order_id"]]
    assert made[3]["order_id"] not in await listing()
    everything = await listing(status=["assigned", "rejected", "dispatched"], limit=1)
    assert len(everything) == 1

    for params, loc in (
        ({"cursor": "garbage"}, ["query", "cursor"]),
        ({"status": "lost"}, ["query", "status", 0]),
        ({"limit": 0}, ["query", "limit"]),
    ):
        resp = await http.get(url, params=params, headers=station.auth())
        assert resp.status_code == 422
        assert resp.json()["errors"][0]["loc"] == loc


async def test_a_cancelled_order_leaves_the_queue_and_later_actions_get_409(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db)
    order = await dispatch(stack, http, station)
    await post(http, station, order["order_id"], "accept")
    order_id = uuid.UUID(order["order_id"])
    await publish(stack, (order_id, OrderCancelled(station_id=station.id, reason="duplicate")))
    cancelled = await order_when(http, station, order_id, status="cancelled")
    assert cancelled["history"][-1]["actor"] == SYSTEM.text
    resp = await post(http, station, order_id, "assign", {"worker_id": "anyone"})
    assert (resp.status_code, resp.json()["current"]["status"]) == (409, "cancelled")
    listing = await http.get(
        f"{station.base}/v1/stations/{station.id}/orders", headers=station.auth()
    )
    assert listing.json()["orders"] == []


async def test_the_stream_tells_a_station_of_its_own_queue_changes_only(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    ours = await new_station(stack, db)
    theirs = await new_station(stack, db)
    received: list[tuple[str, dict[str, Any]]] = []

    async def read_stream(ready: asyncio.Event) -> None:
        url = f"{ours.base}/v1/stations/{ours.id}/stream"
        async with http.stream("GET", url, headers=ours.auth(), timeout=None) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            event = ""
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    received.append((event, json.loads(line.removeprefix("data:"))))
                    if event == "ready":
                        ready.set()

    ready = asyncio.Event()
    reader = asyncio.create_task(read_stream(ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await dispatch(stack, http, theirs)
        order = await dispatch(stack, http, ours)
        await post(http, ours, order["order_id"], "accept")

        async def our_changes() -> list[tuple[str, str]]:
            return [(d["order_id"], d["status"]) for e, d in received if e == "order"]

        await eventually(lambda: _at_least(our_changes, 2), timeout_s=10)
        # Redispatched to the other station: ours hears that it left, and nothing more.
        moved = dispatched(theirs.id, order_id=uuid.UUID(order["order_id"]), dispatch_no=2)
        await publish(stack, (moved.order_id, moved.payload))
        await order_when(http, theirs, order["order_id"])
        await eventually(lambda: _at_least(our_changes, 3), timeout_s=10)
    finally:
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
    assert await our_changes() == [
        (order["order_id"], "dispatched"),
        (order["order_id"], "accepted"),
        (order["order_id"], "withdrawn"),
    ]
    assert received[0] == ("ready", {"station_id": ours.id})
    gone = await http.get(f"{ours.base}/v1/orders/{order['order_id']}", headers=ours.auth())
    assert gone.status_code == 404


async def _at_least(probe: Any, n: int) -> Any:
    found = await probe()
    return found if found and len(found) >= n else None


async def test_two_orders_assigned_at_once_to_a_worker_with_room_for_one(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 1, True)])
    worker = next(iter(station.workers))
    orders = [await dispatch(stack, http, station) for _ in range(2)]
    for order in orders:
        await post(http, station, order["order_id"], "accept")
    results = await asyncio.gather(
        *(post(http, station, o["order_id"], "assign", {"worker_id": worker}) for o in orders)
    )
    assert sorted(r.status_code for r in results) == [200, 422]


async def test_case_details_go_to_managers_and_the_assigned_worker_only(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True), ("b", [], 5, True)])
    (a, a_token), (b, b_token) = station.workers.items()
    order_id = (await dispatch(stack, http, station))["order_id"]
    url = f"{station.base}/v1/orders/{order_id}"

    async def case_seen_by(token: str | None) -> dict[str, Any] | None:
        resp = await http.get(url, headers=station.auth(token))
        assert resp.status_code == 200, resp.text
        order = resp.json()
        assert order["case_withheld"] is (order["case"] is None)
        case: dict[str, Any] | None = order["case"]
        return case

    manager_view = await case_seen_by(None)
    assert manager_view is not None
    assert manager_view["beneficiary_name"]
    assert await case_seen_by(a_token) is None  # not assigned to anyone yet
    # Acting on an order does not hand its case details to a worker who may not see them.
    accepted = await post(http, station, order_id, "accept", token=b_token)
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["case"], accepted.json()["case_withheld"]) == (None, True)

    assert (await post(http, station, order_id, "assign", {"worker_id": a})).status_code == 200
    assert await case_seen_by(a_token) == manager_view
    assert await case_seen_by(b_token) is None
    started = await post(http, station, order_id, "start", token=a_token)
    assert started.json()["case"] == manager_view
    reassigned = await post(http, station, order_id, "reassign", {"worker_id": b})
    assert reassigned.status_code == 200, reassigned.text
    assert await case_seen_by(b_token) == manager_view
    assert await case_seen_by(a_token) is None
    assert await case_seen_by(None) == manager_view


async def test_case_details_are_erased_after_the_order_is_cancelled_or_closed(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    # The test services erase after SWD_STATION_PERSONAL_DATA_RETENTION_S=1 (conftest).
    station = await new_station(stack, db, [("a", [], 5, True)])
    ((a, a_token),) = station.workers.items()
    cancelled_id, closed_id, open_id, rejected_id = [
        uuid.UUID((await dispatch(stack, http, station))["order_id"]) for _ in range(4)
    ]
    await publish(stack, (cancelled_id, OrderCancelled(station_id=station.id, reason="duplicate")))
    # Rejected, held at the center for an operator (no other station), then cancelled there.
    rejection = {"reason_code": "no_capacity", "note": None}
    assert (await post(http, station, rejected_id, "reject", rejection)).status_code == 200
    await publish(stack, (rejected_id, OrderCancelled(station_id=station.id, reason="held")))
    await post(http, station, closed_id, "accept")
    await post(http, station, closed_id, "assign", {"worker_id": a})
    await post(http, station, closed_id, "start", token=a_token)
    done = await post(http, station, closed_id, "complete", COMPLETION, token=a_token)
    assert done.status_code == 200, done.text
    await publish(stack, (closed_id, OrderClosed(station_id=station.id)))

    async def erased(order_id: uuid.UUID) -> dict[str, Any] | None:
        resp = await http.get(f"{station.base}/v1/orders/{order_id}", headers=station.auth())
        order: dict[str, Any] = resp.json()
        return order if order["case_erased_at"] is not None else None

    for order_id, status in (
        (cancelled_id, "cancelled"),
        (closed_id, "closed"),
        (rejected_id, "cancelled"),
    ):
        order = await eventually(lambda: erased(order_id), timeout_s=30)  # noqa: B023
        assert (order["status"], order["case"]) == (status, None)
    stored = await db.fetch(
        "SELECT order_id, case_details FROM station_worker.station_orders"
        " WHERE order_id = ANY($1::uuid[])",
        [cancelled_id, closed_id, open_id, rejected_id],
    )
    assert {r["order_id"]: r["case_details"] is None for r in stored} == {
        cancelled_id: True,
        closed_id: True,
        rejected_id: True,
        open_id: False,  # an open order keeps them
    }


async def test_a_redispatch_never_overwrites_an_order_the_station_completed(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    other = await new_station(stack, db)
    ((a, a_token),) = station.workers.items()
    order_id = (await dispatch(stack, http, station))["order_id"]
    await post(http, station, order_id, "accept")
    await post(http, station, order_id, "assign", {"worker_id": a})
    await post(http, station, order_id, "start", token=a_token)
    done = await post(http, station, order_id, "complete", COMPLETION, token=a_token)
    assert done.status_code == 200, done.text

    # A redispatch that crossed the completion (the center had not heard of it yet), then a
    # newer order to the other station to know the consumer got past the redispatch.
    moved = dispatched(other.id, order_id=uuid.UUID(order_id), dispatch_no=2)
    await publish(stack, (moved.order_id, moved.payload))
    await dispatch(stack, http, other)
    kept = await http.get(f"{station.base}/v1/orders/{order_id}", headers=station.auth())
    assert kept.status_code == 200
    assert (kept.json()["status"], kept.json()["dispatch_no"]) == ("completed", 1)
    gone = await http.get(f"{other.base}/v1/orders/{order_id}", headers=other.auth())
    assert gone.status_code == 404
    # Not acknowledged either: the station never queued dispatch 2.
    received = [e for e in await station_events(db, order_id) if e["type"] == "order.received"]
    assert [e["payload"]["dispatch_no"] for e in received] == [1]


async def test_an_open_stream_ends_soon_after_its_token_is_revoked(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    ((a, a_token),) = station.workers.items()
    url = f"{station.base}/v1/stations/{station.id}/stream"
    events: list[str] = []

    async def read_stream() -> None:
        async with http.stream("GET", url, headers=station.auth(a_token), timeout=None) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    events.append(line.removeprefix("event:").strip())

    async def subscribed() -> bool:
        return "ready" in events

    reader = asyncio.create_task(read_stream())
    try:
        await eventually(subscribed, timeout_s=10)
        async with transaction_in("station_worker", stack.database_url) as conn:
            assert await revoke_staff(conn, a)
        # The stream checks its token every SWD_STATION_STREAM_TOKEN_CHECK_S (2 s by default).
        await asyncio.wait_for(reader, 15)
    finally:
        reader.cancel()
    assert events == ["ready"]
    again = await http.get(url, headers=station.auth(a_token))
    assert again.status_code == 401


async def test_a_reassignment_reaches_the_center_and_a_completed_order_cannot_be_redispatched(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station, location = await routed_station(stack, db, [("a", [], 5, True), ("b", [], 5, True)])
    (a, a_token), (b, b_token) = station.workers.items()
    body = request_body(91, category="elder_care")
    body["location"] |= location
    created = await post_request(http, stack, body)
    assert created.status_code == 201, created.text
    order_id = created.json()["order_id"]
    await order_when(http, station, order_id)

    async def center_status(wanted: str) -> bool:
        row = await db.fetchrow(
            "SELECT status FROM dispatch_center.orders WHERE id = $1", uuid.UUID(order_id)
        )
        return row is not None and row["status"] == wanted

    assert (await post(http, station, order_id, "accept")).status_code == 200
    assert (await post(http, station, order_id, "assign", {"worker_id": a})).status_code == 200
    assert (await post(http, station, order_id, "start", token=a_token)).status_code == 200
    await eventually(lambda: center_status("in_service"), timeout_s=30)
    reassigned = await post(http, station, order_id, "reassign", {"worker_id": b})
    assert reassigned.status_code == 200, reassigned.text
    await eventually(lambda: center_status("assigned"), timeout_s=30)

    assert (await post(http, station, order_id, "start", token=b_token)).status_code == 200
    done = await post(http, station, order_id, "complete", COMPLETION, token=b_token)
    assert done.status_code == 200, done.text
    await eventually(lambda: center_status("awaiting_feedback"), timeout_s=30)
    redispatch = await http.post(
        f"{stack.urls['dispatch_center']}/v1/operator/orders/{order_id}/redispatch",
        json={"station_id": "st-liuhe", "reason": "try another station"},
        headers={"Authorization": f"Bearer {stack.operator_token}"},
    )
    assert redispatch.status_code == 409, redispatch.text
    kept = await order_when(http, station, order_id)
    assert (kept["status"], kept["dispatch_no"], kept["worker_id"]) == ("completed", 1, b)


async def test_a_completion_that_crossed_an_operators_redispatch_is_kept_by_the_center(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station, location = await routed_station(stack, db, [("a", [], 5, True)])
    ((a, a_token),) = station.workers.items()
    body = request_body(92, category="elder_care")
    body["location"] |= location
    created = await post_request(http, stack, body)
    assert created.status_code == 201, created.text
    order_id = created.json()["order_id"]
    await order_when(http, station, order_id)
    await post(http, station, order_id, "accept")
    await post(http, station, order_id, "assign", {"worker_id": a})
    assert (await post(http, station, order_id, "start", token=a_token)).status_code == 200

    async def center_row(status: str) -> asyncpg.Record | None:
        row = await center_order(db, order_id)
        return row if row["status"] == status else None

    await eventually(lambda: center_row("in_service"), timeout_s=30)
    redispatch = await http.post(
        f"{stack.urls['dispatch_center']}/v1/operator/orders/{order_id}/redispatch",
        json={"station_id": "st-liuhe", "reason": "try another station"},
        headers={"Authorization": f"Bearer {stack.operator_token}"},
    )
    assert redispatch.status_code == 200, redispatch.text
    # The worker had completed the visit before the redispatch reached the station: its
    # order.completed arrives after the center moved the order.
    completed = OrderCompleted(
        station_id=station.id,
        worker_id=a,
        outcome="served",
        service_minutes=30,
        follow_up_needed=False,
        summary="Visited.",
    )
    await send_station_events(stack, order_id, completed)
    row = await eventually(lambda: center_row("awaiting_feedback"), timeout_s=30)
    assert (row["station_id"], row["next_resend_at"], row["accept_due_at"]) == (
        station.id,
        None,
        None,
    )
