"""``swdispatch bench``: the machine's ceilings and the pipeline's figures, in one run.

1. ceilings: Kafka round trip and throughput (bare aiokafka), single-row insert transactions
   (bare asyncpg), requests per second of a trivial FastAPI endpoint (the same HTTP client);
2. pipeline, open loop (request i is due at start + i / rate; latency counts from that due
   time, so a stall shows): intake rate steps until latency or errors climb; intake -> station
   queue and intake -> audit trail latencies from the services' own commit timestamps;
   full-lifecycle orders per second with simulated staff; each service's peak memory;
3. a table with each pipeline figure beside its ceiling, and the same as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from swdispatch import ceilings
from swdispatch.ceilings import percentile
from swdispatch.sandbox import Sandbox
from swdispatch.simulate import Simulation, StaffBehaviour, StaffUnavailable, client


@dataclass(frozen=True)
class BenchConfig:
    rates: tuple[float, ...] = (25, 50, 100, 200, 300, 400, 500, 600, 800)
    step_s: float = 10.0
    drain_s: float = 20.0
    """How long after a step every order may take to reach the station and the audit trail."""
    max_error_share: float = 0.01
    max_intake_p99_ms: float = 1000.0
    warm_up_rate: float = 50.0
    warm_up_s: float = 3.0
    lifecycle_rate: float = 50.0
    lifecycle_s: float = 15.0
    kafka_messages: int = 20_000
    kafka_round_trips: int = 200
    postgres_transactions: int = 5_000
    http_requests: int = 3_000
    http_concurrency: int = 64


def _ms(seconds: list[float]) -> dict[str, float]:
    return {
        f"p{int(q * 100)}_ms": round(percentile(seconds, q) * 1000, 1) for q in (0.5, 0.95, 0.99)
    }


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def measure_ceilings(box: Sandbox, cfg: BenchConfig) -> dict[str, float]:
    figures: dict[str, float] = {}
    figures |= await ceilings.kafka_ceilings(
        box.kafka_bootstrap, messages=cfg.kafka_messages, round_trips=cfg.kafka_round_trips
    )
    figures |= await ceilings.postgres_ceiling(
        box.database_url, transactions=cfg.postgres_transactions, pool_size=10
    )
    with ceilings.trivial_http_server() as url:
        figures |= await ceilings.http_ceiling(
            url, requests=cfg.http_requests, concurrency=cfg.http_concurrency
        )
    return {k: round(v, 2) for k, v in figures.items()}


async def _arrivals(
    db: asyncpg.Pool, order_ids: list[str], deadline: float
) -> tuple[dict[str, float], dict[str, float]]:
    """When each order was queued at its station, and when its trail held the three intake
    events (submitted, dispatched, received): Unix times from the services' own rows."""
    station: dict[str, float] = {}
    audit: dict[str, float] = {}
    while True:
        rows = await db.fetch(
            "SELECT order_id::text AS id, extract(epoch FROM received_at)::float8 AS at"
            " FROM station_worker.station_orders WHERE order_id = ANY($1::uuid[])",
            order_ids,
        )
        station = {r["id"]: r["at"] for r in rows}
        rows = await db.fetch(
            """SELECT order_id::text AS id, extract(epoch FROM max(recorded_at))::float8 AS at
               FROM audit.trail WHERE order_id = ANY($1::uuid[])
                 AND event_type IN ('order.submitted', 'order.dispatched', 'order.received')
               GROUP BY order_id HAVING count(DISTINCT event_type) = 3""",
            order_ids,
        )
        audit = {r["id"]: r["at"] for r in rows}
        done = len(station) == len(order_ids) and len(audit) == len(order_ids)
        if done or time.monotonic() > deadline:
            return station, audit
        await asyncio.sleep(0.5)


