"""The dispatch center against the real stack: intake, routing, rejection and redispatch,
the operator API, signed status callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet

from services.dispatch_center import callbacks
from shared.db import schema_settings
from shared.events import OrderAccepted, OrderAssigned, OrderCompleted, OrderRejected, OrderStarted
from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import eventually, post_request, remember_personal_data
from tests.integration.dispatch_center.center_support import (
    Receiver,
    center_events,
    center_order,
    new_integration,
    operator_headers,
    send_station_events,
    serving,
    set_up_township,
    submit,
    t3_request,
)

pytestmark = pytest.mark.integration

# Personal data in the stations' events: never in a callback, a timeline or a log.
NOTE = "the grandson is at home after school"
SUMMARY = "helped Grandma Sun with her pension forms"
remember_personal_data(NOTE, SUMMARY)


@pytest.fixture(scope="module")
async def township(stack: RunningStack, http: httpx.AsyncClient) -> None:
    await set_up_township(stack, http)


# --- intake ---------------------------------------------------------------------------------


async def test_concurrent_duplicates_make_one_order(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    body = request_body()
    url = f"{stack.urls['dispatch_center']}/v1/requests"
    responses = await asyncio.gather(
        *(http.post(url, json=body, headers={"X-API-Key": stack.api_key}) for _ in range(8))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 7 + [201], [r.text for r in responses]
    assert len({r.json()["order_id"] for r in responses}) == 1
    orders = await db.fetchval(
        "SELECT count(*) FROM dispatch_center.orders WHERE external_id = $1", body["external_id"]
    )
    assert orders == 1
    other_urgency = "urgent" if body["urgency"] == "emergency" else "emergency"
    conflicting = await http.post(
        url, json=body | {"urgency": other_urgency}, headers={"X-API-Key": stack.api_key}
    )
    assert conflicting.status_code == 409
    # The repeats and the conflict wrote nothing: one timeline, one set of events.
    rows = await intake_rows(db, responses[0].json()["order_id"])
    assert [t["status"] for t in rows.timeline] == ["submitted", "dispatched"]
    assert [e["type"] for e in rows.events] == ["order.submitted", "order.dispatched"]
    announced = await db.fetchval(
        """SELECT count(*) FROM dispatch_center.outbox
           WHERE event_type = 'order.submitted'
             AND body::jsonb -> 'payload' ->> 'external_id' = $1""",
        body["external_id"],
    )
    assert announced == 1


async def test_a_community_of_another_township_is_a_422_naming_the_field(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    body = request_body()
    body["location"]["township_code"] = "TS-ELSEWHERE"
    resp = await post_request(http, stack, body)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["body", "location", "township_code"]
    assert resp.json()["errors"][0]["type"] == "township_mismatch"
    written = await db.fetchval(
        "SELECT count(*) FROM dispatch_center.orders WHERE external_id = $1", body["external_id"]
    )
    assert written == 0


async def test_an_intake_wakes_the_outbox_relay(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    # The outbox rows are written inside a CTE; the per-statement NOTIFY trigger must fire.
    conn = await asyncpg.connect(stack.database_url)
    woken = asyncio.Event()
    try:
        await conn.add_listener("dispatch_center.outbox", lambda *_: woken.set())
        await submit(http, stack.urls["dispatch_center"], stack.api_key, request_body())
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await conn.close()


@dataclass
class IntakeRows:
    order: asyncpg.Record
    timeline: list[asyncpg.Record]
    callbacks: list[dict[str, Any]]
    events: list[dict[str, Any]]


async def intake_rows(db: asyncpg.Pool, order_id: str) -> IntakeRows:
    """What the center wrote for an order: the row, timeline, callback bodies, events."""
    timeline = await db.fetch(
        "SELECT id, status, station_id, at, reason, actor FROM dispatch_center.order_timeline"
        " WHERE order_id = $1 ORDER BY id",
        uuid.UUID(order_id),
    )
    callbacks = await db.fetch(
        "SELECT body FROM dispatch_center.callbacks WHERE order_id = $1 ORDER BY id",
        uuid.UUID(order_id),
    )
    events = await db.fetch(
        "SELECT body FROM dispatch_center.outbox WHERE key = $1 ORDER BY id", order_id
    )
    return IntakeRows(
        order=await center_order(db, order_id),
        timeline=list(timeline),
        callbacks=[json.loads(c["body"]) for c in callbacks],
        events=[json.loads(e["body"]) for e in events],
    )


def assert_callbacks_follow_the_timeline(rows: IntakeRows) -> None:
    """One callback per timeline entry, in its order, its sequence the entry's id."""
    assert [
        (c["sequence"], c["status"], c["station_id"], c["reason"], datetime.fromisoformat(c["at"]))
        for c in rows.callbacks
    ] == [(t["id"], t["status"], t["station_id"], t["reason"], t["at"]) for t in rows.timeline]
    assert all(
        (c["order_id"], c["external_id"]) == (str(rows.order["id"]), rows.order["external_id"])
        for c in rows.callbacks
    )


