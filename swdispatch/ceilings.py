"""The machine's ceilings, measured with the bare components the pipeline is built on: an
aiokafka producer and consumer, an asyncpg pool, a trivial FastAPI endpoint under httpx."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared import stats
from swdispatch.embedded import free_port


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (NaN for none), as :func:`shared.stats.percentile`."""
    value = stats.percentile(values, q)
    return float("nan") if value is None else value


async def kafka_ceilings(bootstrap: str, *, messages: int, round_trips: int) -> dict[str, float]:
    """Produce -> consume round trip (one message at a time) and bulk messages per second."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await producer.start()
    await consumer.start()
    try:
        # Bring the consumer up to date before timing (the topic may take a moment to exist).
        await producer.send_and_wait(topic, b"warm-up")
        await consumer.getone()
        rtts = []
        for _ in range(round_trips):
            sent = time.perf_counter()
            await producer.send_and_wait(topic, b"x" * 600)
            await consumer.getone()
            rtts.append(time.perf_counter() - sent)
        payload = b"x" * 600  # about the size of one event
        started = time.perf_counter()
        pending = [
            await producer.send(topic, payload, key=str(i).encode()) for i in range(messages)
        ]
        await asyncio.gather(*pending)
        produced = time.perf_counter()
        received = 0
        while received < messages:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            received += sum(len(records) for records in batch.values())
        consumed = time.perf_counter()
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "kafka_round_trip_p50_ms": percentile(rtts, 0.5) * 1000,
        "kafka_round_trip_p99_ms": percentile(rtts, 0.99) * 1000,
        "kafka_produce_per_s": messages / (produced - started),
        "kafka_produce_consume_per_s": messages / (consumed - started),
    }


async def postgres_ceiling(
    database_url: str, *, transactions: int, pool_size: int
) -> dict[str, float]:
    """Single-row insert transactions per second from a bare asyncpg pool."""
    pool = await asyncpg.create_pool(database_url, min_size=pool_size, max_size=pool_size)
    assert pool is not None
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS public.bench_rows (id bigserial PRIMARY KEY, body text)"
        )
        body = "x" * 600

        async def insert() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO public.bench_rows (body) VALUES ($1)", body)

        elapsed = await _run_concurrently(insert, transactions, concurrency=pool_size * 2)
        await pool.execute("DROP TABLE public.bench_rows")
    finally:
        await pool.close()
    return {"postgres_insert_tx_per_s": transactions / elapsed}


async def _run_concurrently(
    work: Callable[[], Awaitable[Any]], total: int, *, concurrency: int
) -> float:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await work()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


TRIVIAL_APP = """
from fastapi import FastAPI
app = FastAPI()

@app.post("/echo")
async def echo(body: dict) -> dict:
    return {"ok": True}
"""


@contextlib.contextmanager
def trivial_http_server() -> Iterator[str]:
    """A one-endpoint FastAPI app in its own uvicorn process, like each service runs in."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-c",
            TRIVIAL_APP + f"\nimport uvicorn\nuvicorn.run(app, host='127.0.0.1', port={port},"
            " log_level='warning', access_log=False)",
        ],
        env=os.environ.copy(),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"{url}/echo", json={}, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def http_ceiling(url: str, *, requests: int, concurrency: int) -> dict[str, float]:
    """Requests per second of the trivial endpoint, with the HTTP client the pipeline's load
    generator uses and a body the size of an intake request."""
    from swdispatch.simulate import client

    body = {"padding": "x" * 1000}
    async with client(concurrency) as http:

        async def call() -> None:
            async with http.post(f"{url}/echo", json=body) as resp:
                resp.raise_for_status()
                await resp.read()

        await _run_concurrently(call, 50, concurrency=concurrency)  # warm the connections
        elapsed = await _run_concurrently(call, requests, concurrency=concurrency)
    return {"http_trivial_requests_per_s": requests / elapsed}
