"""The simulator and the benchmark's code paths, briefly, against the session stack (their
figures come from ``swdispatch bench``, not from the test suite)."""

from __future__ import annotations

import io

import asyncpg
import pytest

from swdispatch import bench, ceilings, county
from swdispatch.sandbox import Sandbox
from swdispatch.simulate import StaffBehaviour, client, run
from tests.conftest import RunningStack

pytestmark = pytest.mark.integration

COUNTY = county.County(townships=2, communities_per_township=2, workers_per_station=2)


@pytest.fixture(scope="module")
async def sim_credentials(stack: RunningStack) -> dict[str, object]:
    return await county.seed(
        stack.database_url,
        COUNTY,
        integration="simulator",
        callback_secret_key=stack.local.callback_secret_key,
    )


async def test_simulated_staff_take_every_order_to_completed_and_the_audit_has_them(
    stack: RunningStack, sim_credentials: dict[str, object]
) -> None:
    out = io.StringIO()
    summary = await run(
        stack.urls,
        sim_credentials,
        COUNTY,
        StaffBehaviour(
            accept_delay_s=0.1, reject_share=0.0, work_delay_s=0.05, poll_interval_s=0.1
        ),
        rate_per_s=5,
        duration_s=2,
        settle_s=20,
        out=out,
    )
    assert summary["staff_simulated"], out.getvalue()
    assert summary["errors"] == {}
    assert summary["submitted"] == 10
    assert summary["accepted"] == summary["completed"] == 10
    assert summary["accepted_missing_from_audit"] == []
    assert "completed" in out.getvalue()  # the progress display ran


async def test_bench_measures_ceilings_and_an_intake_step(
    stack: RunningStack, sim_credentials: dict[str, object]
) -> None:
    kafka = await ceilings.kafka_ceilings(stack.kafka_bootstrap, messages=200, round_trips=10)
    assert 0 < kafka["kafka_round_trip_p50_ms"] <= kafka["kafka_round_trip_p99_ms"]
    assert kafka["kafka_produce_consume_per_s"] > 0
    pg = await ceilings.postgres_ceiling(stack.database_url, transactions=50, pool_size=2)
    assert pg["postgres_insert_tx_per_s"] > 0
    with ceilings.trivial_http_server() as url:
        http = await ceilings.http_ceiling(url, requests=50, concurrency=4)
    assert http["http_trivial_requests_per_s"] > 0

    box = Sandbox(stack.local, sim_credentials, COUNTY)
    cfg = bench.BenchConfig(step_s=1.0, drain_s=15.0)
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with client() as session:
            step = await bench.intake_step(box, pool, session, 10, cfg)
    finally:
        await pool.close()
    assert step["created"] == 10
    assert step["not_at_station"] == step["not_in_audit"] == 0
    assert 0 < step["intake_to_station"]["p50_ms"] <= step["intake_to_audit"]["p99_ms"]
    memory = bench.peak_memory_mib({name: p.pid for name, p in stack.local.processes.items()})
    assert set(memory) == {"dispatch_center", "station_worker", "audit"}
    assert all(mib > 10 for mib in memory.values())