@pytest.mark.usefixtures("township")
async def test_an_intake_is_stored_dispatched_with_its_timeline_callbacks_and_events(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    integration = await new_integration(stack, http)
    receiver = Receiver(failures=0)
    async with serving(receiver) as url:
        created = await submit(
            http,
            stack.urls["dispatch_center"],
            integration["api_key"],
            t3_request("T3-ONE", callback_url=url),
        )
        await eventually(lambda: asyncio.sleep(0, len(receiver.calls) >= 2))
    assert created["status"] == "dispatched"
    rows = await intake_rows(db, created["order_id"])
    order = rows.order
    assert (order["status"], order["station_id"], order["dispatch_no"]) == (
        "dispatched",
        "st-t3-a",
        1,
    )
    assert order["tried_stations"] == ["st-t3-a"]
    assert order["accept_due_at"] == order["accept_by"]
    assert (order["awaiting_operator"], order["hold_reason"]) == (False, None)
    assert [(t["status"], t["station_id"], t["actor"], t["at"]) for t in rows.timeline] == [
        ("submitted", None, f"integration:{integration['id']}", order["submitted_at"]),
        ("dispatched", "st-t3-a", "system:dispatch_center", order["submitted_at"]),
    ]
    assert [e["type"] for e in rows.events] == ["order.submitted", "order.dispatched"]
    submitted, dispatched = rows.events
    assert submitted["actor"] == {"kind": "integration", "id": integration["id"]}
    assert dispatched["payload"]["station_id"] == "st-t3-a"
    assert dispatched["event_id"] == str(order["dispatch_event_id"])
    assert_callbacks_follow_the_timeline(rows)
    delivered = [json.loads(body) for _, _, body in receiver.calls]
    assert delivered == rows.callbacks


@pytest.mark.usefixtures("township")
async def test_an_unroutable_intake_is_held_with_its_timeline_callbacks_and_events(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    receiver = Receiver(failures=0)
    async with serving(receiver) as url:
        created = await submit(
            http,
            stack.urls["dispatch_center"],
            stack.api_key,
            t3_request("T3-NONE", callback_url=url),
        )
        await eventually(lambda: asyncio.sleep(0, len(receiver.calls) >= 2))
    assert created["status"] == "unroutable"
    rows = await intake_rows(db, created["order_id"])
    order = rows.order
    assert (order["status"], order["station_id"], order["dispatch_no"]) == ("unroutable", None, 0)
    assert order["awaiting_operator"]
    assert order["hold_reason"] == "no station covers this community"
    assert (order["next_resend_at"], order["accept_due_at"]) == (None, None)
    assert [(t["status"], t["reason"]) for t in rows.timeline] == [
        ("submitted", None),
        ("unroutable", "no station covers this community"),
    ]
    assert [e["type"] for e in rows.events] == ["order.submitted", "order.unroutable"]
    assert rows.events[1]["payload"] == {
        "location": {"township_code": "TS-T3", "community_code": "T3-NONE"},
        "reason": "no station covers this community",
    }
    assert_callbacks_follow_the_timeline(rows)
    assert [json.loads(body) for _, _, body in receiver.calls] == rows.callbacks


async def test_bad_fields_are_422s_naming_each_field(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    body = request_body(
        category="astrology",
        description="   ",
        reported_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        priority="high",
    )
    body["beneficiary"]["group"] = "aliens"
    resp = await post_request(http, stack, body)
    assert resp.status_code == 422
    locs = {tuple(e["loc"]) for e in resp.json()["errors"]}
    assert locs == {
        ("body", "category"),
        ("body", "description"),
        ("body", "reported_at"),
        ("body", "priority"),
        ("body", "beneficiary", "group"),
    }


async def test_credentials_401_and_a_viewer_operator_gets_403(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    center = stack.urls["dispatch_center"]
    body = request_body()
    assert (await http.post(f"{center}/v1/requests", json=body)).status_code == 401
    wrong = await http.post(f"{center}/v1/requests", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401

    integration = await new_integration(stack, http)
    key = {"X-API-Key": integration["api_key"]}
    assert (await http.post(f"{center}/v1/requests", json=body, headers=key)).status_code == 201
    revoked = await http.post(
        f"{center}/v1/operator/integrations/{integration['id']}/revoke",
        json={"reason": "test"},
        headers=operator_headers(stack),
    )
    assert revoked.status_code == 204
    again = await http.post(f"{center}/v1/requests", json=request_body(), headers=key)
    assert again.status_code == 401

    assert (await http.get(f"{center}/v1/operator/orders")).status_code == 401
    assert (
        await http.get(f"{center}/v1/operator/orders", headers={"X-API-Key": stack.api_key})
    ).status_code == 401
    # The CLI prints a new operator's token once.
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "swdispatch",
            "operators",
            "create",
            f"viewer-{uuid.uuid4().hex[:6]}",
            "--role",
            "viewer",
        ],
        env={**os.environ, "SWD_DATABASE_URL": stack.database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    token = next(
        line.split(": ", 1)[1] for line in created.stdout.splitlines() if "Bearer token" in line
    )
    viewer = {"Authorization": f"Bearer {token}"}
    assert (await http.get(f"{center}/v1/operator/orders", headers=viewer)).status_code == 200
    order_id = (await submit(http, center, stack.api_key, request_body()))["order_id"]
    cancel = await http.post(
        f"{center}/v1/operator/orders/{order_id}/cancel", json={"reason": "x"}, headers=viewer
    )
    assert cancel.status_code == 403


async def test_a_body_over_the_cap_is_413(stack: RunningStack, http: httpx.AsyncClient) -> None:
    body = request_body(description="x" * 70_000)
    resp = await post_request(http, stack, body)
    assert resp.status_code == 413


async def test_over_the_rate_limit_is_429_with_retry_after(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    integration = await new_integration(stack, http, rate_limit_per_minute=3)
    if datetime.now(UTC).second >= 57:  # keep the four requests in one one-minute window
        await asyncio.sleep(60 - datetime.now(UTC).second)
    url = f"{stack.urls['dispatch_center']}/v1/requests"
    codes = []
    for _ in range(4):
        resp = await http.post(
            url, json=request_body(), headers={"X-API-Key": integration["api_key"]}
        )
        codes.append(resp.status_code)
    assert codes == [201, 201, 201, 429]
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    # Another integration is not limited by this one's traffic.
    other = await http.post(url, json=request_body(), headers={"X-API-Key": stack.api_key})
    assert other.status_code == 201


async def test_only_the_creating_integration_sees_its_request(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    center = stack.urls["dispatch_center"]
    created = await submit(http, center, stack.api_key, request_body())
    other = await new_integration(stack, http)
    mine = await http.get(f"{center}{created['link']}", headers={"X-API-Key": stack.api_key})
    theirs = await http.get(f"{center}{created['link']}", headers={"X-API-Key": other["api_key"]})
    assert mine.status_code == 200
    assert mine.json()["status"] == "dispatched"
    assert theirs.status_code == 404


# --- routing --------------------------------------------------------------------------------


@pytest.mark.usefixtures("township")
async def test_routing_by_coverage_override_and_fallback(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    center = stack.urls["dispatch_center"]
    key = stack.api_key

    async def station_of(body: dict[str, Any]) -> tuple[str, str | None]:
        created = await submit(http, center, key, body)
        view = (await http.get(f"{center}{created['link']}", headers={"X-API-Key": key})).json()
        return created["status"], view["station_id"]

    assert await station_of(t3_request("T3-ONE")) == ("dispatched", "st-t3-a")
    # The township's rehabilitation orders all go to the station with the rehabilitation team.
    rehab = t3_request("T3-ONE", category="disability_rehabilitation")
    assert await station_of(rehab) == ("dispatched", "st-t3-rehab")
    # The covering station is inactive: the first fallback takes it.
    assert await station_of(t3_request("T3-THREE")) == ("dispatched", "st-t3-b")
    # Nobody covers it: it waits at the center for an operator.
    status, station = await station_of(t3_request("T3-NONE"))
    assert (status, station) == ("unroutable", None)
    page = (
        await http.get(
            f"{center}/v1/operator/orders",
            params={"unroutable": "true", "limit": 500},
            headers=operator_headers(stack),
        )
    ).json()
    assert any(o["community_code"] == "T3-NONE" and o["awaiting_operator"] for o in page["items"])
    assert all(o["status"] == "unroutable" for o in page["items"])


# --- rejection, redispatch, cancel ----------------------------------------------------------


@pytest.mark.usefixtures("township")
async def test_rejections_redispatch_down_the_fallbacks_then_wait_for_an_operator(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    center = stack.urls["dispatch_center"]
    created = await submit(http, center, stack.api_key, t3_request("T3-ONE"))
    order_id = created["order_id"]

    async def dispatched_to(station: str, dispatch_no: int) -> asyncpg.Record | None:
        row = await center_order(db, order_id)
        ok = row["station_id"] == station and row["dispatch_no"] == dispatch_no
        return row if ok and row["status"] == "dispatched" else None

    for number, (station, next_station) in enumerate(
        [("st-t3-a", "st-t3-b"), ("st-t3-b", "st-t3-c")], start=1
    ):
        await eventually(lambda s=station, n=number: dispatched_to(s, n))
        await send_station_events(
            stack,
            order_id,
            OrderRejected(
                station_id=station, dispatch_no=number, reason_code="no_capacity", note=NOTE
            ),
        )
        await eventually(lambda s=next_station, n=number + 1: dispatched_to(s, n))

    # The station worker moved the order to the last station, once.
    async def at_station_c() -> bool:
        return bool(
            await db.fetchval(
                "SELECT true FROM station_worker.station_orders"
                " WHERE order_id = $1 AND station_id = 'st-t3-c' AND dispatch_no = 3",
                uuid.UUID(order_id),
            )
        )

    await eventually(at_station_c)
    # A stale rejection (an older dispatch) changes nothing.
    await send_station_events(
        stack,
        order_id,
        OrderRejected(station_id="st-t3-a", dispatch_no=1, reason_code="no_capacity"),
        OrderRejected(station_id="st-t3-c", dispatch_no=3, reason_code="out_of_scope"),
    )

    async def held() -> asyncpg.Record | None:
        row = await center_order(db, order_id)
        return row if row["awaiting_operator"] else None

    row = await eventually(held)
    assert row["status"] == "rejected"
    assert row["dispatch_no"] == 3
    assert "no further station" in row["hold_reason"]
    dispatches = await center_events(db, order_id, "order.dispatched")
    assert [(e["payload"]["station_id"], e["payload"]["dispatch_no"]) for e in dispatches] == [
        ("st-t3-a", 1),
        ("st-t3-b", 2),
        ("st-t3-c", 3),
    ]
    assert dispatches[1]["payload"]["reason"] == "rejected by st-t3-a: no_capacity"

    view = (
        await http.get(f"{center}{created['link']}", headers={"X-API-Key": stack.api_key})
    ).json()
    assert [(t["status"], t["station_id"]) for t in view["timeline"]] == [
        ("submitted", None),
        ("dispatched", "st-t3-a"),
        ("rejected", "st-t3-a"),
        ("dispatched", "st-t3-b"),
        ("rejected", "st-t3-b"),
        ("dispatched", "st-t3-c"),
        ("rejected", "st-t3-c"),
    ]
    assert NOTE not in json.dumps(view)  # the station's note is personal data

    # An operator finds it and sends it back to the first station, then cancels it.
    ops = operator_headers(stack)
    waiting = (
        await http.get(
            f"{center}/v1/operator/orders",
            params={"awaiting_operator": "true", "station_id": "st-t3-c", "limit": 500},
            headers=ops,
        )
    ).json()
    assert order_id in {o["order_id"] for o in waiting["items"]}
    resp = await http.post(
        f"{center}/v1/operator/orders/{order_id}/redispatch",
        json={"station_id": "st-t3-a", "reason": "spoke to the station manager"},
        headers=ops,
    )
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["dispatch_no"]) == ("dispatched", 4)
    assert resp.json()["timeline"][-1]["actor"] == "operator:demo-operator"
    last = (await center_events(db, order_id, "order.dispatched"))[-1]
    assert last["actor"] == {"kind": "operator", "id": "demo-operator"}
    assert last["payload"]["reason"] == "spoke to the station manager"

    bad = await http.post(
        f"{center}/v1/operator/orders/{order_id}/redispatch",
        json={"station_id": "st-nowhere", "reason": "x"},
        headers=ops,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "station_id"]

    cancel = await http.post(
        f"{center}/v1/operator/orders/{order_id}/cancel",
        json={"reason": "the family moved away"},
        headers=ops,
    )
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"
    [cancelled] = await center_events(db, order_id, "order.cancelled")
    assert cancelled["payload"] == {"station_id": "st-t3-a", "reason": "the family moved away"}
    assert cancelled["actor"] == {"kind": "operator", "id": "demo-operator"}
    again = await http.post(
        f"{center}/v1/operator/orders/{order_id}/cancel", json={"reason": "x"}, headers=ops
    )
    assert again.status_code == 409


@pytest.mark.usefixtures("township")
async def test_automatic_redispatches_stop_at_the_configured_number(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    # Five stations could take it; after SWD_MAX_REDISPATCHES (3) the operator decides.
    created = await submit(
        http, stack.urls["dispatch_center"], stack.api_key, t3_request("T3-FOUR")
    )
    order_id = created["order_id"]
    for number, station in enumerate(["st-t3-a", "st-t3-b", "st-t3-c", "st-t3-rehab"], start=1):

        async def dispatched(s: str = station, n: int = number) -> bool:
            row = await center_order(db, order_id)
            return (row["station_id"], row["dispatch_no"], row["status"]) == (s, n, "dispatched")

        await eventually(dispatched)
        await send_station_events(
            stack,
            order_id,
            OrderRejected(station_id=station, dispatch_no=number, reason_code="no_capacity"),
        )

    async def held() -> asyncpg.Record | None:
        row = await center_order(db, order_id)
        return row if row["awaiting_operator"] else None

    row = await eventually(held)
    assert (row["status"], row["redispatches"], row["dispatch_no"]) == ("rejected", 3, 4)
    assert "redispatched 3 times already" in row["hold_reason"]


async def test_order_list_pages_with_a_cursor(stack: RunningStack, http: httpx.AsyncClient) -> None:
    center = stack.urls["dispatch_center"]
    for _ in range(3):
        await submit(http, center, stack.api_key, request_body(urgency="urgent"))
    seen: list[str] = []
    cursor = None
    for page_no in range(3):
        params: dict[str, Any] = {"urgency": "urgent", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (
            await http.get(
                f"{center}/v1/operator/orders", params=params, headers=operator_headers(stack)
            )
        ).json()
        assert len(page["items"]) == 1
        assert page["items"][0]["urgency"] == "urgent"
        seen.append(page["items"][0]["order_id"])
        cursor = page["next_cursor"]
        assert cursor or page_no == 2
    assert len(set(seen)) == 3
    bad = await http.get(
        f"{center}/v1/operator/orders",
        params={"cursor": "garbage"},
        headers=operator_headers(stack),
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["query", "cursor"]


# --- status callbacks -----------------------------------------------------------------------


@pytest.mark.usefixtures("township")
async def test_callbacks_are_signed_retried_and_delivered_once_per_status_change(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    integration = await new_integration(stack, http)
    receiver = Receiver(failures=2)
    async with serving(receiver) as url:
        created = await submit(
            http,
            stack.urls["dispatch_center"],
            integration["api_key"],
            t3_request("T3-TWO", callback_url=url),
        )
        order_id = created["order_id"]
        await send_station_events(
            stack,
            order_id,
            OrderAccepted(station_id="st-t3-b"),
            OrderAssigned(station_id="st-t3-b", worker_id="w1"),
            OrderStarted(station_id="st-t3-b", worker_id="w1"),
            OrderCompleted(
                station_id="st-t3-b",
                worker_id="w1",
                outcome="resolved",
                service_minutes=45,
                follow_up_needed=False,
                summary=SUMMARY,
            ),
        )

        def delivered() -> list[dict[str, Any]]:
            return [json.loads(body) for code, _, body in receiver.calls if code == 200]

        await eventually(lambda: asyncio.sleep(0, len(delivered()) >= 7), timeout_s=20)
        await asyncio.sleep(0.5)  # nothing more may come

    assert [c["status"] for c in delivered()] == [
        "submitted",
        "dispatched",
        "accepted",
        "assigned",
        "in_service",
        "completed",
        "awaiting_feedback",  # the return visit is next
    ]
    assert all(c["order_id"] == order_id for c in delivered())
    assert_callbacks_follow_the_timeline(await intake_rows(db, order_id))
    assert [code for code, _, _ in receiver.calls] == [500, 500] + [200] * 7
    # The two failures were retries of the first callback, not callbacks of their own.
    deliveries = [headers["x-swd-delivery"] for _, headers, _ in receiver.calls]
    assert deliveries[0] == deliveries[1] == deliveries[2]
    assert len(set(deliveries)) == 7
    for _, headers, body in receiver.calls:
        expected = hmac.new(
            integration["callback_secret"].encode(),
            headers["x-swd-timestamp"].encode() + b"." + body,
            hashlib.sha256,
        ).hexdigest()
        assert hmac.compare_digest(headers["x-swd-signature"], f"sha256={expected}")
        assert abs(int(headers["x-swd-timestamp"]) - datetime.now(UTC).timestamp()) < 60
    assert SUMMARY not in str(receiver.calls)

    attempts = await db.fetch(
        """SELECT a.outcome FROM dispatch_center.callback_attempts a
           JOIN dispatch_center.callbacks c ON c.id = a.callback_id
           WHERE c.order_id = $1 ORDER BY a.id""",
        uuid.UUID(order_id),
    )
    assert [a["outcome"] for a in attempts] == ["failed", "failed"] + ["delivered"] * 7
    metrics = (await http.get(f"{stack.urls['dispatch_center']}/metrics")).text
    assert 'swd_status_callback_attempts_total{outcome="failed"}' in metrics
    assert 'swd_status_callback_attempts_total{outcome="delivered"}' in metrics


@pytest.mark.usefixtures("township")
async def test_coverage_changes_name_bad_fields(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    url = f"{stack.urls['dispatch_center']}/v1/operator/communities/T3-ONE"
    body = {"name": "x", "township_code": "TS-T3", "station_id": "st-t3-a", "reason": "test"}
    unknown = await http.put(
        url, json=body | {"fallbacks": ["st-nowhere"]}, headers=operator_headers(stack)
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["body", "fallbacks"]
    itself = await http.put(
        url, json=body | {"fallbacks": ["st-t3-a"]}, headers=operator_headers(stack)
    )
    assert itself.status_code == 422
    no_reason = await http.put(
        url, json={k: v for k, v in body.items() if k != "reason"}, headers=operator_headers(stack)
    )
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["loc"] == ["body", "reason"]


# --- where status callbacks go, how long an attempt may take --------------------------------
# The test stack calls back loopback only (swdispatch.stack.LOOPBACK_CALLBACKS): every other
# URL is refused at intake, before anything is resolved or connected to.


async def revoke(stack: RunningStack, http: httpx.AsyncClient, integration_id: str) -> None:
    resp = await http.post(
        f"{stack.urls['dispatch_center']}/v1/operator/integrations/{integration_id}/revoke",
        json={"reason": "test over"},
        headers=operator_headers(stack),
    )
    assert resp.status_code == 204, resp.text


REFUSED_CALLBACK_URLS = {
    "metadata": "https://169.254.169.254/latest/meta-data",
    "private-10": "https://10.0.0.1/cb",
    "private-192": "https://192.168.1.1/cb",
    "link-local-v6": "https://[fe80::1]/cb",
    "multicast": "https://224.0.0.1/cb",
    "unspecified": "http://0.0.0.0:9/cb",
    "loopback-not-listed": "http://127.0.0.2:9/cb",
    "userinfo": "http://user:pass@127.0.0.1:9/cb",
    "not-listed-name": "https://hooks.example.com/cb",
    "https-public": "https://93.184.216.34/cb",
}


@pytest.mark.parametrize("url", REFUSED_CALLBACK_URLS.values(), ids=REFUSED_CALLBACK_URLS.keys())
@pytest.mark.usefixtures("township")
async def test_a_callback_url_the_center_may_not_call_is_a_422_naming_it(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, url: str
) -> None:
    body = t3_request("T3-ONE", callback_url=url)
    resp = await post_request(http, stack, body)
    assert resp.status_code == 422, resp.text
    assert [e["loc"] for e in resp.json()["errors"]] == [["body", "callback_url"]]
    stored = await db.fetchval(
        "SELECT count(*) FROM dispatch_center.orders WHERE external_id = $1", body["external_id"]
    )
    assert stored == 0


@pytest.mark.usefixtures("township")
async def test_loopback_callback_urls_are_accepted_in_the_test_settings(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    integration = await new_integration(stack, http)
    for url in ("http://127.0.0.1:9/cb", "http://[::1]:9/cb", "http://localhost:9/cb"):
        await submit(
            http,
            stack.urls["dispatch_center"],
            integration["api_key"],
            t3_request("T3-ONE", callback_url=url),
        )
    await revoke(stack, http, integration["id"])


@dataclass
class SlowReceiver:
    """A callback endpoint that never answers in time: it trickles its status line a byte
    every ``trickle_s``, or (None) sends nothing; it counts the connections open."""

    trickle_s: float | None = None
    open: int = 0
    most_open: int = 0
    requests: int = 0
    held_s: list[float] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened = time.monotonic()
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            hung_up = asyncio.ensure_future(reader.read())
            for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\n"):
                if hung_up.done():
                    break
                if self.trickle_s is not None:
                    writer.write(bytes([byte]))
                await asyncio.wait([hung_up], timeout=self.trickle_s)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            self.held_s.append(time.monotonic() - opened)
            writer.close()


@contextlib.asynccontextmanager
async def raw_serving(receiver: SlowReceiver) -> AsyncIterator[str]:
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/swd-callbacks"


async def first_attempt(db: asyncpg.Pool, order_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        """SELECT a.error, a.duration_ms FROM dispatch_center.callback_attempts a
           JOIN dispatch_center.callbacks c ON c.id = a.callback_id
           WHERE c.order_id = $1 ORDER BY a.id LIMIT 1""",
        uuid.UUID(order_id),
    )
    return row


@pytest.mark.usefixtures("township")
async def test_a_trickling_receiver_is_cut_at_the_deadline_over_one_connection(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    integration = await new_integration(stack, http)
    receiver = SlowReceiver(trickle_s=2)
    async with raw_serving(receiver) as url:
        created = await submit(
            http,
            stack.urls["dispatch_center"],
            integration["api_key"],
            t3_request("T3-ONE", callback_url=url),
        )
        first = await eventually(lambda: first_attempt(db, created["order_id"]), timeout_s=30)
        await eventually(lambda: asyncio.sleep(0, receiver.held_s))
        await revoke(stack, http, integration["id"])
    deadline_ms = 5000  # callback_timeout_s
    # The services run on uvloop, whose timers count whole milliseconds from a cached loop
    # time: the deadline may fire up to a millisecond or two before the clock's mark.
    timer_granularity_ms = 2
    assert first["error"] == "deadline exceeded"
    assert deadline_ms - timer_granularity_ms <= first["duration_ms"] < deadline_ms + 3000
    assert receiver.held_s[0] < 8, receiver.held_s
    assert receiver.most_open == 1


@pytest.mark.usefixtures("township")
async def test_an_integration_with_hanging_receivers_holds_only_its_share_of_deliveries(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    slow, other = await new_integration(stack, http), await new_integration(stack, http)
    hanging = SlowReceiver()
    receiver = Receiver(failures=0)
    center = stack.urls["dispatch_center"]
    async with raw_serving(hanging) as slow_url, serving(receiver) as url:
        for _ in range(8):
            await submit(http, center, slow["api_key"], t3_request("T3-ONE", callback_url=slow_url))
        await eventually(lambda: asyncio.sleep(0, hanging.open >= 4), timeout_s=20)
        await asyncio.sleep(1)  # time for attempts beyond the cap to start, were there any
        await submit(http, center, other["api_key"], t3_request("T3-ONE", callback_url=url))
        await eventually(lambda: asyncio.sleep(0, len(receiver.calls) >= 2), timeout_s=20)
        await revoke(stack, http, slow["id"])
        await revoke(stack, http, other["id"])
    assert hanging.most_open == 4  # callbacks.IN_FLIGHT_PER_INTEGRATION


@pytest.mark.usefixtures("township")
async def test_a_revoked_integration_gets_no_more_callbacks(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    integration = await new_integration(stack, http)
    receiver = Receiver(failures=0)
    async with serving(receiver) as url:
        created = await submit(
            http,
            stack.urls["dispatch_center"],
            integration["api_key"],
            t3_request("T3-TWO", callback_url=url),
        )
        order_id = uuid.UUID(created["order_id"])

        async def delivered() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) = 2 FROM dispatch_center.callbacks"
                    " WHERE order_id = $1 AND delivered_at IS NOT NULL",
                    order_id,
                )
            )

        await eventually(delivered)
        await revoke(stack, http, integration["id"])
        await send_station_events(stack, created["order_id"], OrderAccepted(station_id="st-t3-b"))

        async def given_up() -> int:
            return int(
                await db.fetchval(
                    "SELECT count(*) FROM dispatch_center.callbacks"
                    " WHERE order_id = $1 AND given_up_at IS NOT NULL",
                    order_id,
                )
            )

        assert await eventually(given_up, timeout_s=20) == 1
    assert [json.loads(body)["status"] for _, _, body in receiver.calls] == [
        "submitted",
        "dispatched",
    ]


async def test_callback_secrets_are_stored_encrypted_with_the_key_from_the_environment(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    integration = await new_integration(stack, http)
    row = await db.fetchrow(
        "SELECT callback_secret_cleartext, callback_secret_encrypted"
        " FROM dispatch_center.integrations WHERE id = $1",
        integration["id"],
    )
    assert row["callback_secret_cleartext"] is None
    assert integration["callback_secret"] not in row["callback_secret_encrypted"]
    cipher = Fernet(stack.local.callback_secret_key)
    decrypted = cipher.decrypt(row["callback_secret_encrypted"].encode()).decode()
    assert decrypted == integration["callback_secret"]

    # A secret kept in clear before migration 0003 is encrypted when the center starts.
    old_id = f"old-{uuid.uuid4().hex[:8]}"
    await db.execute(
        "INSERT INTO dispatch_center.integrations (id, name, key_hash, callback_secret_cleartext)"
        " VALUES ($1, $1, $1, 'old-secret')",
        old_id,
    )
    pool = await asyncpg.create_pool(
        stack.database_url,
        min_size=1,
        max_size=1,
        server_settings=schema_settings("dispatch_center"),
    )
    assert pool is not None
    async with pool:
        await callbacks.encrypt_cleartext_secrets(pool, cipher)
    row = await db.fetchrow(
        "SELECT callback_secret_cleartext, callback_secret_encrypted"
        " FROM dispatch_center.integrations WHERE id = $1",
        old_id,
    )
    assert row["callback_secret_cleartext"] is None
    assert cipher.decrypt(row["callback_secret_encrypted"].encode()) == b"old-secret"
