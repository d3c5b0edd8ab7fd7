"""The audit on the real stack: hand-checked report figures, breaches seen while an order is
open, a tampered trail caught by verification, the projection rebuilt from the log."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import random
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from services.audit.admin import create_reader
from services.audit.domain import legacy_link_hash, link_hash
from services.audit.store import read_checkpoints
from shared import topics
from shared.db import connect
from shared.domain import Stage
from shared.locks import LockNamespace
from tests.conftest import RunningStack
from tests.factories.audit import OrderScript
from tests.factories.requests import request_body
from tests.helpers import eventually, get_json_when, post_request, swdispatch

pytestmark = pytest.mark.integration

MIN = 60.0  # seconds


async def publish(stack: RunningStack, scripts: Sequence[OrderScript], seed: int) -> None:
    """Every event of ``scripts`` to its topic, shuffled, some twice; wait until all are in
    the trail."""
    messages = [(topic, e) for s in scripts for topic, e in s.events]
    rng = random.Random(seed)
    messages += rng.sample(messages, min(3, len(messages)))
    rng.shuffle(messages)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for topic, event in messages:
            await producer.send_and_wait(
                topic, event.to_json().encode(), key=str(event.order_id).encode()
            )
    finally:
        await producer.stop()
    await wait_in_trail(stack, [e.event_id for _, e in messages])


async def wait_in_trail(stack: RunningStack, event_ids: Sequence[uuid.UUID]) -> None:
    wanted = set(event_ids)
    conn = await asyncpg.connect(stack.database_url)
    try:

        async def all_there() -> bool:
            n = await conn.fetchval(
                "SELECT count(*) FROM audit.trail WHERE event_id = ANY($1::uuid[])", list(wanted)
            )
            return bool(n == len(wanted))

        await eventually(all_there, timeout_s=30)
    finally:
        await conn.close()


def supervisor(stack: RunningStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.supervisor_token}"}


async def manager_of(stack: RunningStack, station: str) -> dict[str, str]:
    conn = await connect(stack.database_url, "audit")
    try:
        token = await create_reader(
            conn,
            f"test-{station}-{uuid.uuid4().hex[:6]}",
            "Test manager",
            "station_manager",
            station,
        )
    finally:
        await conn.close()
    return {"Authorization": f"Bearer {token}"}


def known_orders(base: datetime) -> dict[str, OrderScript]:
    """Four routine orders (deadlines from submission: dispatch 4 h, accept 24 h, assign 48 h,
    complete 15 days), each submitted an hour after the one before, times in minutes."""
    lh, sx = "st-liuhe", "st-shaxi"
    a = OrderScript(base).submitted().dispatched(lh, 10).received(lh, 11).accepted(lh, 60)
    a.assigned(lh, "lh-w1", 120).started(lh, "lh-w1", 200).completed(lh, "lh-w1", 1000)
    a.closed(lh, 1100)
    b = OrderScript(base + timedelta(hours=1)).submitted().dispatched(lh, 300).received(lh, 301)
    b.accepted(lh, 2000).assigned(lh, "lh-w2", 2100)  # still open; completion deadline passed
    c = OrderScript(base + timedelta(hours=2)).submitted().dispatched(sx, 20).received(sx, 21)
    c.rejected(sx, 30).dispatched(lh, 50).received(lh, 51).accepted(lh, 100).cancelled(lh, 500)
    d = OrderScript(base + timedelta(hours=3)).submitted().dispatched(sx, 30).received(sx, 31)
    d.dispatched(sx, 60, resend=True).accepted(sx, 90).assigned(sx, "sx-w1", 200)
    d.started(sx, "sx-w1", 300).completed(sx, "sx-w1", 600)
    return {"a": a, "b": b, "c": c, "d": d}


def stage(
    done: int, on_time: int, breached: int, rate: float | None, p50: float, p90: float
) -> dict[str, Any]:
    return {
        "done": done,
        "on_time": on_time,
        "breached": breached,
        "on_time_rate": pytest.approx(rate),
        "p50_seconds": pytest.approx(p50),
        "p90_seconds": pytest.approx(p90),
    }


async def test_report_figures_match_a_hand_computed_event_sequence(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    # A day well in the past (every deadline has passed), random so reruns do not overlap.
    base = datetime(2015, 6, 1, tzinfo=UTC) + timedelta(days=random.randrange(3000))
    orders = known_orders(base)
    await publish(stack, list(orders.values()), seed=5)

    url = f"{stack.urls['audit']}/v1/reports/timeliness"
    window = {"from": base.isoformat(), "to": (base + timedelta(days=1)).isoformat()}
    resp = await http.get(url, params=window | {"group_by": "station"}, headers=supervisor(stack))
    assert resp.status_code == 200, resp.text
    report = resp.json()
    groups = {g["group"]: g for g in report["groups"]}
    assert set(groups) == {"st-liuhe", "st-shaxi", "center"}
    liuhe, shaxi, center = groups["st-liuhe"], groups["st-shaxi"], groups["center"]
    no_stage = {
        "done": 0,
        "on_time": 0,
        "breached": 0,
        "on_time_rate": None,
        "p50_seconds": None,
        "p90_seconds": None,
    }

    # Each station is judged by its stints: its own deadlines (the order's windows counted
    # from its dispatch), durations from its dispatch. The dispatch is the center's.
    # st-liuhe held A (dispatched 10), B (300) and C#2 (50, after st-shaxi rejected C#1).
    # accept: A 60-10 = 50 met, B 2000-300 = 1700 > 24 h breached, C 100-50 = 50 met;
    #   p50 50, p90 50 + 0.8 * 1650 = 1370.
    # assign: A 110, B 1800 (by 300 + 48 h: met); C cancelled at 500 before its deadline.
    #   p50 110 + 0.5 * 1690 = 955, p90 110 + 0.9 * 1690 = 1631.
    # complete: A 990 met; B open past its 15 days from 300: breached; C neither.
    assert liuhe["stages"] == {
        "dispatch": no_stage,
        "accept": stage(3, 2, 1, 2 / 3, 50 * MIN, 1370 * MIN),
        "assign": stage(2, 2, 0, 1.0, 955 * MIN, 1631 * MIN),
        "complete": stage(1, 1, 1, 0.5, 990 * MIN, 990 * MIN),
    }
    assert {k: v for k, v in liuhe.items() if k not in ("stages", "oldest_open_age_seconds")} == {
        "group": "st-liuhe",
        "orders": 3,
        "completed": 1,
        "cancelled": 1,
        "dispatches": 3,  # A#1, B#1, C#2
        "rejections": 0,
        "rejection_rate": 0.0,
        "redispatched_orders": 1,  # C, which came from st-shaxi
        "redispatch_rate": pytest.approx(1 / 3),
        "open_backlog": 1,  # B
    }
    b_dispatched = orders["b"].submitted_at + timedelta(minutes=300)
    b_age = (datetime.now(UTC) - b_dispatched).total_seconds()
    assert liuhe["oldest_open_age_seconds"] == pytest.approx(b_age, abs=30)

    # st-shaxi held D (dispatched 30; its re-send is no new stint) and C#1, which it rejected
    # in time (20 -> 30): no breach of C's. D: accept 90-30, assign 200-30, complete 600-30.
    assert shaxi["stages"] == {
        "dispatch": no_stage,
        "accept": stage(1, 1, 0, 1.0, 60 * MIN, 60 * MIN),
        "assign": stage(1, 1, 0, 1.0, 170 * MIN, 170 * MIN),
        "complete": stage(1, 1, 0, 1.0, 570 * MIN, 570 * MIN),
    }
    assert (shaxi["orders"], shaxi["completed"], shaxi["cancelled"]) == (2, 1, 0)
    assert (shaxi["dispatches"], shaxi["rejections"], shaxi["rejection_rate"]) == (2, 1, 0.5)
    assert (shaxi["redispatch_rate"], shaxi["open_backlog"]) == (0.0, 0)
    assert shaxi["oldest_open_age_seconds"] is None

    # The center: dispatch A 10 met, B 300 breached (4 h), C 20 met, D 30 met;
    # p50 25, p90 30 + 0.7 * 270 = 219. Nothing waits at the center.
    assert center["stages"] == {
        "dispatch": stage(4, 3, 1, 0.75, 25 * MIN, 219 * MIN),
        "accept": no_stage,
        "assign": no_stage,
        "complete": no_stage,
    }
    assert {k: v for k, v in center.items() if k != "stages"} == {
        "group": "center",
        "orders": 4,
        "completed": 2,
        "cancelled": 1,
        "dispatches": 5,
        "rejections": 1,
        "rejection_rate": 0.2,
        "redispatched_orders": 1,
        "redispatch_rate": 0.25,
        "open_backlog": 0,
        "oldest_open_age_seconds": None,
    }

    by_worker = await http.get(
        url, params=window | {"group_by": "worker"}, headers=supervisor(stack)
    )
    assert {g["group"]: g["orders"] for g in by_worker.json()["groups"]} == {
        "lh-w1": 1,
        "lh-w2": 1,
        "sx-w1": 1,
        "none": 1,  # C: rejected by st-shaxi, cancelled at st-liuhe before an assignment
        "center": 4,
    }

    as_csv = await http.get(
        url,
        params=window | {"group_by": "station"},
        headers=supervisor(stack) | {"Accept": "text/csv"},
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = {r["station"]: r for r in csv.DictReader(io.StringIO(as_csv.text))}
    assert rows["st-liuhe"]["orders"] == "3"
    assert float(rows["st-liuhe"]["accept_on_time_rate"]) == pytest.approx(2 / 3, abs=1e-6)
    assert rows["st-liuhe"]["accept_p90_seconds"] == str(1370 * MIN)
    assert rows["center"]["dispatch_p90_seconds"] == str(219 * MIN)
    assert rows["st-shaxi"]["oldest_open_age_seconds"] == ""

    # A station manager sees only their own station, with the same figures.
    shaxi_manager = await manager_of(stack, "st-shaxi")
    own = await http.get(url, params=window | {"group_by": "station"}, headers=shaxi_manager)
    assert own.json()["groups"] == [shaxi]
    audit = stack.urls["audit"]
    a_id, d_id = orders["a"].order_id, orders["d"].order_id
    assert (
        await http.get(f"{audit}/v1/orders/{a_id}/timeliness", headers=shaxi_manager)
    ).status_code == 404
    assert (
        await http.get(f"{audit}/v1/orders/{d_id}/timeliness", headers=shaxi_manager)
    ).status_code == 200
    assert (await http.get(f"{audit}/v1/audit/verify", headers=shaxi_manager)).status_code == 403


async def test_per_order_timeliness_shows_every_dispatch_rejection_and_outcome(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    base = datetime(2015, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(3000))
    orders = known_orders(base)
    await publish(stack, [orders["b"], orders["c"]], seed=7)
    audit = stack.urls["audit"]

    b = (
        await http.get(
            f"{audit}/v1/orders/{orders['b'].order_id}/timeliness", headers=supervisor(stack)
        )
    ).json()
    assert b["status"] == "assigned"
    assert {s: v["outcome"] for s, v in b["stages"].items()} == {
        "dispatch": "breached",
        "accept": "breached",
        "assign": "met",
        "complete": "breached",
    }
    assert b["stages"]["accept"]["deadline"] == (
        base + timedelta(hours=1, days=1)
    ).isoformat().replace("+00:00", "Z")

    c = (
        await http.get(
            f"{audit}/v1/orders/{orders['c'].order_id}/timeliness", headers=supervisor(stack)
        )
    ).json()
    assert (c["status"], c["station_id"], c["redispatches"], c["rejections"]) == (
        "cancelled",
        "st-liuhe",
        1,
        1,
    )
    assert [(d["station_id"], d["reject_reason_code"]) for d in c["dispatches"]] == [
        ("st-shaxi", "out_of_capacity"),
        ("st-liuhe", None),
    ]
    assert c["stages"]["assign"]["outcome"] == "not_applicable"
    # The rejection note and the case details are personal data: not in the audit.
    assert "private note" not in str(c)


def metric(text: str, name: str, labels: dict[str, str]) -> float:
    """The sum of the samples of ``name`` that carry ``labels``."""
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_a_deadline_passing_on_an_open_order_counts_as_a_breach_at_once(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = "st-chengxiang"
    metrics_url = f"{stack.urls['audit']}/metrics"
    breached = {"stage": "accept", "urgency": "urgent", "station": station}
    before = metric((await http.get(metrics_url)).text, "swd_sla_breaches_total", breached)

    # Accept within 6 seconds of submission; the station never accepts.
    order = OrderScript(
        datetime.now(UTC),
        urgency="urgent",
        deadlines_min={
            Stage.DISPATCH: 10,
            Stage.ACCEPT: 0.1,
            Stage.ASSIGN: 60,
            Stage.COMPLETE: 600,
        },
    )
    order.submitted().dispatched(station, 0.001)
    await publish(stack, [order], seed=1)
    accept_by = order.deadlines.accept_by

    async def breach_row() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT * FROM audit.breaches WHERE order_id = $1 AND stage = 'accept'",
            order.order_id,
        )

    row = await eventually(breach_row, timeout_s=10)
    assert (row["station_id"], row["urgency"]) == (station, "urgent")
    assert accept_by <= row["detected_at"] < accept_by + timedelta(seconds=3)
    assert await db.fetchval(
        "SELECT ended_at IS NULL FROM audit.orders WHERE order_id = $1", order.order_id
    )

    async def counted() -> str | None:
        text = (await http.get(metrics_url)).text
        return text if metric(text, "swd_sla_breaches_total", breached) == before + 1 else None

    text = await eventually(counted, timeout_s=10)
    open_here = {"station": station, "status": "dispatched"}
    assert metric(text, "swd_overdue_open_orders", open_here) >= 1
    assert metric(text, "swd_open_orders", open_here) >= 1
    assert metric(text, "swd_oldest_open_order_age_seconds", {"station": station}) >= 3
    assert (
        metric(
            text,
            "swd_lifecycle_events_total",
            {"event_type": "order.dispatched", "urgency": "urgent", "station": station},
        )
        >= 1
    )
    assert (
        metric(text, "swd_stage_duration_seconds_count", {"stage": "dispatch", "urgency": "urgent"})
        >= 1
    )


async def test_an_edited_trail_entry_fails_verification_at_that_order(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order = OrderScript(datetime.now(UTC)).submitted().dispatched("st-liuhe", 1)
    await publish(stack, [order], seed=2)
    verify_url = f"{stack.urls['audit']}/v1/audit/verify"
    clean = (await http.get(verify_url, headers=supervisor(stack))).json()
    assert clean["ok"], clean["broken"]

    submitted_id = order.events[0][1].event_id
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute("DELETE FROM audit.trail WHERE event_id = $1", submitted_id)

    async with db.acquire() as conn:
        # Only a superuser who switches the triggers off gets to edit; verification sees it.
        await conn.execute("SET session_replication_role = replica")
        original = await conn.fetchval(
            "SELECT event::text FROM audit.trail WHERE event_id = $1", submitted_id
        )
        await conn.execute(
            """UPDATE audit.trail SET event = jsonb_set(event, '{payload,urgency}', '"emergency"')
               WHERE event_id = $1""",
            submitted_id,
        )
        try:
            result = (await http.get(verify_url, headers=supervisor(stack))).json()
            cli = swdispatch(stack, "audit", "verify")
        finally:
            await conn.execute(
                "UPDATE audit.trail SET event = $2::jsonb WHERE event_id = $1",
                submitted_id,
                original,
            )
            await conn.execute("SET session_replication_role = origin")

    assert not result["ok"]
    assert result["broken"] == [
        {
            "order_id": str(order.order_id),
            "seq": result["broken"][0]["seq"],
            "event_id": str(submitted_id),
            "problem": "hash_mismatch",
            "producer": None,
            "dead_letter": None,
        }
    ]
    assert cli.returncode == 1
    assert f"BROKEN order {order.order_id}" in cli.stdout
    assert (await http.get(verify_url, headers=supervisor(stack))).json()["ok"]
    assert swdispatch(stack, "audit", "verify").returncode == 0


async def test_an_event_the_audit_never_got_is_a_hole_that_verify_names(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    order = OrderScript(datetime.now(UTC)).submitted().dispatched("st-liuhe", 1)
    order.received("st-liuhe", 2).accepted("st-liuhe", 3).cancelled("st-liuhe", 4)
    # Numbered as their producers number them: the center 1, 2, 3, the station 1, 2.
    numbered = []
    counters: dict[str, int] = {}
    for topic, event in order.events:
        counters[topic] = counters.get(topic, 0) + 1
        numbered.append((topic, event.model_copy(update={"seq": counters[topic]})))
    lost = numbered.pop(1)  # the center's dispatch never reaches the audit
    order.events = numbered
    await publish(stack, [order], seed=26)
    verify_url = f"{stack.urls['audit']}/v1/audit/verify"
    result = (await http.get(verify_url, headers=supervisor(stack))).json()
    assert not result["ok"]
    assert [b for b in result["broken"] if b["order_id"] == str(order.order_id)] == [
        {
            "order_id": str(order.order_id),
            "seq": 2,
            "event_id": None,
            "problem": "missing_event",
            "producer": topics.CENTER_EVENTS,
            "dead_letter": None,
        }
    ]
    cli = swdispatch(stack, "audit", "verify")
    assert cli.returncode == 1
    assert f"{topics.CENTER_EVENTS} event #2 never arrived (on no dead-letter topic)" in cli.stdout

    # A copy the consumers cannot read is dead-lettered: verify says where it sits.
    body = json.loads(lost[1].to_json())
    body["payload"]["dispatch_no"] = "not a number"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.CENTER_EVENTS, json.dumps(body).encode(), key=str(order.order_id).encode()
        )
    finally:
        await producer.stop()

    async def dead_lettered() -> str | None:
        found = (await http.get(verify_url, headers=supervisor(stack))).json()["broken"]
        ours = [b for b in found if b["order_id"] == str(order.order_id)]
        return ours[0]["dead_letter"] if ours else None

    where = await eventually(dead_lettered, timeout_s=45)
    assert where.startswith(f"{topics.dead_letter(topics.CENTER_EVENTS)}:"), where

    order.events = [lost]  # it arrives after all
    await publish(stack, [order], seed=27)
    assert (await http.get(verify_url, headers=supervisor(stack))).json()["ok"]


async def trail_settled(
    stack: RunningStack, http: httpx.AsyncClient, order_id: uuid.UUID, quiet_s: float = 3.0
) -> None:
    """Wait until the order's trail has not grown for ``quiet_s``."""
    url = f"{stack.urls['audit']}/v1/orders/{order_id}/trail"
    seen, since = -1, time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        count = len((await http.get(url, headers=supervisor(stack))).json())
        if count != seen:
            seen, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"the trail of {order_id} kept growing for 60 s")


