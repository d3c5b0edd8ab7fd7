"""The audit follows a real order around the loop on the real stack: the center's return
visits, send-backs and redos (the station's steps scripted, as in the center's loop tests),
projected with each redo against its fresh deadlines; the supervision the third send-back
opened, closed by the supervisor of the station whose work was sent back; the feedback's
comment never in the trail; the chain verifying. A real station's follow-up visits, timed
against their due days."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.audit.admin import create_reader
from services.audit.domain import DEFAULT_TARGETS, PRODUCER_OF, Reader, evaluation, project
from shared import topics
from shared.db import connect
from shared.events import OrderRejected
from tests.conftest import RunningStack
from tests.helpers import get_json_when, remember_personal_data
from tests.integration.dispatch_center.center_support import (
    operator_headers,
    send_station_events,
    set_up_township,
)
from tests.integration.dispatch_center.test_center_loop import (
    COMMENT,
    _completed_order,
    _feedback,
    _send_back,
    _serve,
    _status,
)
from tests.integration.station_worker.station import new_station
from tests.integration.station_worker.test_loop import PLAN, completed_order, visit, with_follow_up

pytestmark = pytest.mark.integration

FIRST = "st-t3-b"
OTHER = "st-t3-a"


@pytest.fixture(scope="module")
async def township(stack: RunningStack, http: httpx.AsyncClient) -> None:
    await set_up_township(stack, http)


async def supervisor_of(stack: RunningStack, station: str) -> dict[str, str]:
    conn = await connect(stack.database_url, "audit")
    try:
        token = await create_reader(
            conn, f"sup-{uuid.uuid4().hex[:6]}", "督导", "supervisor", stations=[station]
        )
    finally:
        await conn.close()
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.usefixtures("township")
async def test_the_audit_follows_a_real_order_around_the_loop(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order_id = await _completed_order(stack, http, db)
    rounds = [FIRST, OTHER, OTHER]  # the second redo by another station the operator names
    for number, station in enumerate(rounds, start=1):
        resp = await _feedback(
            http, stack, order_id, resolved=False, satisfaction="dissatisfied", comment=COMMENT
        )
        assert resp.status_code == 200, resp.text
        named = {} if station == FIRST else {"station_id": station}
        sent = await _send_back(http, stack, order_id, reason=f"round {number}", **named)
        assert sent.status_code == 200, sent.text
        await _serve(stack, db, order_id, number + 1, station=station)
    resp = await _feedback(http, stack, order_id, resolved=True, satisfaction="satisfied")
    assert resp.json()["status"] == "closed"

    audit = stack.urls["audit"]
    evaluator = {"Authorization": f"Bearer {stack.supervisor_token}"}
    t = await get_json_when(
        http,
        f"{audit}/v1/orders/{order_id}/timeliness",
        evaluator,
        lambda o: o["status"] == "closed",
    )
    assert (t["station_id"], t["send_backs"], t["redispatches"]) == (OTHER, 3, 0)
    assert [r["station_id"] for r in t["redos"]] == rounds
    assert [(r["accept"]["outcome"], r["complete"]["outcome"]) for r in t["redos"]] == [
        ("met", "met")
    ] * 3
    assert [d["send_back_no"] for d in t["dispatches"]] == [None, 1, 2, 3]
    assert [(f["resolved"], f["satisfaction"]) for f in t["feedbacks"]] == [
        (False, "dissatisfied")
    ] * 3 + [(True, "satisfied")]
    assert t["supervision_station_id"] == OTHER
    assert t["supervision_closed_at"] is None

    trail = await http.get(f"{audit}/v1/orders/{order_id}/trail", headers=evaluator)
    assert COMMENT not in trail.text
    kinds = {e["event_type"] for e in trail.json()}
    assert {
        "order.awaiting_feedback",
        "order.feedback_received",
        "order.sent_back",
        "order.supervision_opened",
        "order.closed",
    } <= kinds

    # The supervisor of the station whose work was sent back the third time closes it.
    first, other = await supervisor_of(stack, FIRST), await supervisor_of(stack, OTHER)
    listed = (await http.get(f"{audit}/v1/supervisions", headers=other)).json()
    assert order_id in [s["order_id"] for s in listed]
    close = f"{audit}/v1/supervisions/{order_id}/close"
    assert (await http.post(close, json={"note": "n"}, headers=first)).status_code == 404
    closed = await http.post(close, json={"note": "met the family"}, headers=other)
    assert closed.status_code == 200, closed.text
    assert closed.json()["station_id"] == OTHER

    verified = (await http.get(f"{audit}/v1/audit/verify", headers=evaluator)).json()
    assert not [b for b in verified["broken"] if b["order_id"] == order_id]


def numbered_by(producer: str, trail: list[dict[str, Any]]) -> list[int]:
    """The numbers the producer gave the order's events in the trail, in order."""
    return sorted(e["event"]["seq"] for e in trail if PRODUCER_OF[e["event_type"]] == producer)