async def intake_step(
    box: Sandbox, db: asyncpg.Pool, http: aiohttp.ClientSession, rate: float, cfg: BenchConfig
) -> dict[str, Any]:
    sim = Simulation(http, box.urls, box.credentials, box.county, StaffBehaviour())
    started = time.perf_counter()
    await sim.submit_at_rate(rate, cfg.step_s)
    sent_s = time.perf_counter() - started
    ids = list(sim.tally.sent_at)
    station, audit = await _arrivals(db, ids, time.monotonic() + cfg.drain_s)
    to_station = [station[i] - sim.tally.sent_at[i] for i in ids if i in station]
    to_audit = [audit[i] - sim.tally.sent_at[i] for i in ids if i in audit]
    attempts = int(rate * cfg.step_s)
    errors = sum(sim.tally.errors.values())
    intake = _ms(sim.tally.intake_latencies_s)
    result: dict[str, Any] = {
        "rate_per_s": rate,
        "achieved_per_s": round(sim.tally.submitted / sent_s, 1),
        "requests": attempts,
        "created": sim.tally.submitted,
        "errors": dict(sim.tally.errors),
        "intake": intake,
        "intake_to_station": _ms(to_station),
        "intake_to_audit": _ms(to_audit),
        "not_at_station": len(ids) - len(station),
        "not_in_audit": len(ids) - len(audit),
        "load_average": _load(),
    }
    result["sustained"] = (
        errors <= cfg.max_error_share * attempts
        and intake["p99_ms"] <= cfg.max_intake_p99_ms
        and result["not_at_station"] == 0
        and result["not_in_audit"] == 0
        and result["achieved_per_s"] >= 0.95 * rate
    )
    return result


async def lifecycle(box: Sandbox, http: aiohttp.ClientSession, cfg: BenchConfig) -> dict[str, Any]:
    """Orders from intake to completed by simulated staff, per second of the run."""
    behaviour = StaffBehaviour(
        accept_delay_s=0.2, reject_share=0.0, work_delay_s=0.1, poll_interval_s=0.5
    )
    sim = Simulation(http, box.urls, box.credentials, box.county, behaviour, seed=6)
    try:
        await sim.register_workers()
    except StaffUnavailable as exc:
        return {"available": False, "reason": str(exc)}
    staff = asyncio.create_task(sim.work_stations())
    started = time.perf_counter()
    try:
        await sim.submit_at_rate(cfg.lifecycle_rate, cfg.lifecycle_s)
        deadline = time.perf_counter() + cfg.drain_s
        while sim.tally.completed < sim.tally.submitted and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await sim.settle(5)
    finally:
        staff.cancel()
    last = max(sim.tally.completed_at, default=started)
    return {
        "available": True,
        "rate_per_s": cfg.lifecycle_rate,
        "submitted": sim.tally.submitted,
        "completed": sim.tally.completed,
        "completed_per_s": round(sim.tally.completed / max(last - started, 1e-9), 1),
        "errors": dict(sim.tally.errors),
        "load_average": _load(),
    }


def peak_memory_mib(pids: dict[str, int]) -> dict[str, float]:
    """Each service process's peak resident set (VmHWM)."""
    peaks = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[name] = round(int(line.split()[1]) / 1024, 1)
    return peaks


def comparison(ceil: dict[str, float], pipe: dict[str, Any]) -> list[dict[str, Any]]:
    """Each pipeline figure beside the ceiling it is bounded by, and their ratio."""
    at200 = next((s for s in pipe["steps"] if s["rate_per_s"] == 200), None)
    best = pipe["sustained_step"]
    rows: list[tuple[str, float | None, str, str]] = [
        (
            "sustained intake (orders/s)",
            pipe["sustained_intake_per_s"],
            "http_trivial_requests_per_s",
            "share of a bare endpoint's rate",
        ),
        (
            "sustained intake (orders/s)",
            pipe["sustained_intake_per_s"],
            "postgres_insert_tx_per_s",
            "share of bare insert transactions",
        ),
        (
            "sustained intake (orders/s)",
            pipe["sustained_intake_per_s"],
            "kafka_produce_consume_per_s",
            "share of bare broker throughput",
        ),
    ]
    for label, step in (("at 200/s", at200), ("at max sustained", best)):
        if step is None:
            continue
        for q in ("p50", "p99"):
            rows.append(
                (
                    f"intake->station {q} ms {label}",
                    step["intake_to_station"][f"{q}_ms"],
                    f"kafka_round_trip_{q}_ms",
                    "multiple of a bare round trip",
                )
            )
            rows.append(
                (
                    f"intake->audit {q} ms {label}",
                    step["intake_to_audit"][f"{q}_ms"],
                    f"kafka_round_trip_{q}_ms",
                    "multiple of a bare round trip",
                )
            )
    if pipe["lifecycle"].get("available"):
        rows.append(
            (
                "full lifecycle (orders/s)",
                pipe["lifecycle"]["completed_per_s"],
                "http_trivial_requests_per_s",
                "share of a bare endpoint's rate",
            )
        )
    table = []
    for figure, value, ceiling, meaning in rows:
        limit = ceil.get(ceiling)
        ratio = None if value is None or not limit else round(value / limit, 3)
        table.append(
            {
                "figure": figure,
                "value": value,
                "ceiling": ceiling,
                "ceiling_value": limit,
                "ratio": ratio,
                "ratio_means": meaning,
            }
        )
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    lines = [
        f"{'pipeline figure':38} {'value':>10}  {'ceiling':32} {'value':>10}  {'ratio':>7}",
        "-" * 104,
    ]
    for row in table:
        value = "-" if row["value"] is None else f"{row['value']:.1f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        lines.append(
            f"{row['figure']:38} {value:>10}  {row['ceiling']:32} "
            f"{row['ceiling_value']:>10.1f}  {ratio:>7}"
        )
    return "\n".join(lines)


