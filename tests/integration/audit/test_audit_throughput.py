"""How many events per second the audit consumer applies (trail + projection), on the real
stack. ``SWD_AUDIT_BENCH_EVENTS`` sets the number of events (default 400, kept small for the
suite); run with ``-s`` to see the figure."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.audit.domain import GENESIS, row_hash
from tests.conftest import RunningStack
from tests.factories.audit import OrderScript

pytestmark = pytest.mark.integration


async def test_audit_consumer_throughput(stack: RunningStack, db: asyncpg.Pool) -> None:
    n_events = int(os.environ.get("SWD_AUDIT_BENCH_EVENTS", "400"))
    stations = ("st-chengxiang", "st-shaxi", "st-liuhe")
    scripts = []
    for i in range(n_events // 4):
        station = stations[i % 3]
        s = OrderScript(datetime.now(UTC)).submitted().dispatched(station, 0.1)
        scripts.append(s.received(station, 0.2).accepted(station, 1))
    messages = [(topic, e) for s in scripts for topic, e in s.events]
    event_ids = [e.event_id for _, e in messages]

    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        for topic, event in messages:
            await producer.send(topic, event.to_json().encode(), key=str(event.order_id).encode())
        await producer.flush()
    finally:
        await producer.stop()
    published = time.perf_counter() - started

    while True:
        applied = await db.fetchval(
            "SELECT count(*) FROM audit.trail WHERE event_id = ANY($1::uuid[])", event_ids
        )
        elapsed = time.perf_counter() - started
        if applied == len(event_ids):
            break
        assert elapsed < 120, f"{applied} of {len(event_ids)} events applied in {elapsed:.0f}s"
        await asyncio.sleep(0.05)
    print(
        f"\naudit consumer: {len(event_ids)} events of {len(scripts)} orders applied in "
        f"{elapsed:.2f}s = {len(event_ids) / elapsed:.0f} events/s "
        f"(publishing took {published:.2f}s)"
    )
    projected = await db.fetchval(
        "SELECT count(*) FROM audit.orders"
        " WHERE order_id = ANY($1::uuid[]) AND status = 'accepted'",
        [s.order_id for s in scripts],
    )
    assert projected == len(scripts)
    key = stack.local.audit_env()["SWD_AUDIT_HMAC_KEY"].encode()
    await _assert_chains_hold(db, key, [s.order_id for s in scripts])


async def _assert_chains_hold(db: asyncpg.Pool, key: bytes, order_ids: list[uuid.UUID]) -> None:
    """Events of one order applied in one batch still link each to the one before it."""
    rows = await db.fetch(
        "SELECT order_id, event_id, event_type, occurred_at, station_id, event, prev_hash, hash"
        " FROM audit.trail"
        " WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, seq",
        order_ids,
    )
    last: dict[uuid.UUID, str] = {}
    for row in rows:
        assert row["prev_hash"] == last.get(row["order_id"], GENESIS)
        decoded = dict(row) | {"event": json.loads(row["event"])}
        assert row["hash"] == row_hash(key, row["prev_hash"], decoded)
        last[row["order_id"]] = row["hash"]
    assert len(last) == len(order_ids)