async def dead_letters_of(stack: RunningStack, order_id: str) -> list[tuple[str, str]]:
    """(topic, reason) of every dead letter keyed by the order, on every dead-letter topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, for the partitions
        parts = [
            TopicPartition(topics.dead_letter(topic), p)
            for topic in (topics.CENTER_EVENTS, topics.STATION_EVENTS)
            for p in consumer.partitions_for_topic(topics.dead_letter(topic)) or {0}
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found = []
        quiet = 0
        while quiet < 2:  # read to the end: until two fetches in a row bring nothing
            batch = await consumer.getmany(timeout_ms=500)
            quiet = 0 if batch else quiet + 1
            for records in batch.values():
                for r in records:
                    if r.key == order_id.encode():
                        headers = {k: v.decode() for k, v in r.headers}
                        found.append((r.topic, headers.get("swd-dlq-reason", "")))
    finally:
        await consumer.stop()
    return found


@pytest.mark.usefixtures("township")
async def test_a_redo_rejected_then_redispatched_is_one_round_and_each_station_keeps_its_part(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order_id = await _completed_order(stack, http, db)  # served by FIRST, dispatch 1
    resp = await _feedback(http, stack, order_id, resolved=False, satisfaction="dissatisfied")
    assert resp.status_code == 200, resp.text
    sent = await _send_back(http, stack, order_id, reason="the tap still leaks")
    assert sent.status_code == 200, sent.text
    await _status(db, order_id, "dispatched", dispatch_no=2, station_id=FIRST)
    rejected = OrderRejected(station_id=FIRST, dispatch_no=2, reason_code="out_of_capacity")
    await send_station_events(stack, order_id, rejected)
    # T3-TWO has no other station: the redo waits for an operator, who names one.
    await _status(db, order_id, "rejected", awaiting_operator=True)
    moved = await http.post(
        f"{stack.urls['dispatch_center']}/v1/operator/orders/{order_id}/redispatch",
        json={"station_id": OTHER, "reason": "st-t3-b is full"},
        headers=operator_headers(stack),
    )
    assert moved.status_code == 200, moved.text
    await _serve(stack, db, order_id, 3, station=OTHER)
    resp = await _feedback(http, stack, order_id, resolved=True, satisfaction="satisfied")
    assert resp.json()["status"] == "closed"

    audit = stack.urls["audit"]
    evaluator = {"Authorization": f"Bearer {stack.supervisor_token}"}
    t = await get_json_when(
        http,
        f"{audit}/v1/orders/{order_id}/timeliness",
        evaluator,
        lambda o: o["status"] == "closed",
    )
    assert [(d["station_id"], d["send_back_no"]) for d in t["dispatches"]] == [
        (FIRST, None),
        (FIRST, 1),
        (OTHER, 1),
    ]
    (redo,) = t["redos"]
    assert (redo["station_id"], redo["accept"]["outcome"], redo["complete"]["outcome"]) == (
        OTHER,
        "met",
        "met",
    )
    trail = (await http.get(f"{audit}/v1/orders/{order_id}/trail", headers=evaluator)).json()
    kinds = [e["event_type"] for e in trail]
    assert kinds.count("order.dispatched") == 3
    assert kinds.count("order.completed") == 2
    assert kinds.count("order.feedback_received") == 2
    assert await dead_letters_of(stack, order_id) == []
    # The center numbered its events of the order 1, 2, 3 ... without a gap (the station's
    # steps here are the test's, unnumbered).
    by_center = sum(PRODUCER_OF[k] == topics.CENTER_EVENTS for k in kinds)
    assert numbered_by(topics.CENTER_EVENTS, trail) == list(range(1, by_center + 1))
    verified = (await http.get(f"{audit}/v1/audit/verify", headers=evaluator)).json()
    assert not [b for b in verified["broken"] if b["order_id"] == order_id]

    # Each station's figures are its own: FIRST served once, was sent back and rejected the
    # redo in time; OTHER redid it and was visited satisfied.
    timeline = project(order_id, [e["event"] for e in trail])
    stations = {
        s.station: s
        for s in evaluation(
            Reader("ref", "evaluator"), [timeline], datetime.now(UTC), {**DEFAULT_TARGETS}, 0.0
        )
    }
    first, other = stations[FIRST], stations[OTHER]
    parts = ("stints", "rejections", "completed", "send_backs", "satisfied", "accepts_late")
    assert tuple(getattr(first, p) for p in parts) == (2, 1, 1, 1, 0, 0)
    assert tuple(getattr(other, p) for p in parts) == (1, 0, 1, 0, 1, 0)


async def test_the_audit_times_a_real_stations_follow_up_visits(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 5, True)])
    ((worker, token),) = station.workers.items()
    remember_personal_data(PLAN)
    today = datetime.now(UTC).date()
    due, next_by = today + timedelta(days=7), today + timedelta(days=30)
    order_id = await completed_order(stack, http, station, worker, with_follow_up(due))
    first = {
        "visited_on": today.isoformat(),
        "summary": "Meals arrive",
        "next_follow_up_by": next_by.isoformat(),
    }
    assert (await visit(http, station, order_id, first, token)).status_code == 201

    audit = stack.urls["audit"]
    evaluator = {"Authorization": f"Bearer {stack.supervisor_token}"}
    t = await get_json_when(
        http,
        f"{audit}/v1/orders/{order_id}/timeliness",
        evaluator,
        lambda o: len(o["follow_ups"]) == 2,
    )
    assert [(f["worker_id"], f["due_on"], f["done_on"], f["outcome"]) for f in t["follow_ups"]] == [
        (worker, due.isoformat(), today.isoformat(), "met"),
        (worker, next_by.isoformat(), None, "pending"),
    ]
    trail = await http.get(f"{audit}/v1/orders/{order_id}/trail", headers=evaluator)
    assert PLAN not in trail.text
    assert "Meals arrive" not in trail.text
    followed = [e for e in trail.json() if e["event_type"] == "order.followed_up"]
    # The real station numbered its events of the order 1, 2, 3 ... without a gap (the
    # dispatch here is the test's, unnumbered).
    numbers = numbered_by(topics.STATION_EVENTS, trail.json())
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 5  # received, accepted, assigned, started, completed, followed up
    assert followed[0]["event"]["payload"]["next_follow_up_by"] == next_by.isoformat()