async def measure_pipeline(box: Sandbox, cfg: BenchConfig, log: Any) -> dict[str, Any]:
    db = await asyncpg.create_pool(box.database_url, min_size=1, max_size=2)
    assert db is not None
    steps = []
    try:
        async with client() as http:
            # Not measured: the services' first requests fill pools and statement caches.
            await Simulation(
                http, box.urls, box.credentials, box.county, StaffBehaviour()
            ).submit_at_rate(cfg.warm_up_rate, cfg.warm_up_s)
            for rate in cfg.rates:
                step = await intake_step(box, db, http, rate, cfg)
                steps.append(step)
                print(
                    f"  intake {rate:5.0f}/s: achieved {step['achieved_per_s']:6.1f}/s, "
                    f"intake p99 {step['intake']['p99_ms']:.0f} ms, "
                    f"to station p50/p99 {step['intake_to_station']['p50_ms']:.0f}/"
                    f"{step['intake_to_station']['p99_ms']:.0f} ms, "
                    f"to audit p99 {step['intake_to_audit']['p99_ms']:.0f} ms, "
                    f"errors {sum(step['errors'].values())}, load {step['load_average']}"
                    f"{'' if step['sustained'] else '  <- not sustained'}",
                    file=log,
                    flush=True,
                )
                if not step["sustained"]:
                    break
            print(f"  full lifecycle at {cfg.lifecycle_rate:.0f}/s ...", file=log, flush=True)
            life = await lifecycle(box, http, cfg)
    finally:
        await db.close()
    sustained = [s for s in steps if s["sustained"]]
    best = max(sustained, key=lambda s: s["rate_per_s"], default=None)
    return {
        "steps": steps,
        "sustained_step": best,
        "sustained_intake_per_s": best["achieved_per_s"] if best else None,
        "lifecycle": life,
        "peak_memory_mib": peak_memory_mib(box.service_pids()),
    }


async def run(box: Sandbox, cfg: BenchConfig, log: Any = sys.stdout) -> dict[str, Any]:
    print(f"ceilings (load {_load()}) ...", file=log, flush=True)
    ceil = await measure_ceilings(box, cfg)
    for name, value in ceil.items():
        print(f"  {name:32} {value:10.1f}", file=log)
    print(f"pipeline (load {_load()}) ...", file=log, flush=True)
    pipe = await measure_pipeline(box, cfg, log)
    return {
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": _load()},
        "county": {
            "townships": box.county.townships,
            "communities_per_township": box.county.communities_per_township,
            "workers_per_station": box.county.workers_per_station,
        },
        "config": {k: v for k, v in cfg.__dict__.items()},
        "ceilings": ceil,
        "pipeline": pipe,
        "table": comparison(ceil, pipe),
    }


def write_report(result: dict[str, Any], path: Path, out: Any = sys.stdout) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print("\n" + format_table(result["table"]), file=out)
    life = result["pipeline"]["lifecycle"]
    if not life.get("available"):
        print(f"\nfull lifecycle not measured: {life.get('reason')}", file=out)
    print(f"\npeak memory (MiB): {result['pipeline']['peak_memory_mib']}", file=out)
    print(f"load average at end: {result['machine']['load_average_at_end']}", file=out)
    print(f"written to {path}", file=out)