async def test_rebuild_recomputes_the_projection_from_the_log(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order = known_orders(datetime.now(UTC) - timedelta(days=1))["c"]
    await publish(stack, [order], seed=3)
    # The stack's station worker answers the scripted dispatches with order.received events of
    # its own; each one refreshes the projection, which would undo the damage done below.
    await trail_settled(stack, http, order.order_id)
    url = f"{stack.urls['audit']}/v1/orders/{order.order_id}/timeliness"
    before = (await http.get(url, headers=supervisor(stack))).json()

    await db.execute(
        "UPDATE audit.orders SET status = 'completed', rejections = 0 WHERE order_id = $1",
        order.order_id,
    )
    await db.execute("DELETE FROM audit.dispatches WHERE order_id = $1", order.order_id)
    assert (await http.get(url, headers=supervisor(stack))).json() != before

    done = swdispatch(stack, "audit", "rebuild")
    assert done.returncode == 0, done.stderr
    assert "rebuilt the projection of" in done.stdout
    assert (await http.get(url, headers=supervisor(stack))).json() == before


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "village"}, "group_by"),
        ({"from": "2024-01-01T00:00:00"}, "from"),  # no time zone
        ({"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "from"),
    ],
)
async def test_bad_report_parameters_are_a_422_naming_the_field(
    stack: RunningStack, http: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    resp = await http.get(
        f"{stack.urls['audit']}/v1/reports/timeliness", params=params, headers=supervisor(stack)
    )
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["query", field]


async def test_a_reader_created_on_the_command_line_can_read_reports(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    created = swdispatch(
        stack, "audit", "readers", "create", "--name", "CLI reader", "--role", "evaluator"
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.split("Authorization: Bearer ")[1].split()[0]
    url = f"{stack.urls['audit']}/v1/reports/timeliness"
    assert (await http.get(url, headers={"Authorization": f"Bearer {token}"})).status_code == 200
    assert (await http.get(url)).status_code == 401


async def test_an_order_submitted_to_the_center_is_projected_with_its_times(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    body = request_body(51, urgency="urgent")
    body["location"] |= {"township_code": "TS-SX", "community_code": "SX-DONGXIN"}
    resp = await post_request(http, stack, body)
    assert resp.status_code == 201, resp.text
    order_id = resp.json()["order_id"]

    order = await get_json_when(
        http,
        f"{stack.urls['audit']}/v1/orders/{order_id}/timeliness",
        supervisor(stack),
        lambda o: o["received_at"] is not None,
    )
    assert (order["status"], order["station_id"], order["urgency"]) == (
        "dispatched",
        "st-shaxi",
        "urgent",
    )
    submitted, dispatched, received = (
        datetime.fromisoformat(order[k]) for k in ("submitted_at", "dispatched_at", "received_at")
    )
    assert submitted <= dispatched <= received
    assert order["stages"]["dispatch"]["outcome"] == "met"
    assert order["stages"]["accept"]["outcome"] == "pending"
    assert [d["station_id"] for d in order["dispatches"]] == ["st-shaxi"]
    assert body["beneficiary"]["name"] not in str(order)


async def test_gauges_and_counters_are_the_same_after_the_audit_restarts(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    station = f"st-restart-{uuid.uuid4().hex[:6]}"  # a station of its own: exact figures
    now = datetime.now(UTC)
    overdue = OrderScript(now - timedelta(days=3)).submitted().dispatched(station, 1)
    overdue.received(station, 2).accepted(station, 3)  # assign deadline (48 h) passed
    fresh = OrderScript(now).submitted().dispatched(station, 0.01).accepted(station, 0.02)
    done = OrderScript(now - timedelta(days=1)).submitted().dispatched(station, 1)
    done.accepted(station, 2).assigned(station, "w", 3).completed(station, "w", 60)
    await publish(stack, [overdue, fresh, done], seed=9)

    metrics_url = f"{stack.urls['audit']}/metrics"
    accepted = {"station": station, "status": "accepted"}

    async def figures() -> tuple[float, ...] | None:
        text = (await http.get(metrics_url)).text
        values = (
            metric(text, "swd_open_orders", accepted),
            metric(text, "swd_overdue_open_orders", accepted),
            metric(text, "swd_sla_breaches_total", {"stage": "assign", "station": station}),
            metric(text, "swd_lifecycle_events_total", {"station": station}),
        )
        # 9 scripted events carry the station, and the station worker acknowledges each of
        # the 3 dispatches with an order.received of its own: 12 once everything has arrived.
        return values if values == (2, 1, 1, 12) else None

    before = await eventually(figures)
    stack.local.stop_service("audit")
    stack.local.start_service("audit")
    stack.local.wait_ready(("audit",))
    assert await eventually(figures) == before


# Forgeries by the database's owner, with the append-only triggers off: each must fail
# verification (API and command line) and verification must pass again once undone.

CHECKPOINT_LOCK = f"SELECT pg_advisory_xact_lock({int(LockNamespace.AUDIT_CHECKPOINT)}, 0)"


async def verify_both(
    stack: RunningStack, http: httpx.AsyncClient
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    api = await http.get(f"{stack.urls['audit']}/v1/audit/verify", headers=supervisor(stack))
    assert api.status_code == 200, api.text
    return api.json(), await asyncio.to_thread(swdispatch, stack, "audit", "verify")


def problems(result: dict[str, Any]) -> set[str]:
    return {b["problem"] for b in result["broken"]}


@contextlib.asynccontextmanager
async def forging(stack: RunningStack, covering_seq: int) -> AsyncIterator[asyncpg.Connection]:
    """Once a checkpoint covers ``covering_seq``: a superuser connection with the triggers off,
    while neither a checkpoint nor an append can happen (so nothing forged is checkpointed)."""
    key = stack.local.audit_env()["SWD_AUDIT_HMAC_KEY"].encode()

    async def covered() -> bool:
        found, _ = read_checkpoints(stack.local.audit_checkpoint_file, key)
        return any(c.max_seq >= covering_seq for c in found)

    await eventually(covered, timeout_s=60)
    pause = await asyncpg.connect(stack.database_url)
    forger = await connect(stack.database_url, "audit")
    # The forger handles each stored event as the text it is stored as.
    await forger.reset_type_codec("jsonb", schema="pg_catalog")
    try:
        async with pause.transaction():
            await pause.execute(CHECKPOINT_LOCK)
            await forger.execute("SET session_replication_role = replica")
            yield forger
    finally:
        await forger.close()
        await pause.close()


async def trail_of(db: asyncpg.Pool, order_id: uuid.UUID) -> list[dict[str, Any]]:
    """The order's entries, ``event`` as data and ``event_json`` as stored."""
    rows = await db.fetch("SELECT * FROM audit.trail WHERE order_id = $1 ORDER BY seq", order_id)
    return [dict(r) | {"event": json.loads(r["event"]), "event_json": r["event"]} for r in rows]


async def three_entry_order(
    stack: RunningStack, db: asyncpg.Pool, seed: int
) -> list[dict[str, Any]]:
    """An order no service reacts to (no dispatch), its three entries once in the trail."""
    order = OrderScript(datetime.now(UTC)).submitted()
    order.accepted("st-forgery", 1).assigned("st-forgery", "w-forgery", 2)
    await publish(stack, [order], seed=seed)
    trail = await trail_of(db, order.order_id)
    assert len(trail) == 3
    return trail


def forged_link(
    key: bytes, head: dict[str, Any], event: dict[str, Any], event_type: str
) -> dict[str, Any]:
    occurred_at = datetime.now(UTC)
    event = event | {"event_id": str(uuid.uuid4()), "type": event_type}
    event["occurred_at"] = occurred_at.isoformat()
    entry = {
        "order_id": head["order_id"],
        "event_id": uuid.UUID(event["event_id"]),
        "event_type": event_type,
        "occurred_at": occurred_at,
        "station_id": head["station_id"],
        "event": event,
    }
    forged_hash = link_hash(key, head["hash"], **entry)
    return entry | {"event": json.dumps(event), "prev_hash": head["hash"], "hash": forged_hash}


async def insert_entry(conn: asyncpg.Connection, row: dict[str, Any]) -> None:
    columns = list(row)
    await conn.execute(
        f"INSERT INTO trail ({', '.join(columns)})"  # noqa: S608 - the test's own column names
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})",
        *row.values(),
    )
    await conn.execute(
        "INSERT INTO inbox (consumer, event_id) VALUES ('audit', $1)", row["event_id"]
    )


async def remove_entry(conn: asyncpg.Connection, event_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM trail WHERE event_id = $1", event_id)
    await conn.execute("DELETE FROM inbox WHERE consumer = 'audit' AND event_id = $1", event_id)


async def test_a_correctly_linked_forged_completion_appended_by_sql_fails_verification(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """The issue's case: an ``order.completed`` linked to the order's head with the hash the
    trail used to have (unkeyed SHA-256), and its inbox row."""
    trail = await three_entry_order(stack, db, seed=21)
    head = trail[-1]
    event = head["event"] | {"event_id": str(uuid.uuid4()), "type": "order.completed"}
    event["payload"] = {"station_id": "st-forgery", "worker_id": "w-forgery", "outcome": "served"}
    forged = {
        "order_id": head["order_id"],
        "event_id": uuid.UUID(event["event_id"]),
        "event_type": "order.completed",
        "occurred_at": head["occurred_at"],
        "station_id": "st-forgery",
        "event": json.dumps(event),
        "prev_hash": head["hash"],
        "hash": legacy_link_hash(head["hash"], event),
        "hash_version": 1,
    }
    async with forging(stack, head["seq"]) as forger:
        await insert_entry(forger, forged)
        try:
            result, cli = await verify_both(stack, http)
            # Rebuilt from this trail, the report would show the order completed: refused.
            rebuilt = await asyncio.to_thread(swdispatch, stack, "audit", "rebuild")
            status = await db.fetchval(
                "SELECT status FROM audit.orders WHERE order_id = $1", head["order_id"]
            )
        finally:
            await remove_entry(forger, forged["event_id"])
        assert not result["ok"]
        assert [(b["event_id"], b["problem"]) for b in result["broken"]] == [
            (str(forged["event_id"]), "legacy_hash")
        ]
        assert cli.returncode == 1
        assert f"event {forged['event_id']}: legacy_hash" in cli.stdout
        assert rebuilt.returncode == 1
        assert "fails verification" in rebuilt.stderr
        assert status == "assigned"
        result, cli = await verify_both(stack, http)
        assert result["ok"], result["broken"]
        assert cli.returncode == 0, cli.stdout


FORGERIES = ["append", "delete_last", "reorder", "edit"]


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_forgery_of_checkpointed_entries_fails_verification_until_undone(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, forgery: str
) -> None:
    trail = await three_entry_order(stack, db, seed=30 + FORGERIES.index(forgery))
    first, middle, last = trail
    async with forging(stack, last["seq"]) as forger:
        if forgery == "append":
            # Linked to the head, HMAC under a key the forger guessed, inbox row included.
            forged = forged_link(b"g" * 32, last, dict(last["event"]), "order.completed")
            await insert_entry(forger, forged | {"hash_version": 2})
            expected = {"hash_mismatch"}
        elif forgery == "delete_last":
            # The chain stays whole and the inbox agrees: only the checkpoint knows.
            await remove_entry(forger, last["event_id"])
            expected = {"checkpoint_mismatch"}
        elif forgery == "reorder":
            swap = "UPDATE trail SET seq = $2 WHERE seq = $1"
            await forger.execute(swap, middle["seq"], -1)
            await forger.execute(swap, last["seq"], middle["seq"])
            await forger.execute(swap, -1, last["seq"])
            expected = {"prev_hash_mismatch", "checkpoint_mismatch"}
        else:
            await forger.execute(
                """UPDATE trail SET event = jsonb_set(event, '{payload,worker_id}', '"w-other"')
                   WHERE seq = $1""",
                last["seq"],
            )
            expected = {"hash_mismatch"}
        try:
            result, cli = await verify_both(stack, http)
        finally:
            if forgery == "append":
                await remove_entry(forger, forged["event_id"])
            elif forgery == "delete_last":
                await insert_entry(
                    forger,
                    {k: v for k, v in last.items() if k != "event_json"}
                    | {"event": last["event_json"]},
                )
            elif forgery == "reorder":
                await forger.execute(swap, middle["seq"], -1)
                await forger.execute(swap, last["seq"], middle["seq"])
                await forger.execute(swap, -1, last["seq"])
            else:
                await forger.execute(
                    "UPDATE trail SET event = $2 WHERE seq = $1", last["seq"], last["event_json"]
                )
        assert not result["ok"]
        assert problems(result) == expected, result["broken"]
        assert all(b["order_id"] in (None, str(first["order_id"])) for b in result["broken"]), (
            result["broken"]
        )
        assert cli.returncode == 1
        assert all(f": {problem}" in cli.stdout for problem in expected), cli.stdout
        result, cli = await verify_both(stack, http)
        assert result["ok"], result["broken"]
        assert cli.returncode == 0, cli.stdout
