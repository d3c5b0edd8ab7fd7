"""Fault injection with a loss/duplicate oracle.

The whole stack runs with each service as its own process while a steady stream of requests
goes to the intake API. Meanwhile each service is SIGKILLed at random moments (its outbox relay
dies with it) and restarted, PostgreSQL is restarted once and the broker is restarted once
(Tansu keeps nothing). Then the oracle reconciles the databases against the ledger of accepted
requests: nothing lost, nothing doubled, nothing applied out of order, every chain intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.audit.chain import GENESIS, row_hash
from shared.kafka import create_topics
from shared.settings import KafkaSettings
from swdispatch.demo import random_request
from swdispatch.stack import SERVICES, LocalStack, Ports
from tests.conftest import TEST_SERVICE_ENV
from tests.helpers import remember_personal_data

pytestmark = [pytest.mark.integration, pytest.mark.fault]

SEED = 20261123
RATE_PER_S = 8
DRIVE_S = 40
CONVERGE_S = 120

FAULT_ENV = TEST_SERVICE_ENV | {
    "SWD_KAFKA_REQUEST_TIMEOUT_MS": "5000",
    "SWD_OUTBOX_POLL_INTERVAL_S": "0.2",
    "SWD_DB_POOL_MIN_SIZE": "1",
}


@dataclass
class Ledger:
    submitted: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # external_id -> order_id
    server_errors: int = 0
    retries: int = 0
    abandoned: list[str] = field(default_factory=list)


@dataclass
class Faults:
    injected: Counter[str] = field(default_factory=Counter)
    recovery_s: list[tuple[str, float]] = field(default_factory=list)


async def _submit_until_accepted(
    http: httpx.AsyncClient, url: str, key: str, body: dict[str, Any], ledger: Ledger
) -> None:
    deadline = time.monotonic() + DRIVE_S + CONVERGE_S
    while time.monotonic() < deadline:
        try:
            resp = await http.post(url, json=body, headers={"X-API-Key": key})
            if resp.status_code in (200, 201):
                ledger.accepted[body["external_id"]] = resp.json()["order_id"]
                return
            if resp.status_code >= 500 and resp.status_code != 503:
                ledger.server_errors += 1
        except httpx.TransportError:
            pass
        ledger.retries += 1
        await asyncio.sleep(0.3)
    ledger.abandoned.append(body["external_id"])


async def _drive(
    stack: LocalStack, credentials: dict[str, Any], ledger: Ledger, faults_over: asyncio.Event
) -> None:
    """Requests at a steady rate for at least DRIVE_S and until every fault has recovered,
    so that each fault meets traffic however slow the machine is."""
    rng = random.Random(SEED)
    url = f"{stack.urls['dispatch_center']}/v1/requests"
    key = credentials["integration"]["api_key"]
    submissions = set()
    async with httpx.AsyncClient(timeout=10) as http:
        started = time.monotonic()
        while time.monotonic() - started < DRIVE_S or not faults_over.is_set():
            body = random_request(rng)
            remember_personal_data(body["beneficiary"]["name"], body["reporter"]["name"])
            ledger.submitted += 1
            submissions.add(
                asyncio.create_task(_submit_until_accepted(http, url, key, body, ledger))
            )
            await asyncio.sleep(1 / RATE_PER_S)
        await asyncio.gather(*submissions)


async def _kill_and_restart(stack: LocalStack, service: str, faults: Faults) -> None:
    killed = time.monotonic()
    stack.stop_service(service, signal.SIGKILL)
    faults.injected[f"SIGKILL {service}"] += 1
    await asyncio.sleep(0.5)
    stack.start_service(service)
    await asyncio.to_thread(stack.wait_ready, (service,), 90)
    faults.recovery_s.append((f"{service} after SIGKILL", time.monotonic() - killed))


async def _restart_postgres(stack: LocalStack, faults: Faults) -> None:
    assert stack.postgres is not None
    stopped = time.monotonic()
    await asyncio.to_thread(stack.postgres.stop, "immediate")
    faults.injected["PostgreSQL restart"] += 1
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.postgres.start)
    await asyncio.to_thread(stack.wait_ready, SERVICES, 90)
    faults.recovery_s.append(("all services after PostgreSQL restart", time.monotonic() - stopped))


async def _restart_broker(stack: LocalStack, faults: Faults) -> None:
    assert stack.broker is not None
    stopped = time.monotonic()
    await asyncio.to_thread(stack.broker.stop)
    faults.injected["broker restart (all data lost)"] += 1
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.broker.start)
    await create_topics(KafkaSettings(bootstrap=stack.broker.bootstrap))
    faults.recovery_s.append(("broker back with topics", time.monotonic() - stopped))


async def _inject(stack: LocalStack, faults: Faults, over: asyncio.Event) -> None:
    rng = random.Random(SEED)
    plan: list[tuple[str, str | None]] = [("kill", s) for s in SERVICES for _ in range(2)]
    rng.shuffle(plan)
    plan.insert(rng.randint(1, len(plan) - 1), ("postgres", None))
    plan.insert(rng.randint(1, len(plan) - 1), ("broker", None))
    gap = (DRIVE_S - 4) / len(plan)
    for kind, service in plan:
        await asyncio.sleep(rng.uniform(0.2, gap * 0.6))
        if kind == "kill":
            assert service is not None
            await _kill_and_restart(stack, service, faults)
        elif kind == "postgres":
            await _restart_postgres(stack, faults)
        else:
            await _restart_broker(stack, faults)
    await asyncio.sleep(2)  # traffic after the last recovery, too
    over.set()


async def _progress(db: asyncpg.Pool, order_ids: list[str]) -> dict[str, int]:
    at_stations = await db.fetchval(
        "SELECT count(*) FROM station_worker.station_orders WHERE order_id = ANY($1::uuid[])",
        order_ids,
    )
    routed = await db.fetchval(
        "SELECT count(*) FROM dispatch_center.orders"
        " WHERE id = ANY($1::uuid[]) AND station_id IS NOT NULL",
        order_ids,
    )
    unsent = await db.fetchval(
        "SELECT (SELECT count(*) FROM dispatch_center.outbox WHERE sent_at IS NULL)"
        " + (SELECT count(*) FROM station_worker.outbox WHERE sent_at IS NULL)"
    )
    expected = await db.fetchval(
        "SELECT (SELECT count(*) FROM dispatch_center.outbox WHERE key = ANY($1::text[]))"
        " + (SELECT count(*) FROM station_worker.outbox WHERE key = ANY($1::text[]))",
        order_ids,
    )
    trail = await db.fetchval(
        "SELECT count(*) FROM audit.trail WHERE order_id = ANY($1::uuid[])", order_ids
    )
    return {
        "routed": routed,
        "at stations": at_stations,
        "unsent outbox rows": unsent,
        "events published": expected,
        "in the trail": trail,
    }


def _converged(progress: dict[str, int]) -> bool:
    return (
        progress["at stations"] == progress["routed"]
        and progress["unsent outbox rows"] == 0
        and progress["in the trail"] >= progress["events published"]
    )


def _warnings(logs: Path) -> str:
    lines = [
        f"{log.name}: {line[:200]}"
        for log in sorted(logs.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if " WARNING " in line or " ERROR " in line
    ]
    return "\n".join(lines[-40:])


async def _reconcile(
    db: asyncpg.Pool, ledger: Ledger, integration_id: str, hmac_key: bytes
) -> dict[str, int]:
    order_ids = list(ledger.accepted.values())
    figures: Counter[str] = Counter()
    center = await db.fetch(
        "SELECT external_id, id, station_id FROM dispatch_center.orders WHERE integration_id = $1",
        integration_id,
    )
    per_external = Counter(r["external_id"] for r in center)
    figures["requests accepted"] = len(ledger.accepted)
    figures["lost at center"] = sum(1 for e in ledger.accepted if per_external[e] == 0)
    figures["duplicated at center"] = sum(n - 1 for n in per_external.values() if n > 1)
    figures["center orders never acknowledged to the caller"] = len(
        set(per_external) - set(ledger.accepted)
    )
    routed = {str(r["id"]): r["station_id"] for r in center if r["station_id"]}
    station = await db.fetch(
        "SELECT order_id, station_id FROM station_worker.station_orders"
        " WHERE order_id = ANY($1::uuid[])",
        order_ids,
    )
    at_station = {str(r["order_id"]): r["station_id"] for r in station}
    figures["dispatched orders"] = len(routed)
    figures["lost before a station"] = sum(1 for o, s in routed.items() if at_station.get(o) != s)
    queued_twice = await db.fetchval(
        "SELECT count(*) FROM (SELECT order_id FROM station_worker.order_history"
        " WHERE order_id = ANY($1::uuid[]) AND status = 'dispatched'"
        " GROUP BY order_id HAVING count(*) > 1) d",
        order_ids,
    )
    figures["duplicated station effects"] = queued_twice

    published = await db.fetch(
        """SELECT 'center' AS source, key, event_id, id FROM dispatch_center.outbox
               WHERE key = ANY($1::text[])
           UNION ALL
           SELECT 'station', key, event_id, id FROM station_worker.outbox
               WHERE key = ANY($1::text[])""",
        order_ids,
    )
    trail = await db.fetch(
        "SELECT order_id, event_id, event_type, occurred_at, station_id, seq, event, prev_hash,"
        " hash FROM audit.trail"
        " WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, seq",
        order_ids,
    )
    seq_of = {r["event_id"]: r["seq"] for r in trail}
    recorded = Counter(r["event_id"] for r in trail)
    figures["events published"] = len(published)
    figures["events missing from the audit trail"] = sum(
        1 for p in published if p["event_id"] not in recorded
    )
    figures["events duplicated in the audit trail"] = sum(n - 1 for n in recorded.values())

    # Per order and source, the trail must have applied the events in publication order.
    by_source: dict[tuple[str, str], list[tuple[int, Any]]] = defaultdict(list)
    for p in published:
        by_source[(p["key"], p["source"])].append((p["id"], p["event_id"]))
    out_of_order = 0
    for events in by_source.values():
        seqs = [seq_of[e] for _, e in sorted(events) if e in seq_of]
        out_of_order += seqs != sorted(seqs)
    figures["orders with events applied out of order"] = out_of_order

    broken = set()
    previous: dict[Any, str] = {}
    for r in trail:
        prev = previous.get(r["order_id"], GENESIS)
        decoded = dict(r) | {"event": json.loads(r["event"])}
        if r["prev_hash"] != prev or r["hash"] != row_hash(hmac_key, prev, decoded):
            broken.add(r["order_id"])
        previous[r["order_id"]] = r["hash"]
    figures["broken hash chains"] = len(broken)
    return dict(figures)


async def test_nothing_is_lost_or_doubled_when_services_database_and_broker_fail(
    tmp_path: Path,
) -> None:
    stack = LocalStack(root=tmp_path, ports=Ports.free(), service_env=FAULT_ENV)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        await asyncio.to_thread(stack.start_infra)
        credentials = await stack.prepare()
        for service in SERVICES:
            stack.start_service(service)
        await asyncio.to_thread(stack.wait_ready)

        ledger, faults = Ledger(), Faults()
        started = time.monotonic()
        faults_over = asyncio.Event()
        await asyncio.gather(
            _drive(stack, credentials, ledger, faults_over), _inject(stack, faults, faults_over)
        )
        driven_s = time.monotonic() - started

        assert stack.database_url
        db = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2)
        assert db is not None
        try:
            order_ids = list(ledger.accepted.values())
            converge_started = time.monotonic()
            while not _converged(progress := await _progress(db, order_ids)):
                assert time.monotonic() - converge_started < CONVERGE_S, (
                    f"never converged: {progress}\n{_warnings(stack.logs)}"
                )
                await asyncio.sleep(0.5)
            converged_s = time.monotonic() - converge_started
            key = stack.audit_env()["SWD_AUDIT_HMAC_KEY"].encode()
            figures = await _reconcile(db, ledger, credentials["integration"]["id"], key)
        finally:
            await db.close()

    print(
        f"\nfault injection (seed {SEED}): {ledger.submitted} requests in {driven_s:.0f} s, "
        f"{ledger.retries} client retries, {ledger.server_errors} 5xx other than 503, "
        f"converged {converged_s:.1f} s after the last request"
    )
    for kind, n in sorted(faults.injected.items()):
        print(f"  fault  {kind}: {n}")
    for what, seconds in faults.recovery_s:
        print(f"  recovery  {what}: {seconds:.1f} s")
    for name, value in figures.items():
        print(f"  {name}: {value}")

    assert ledger.abandoned == []
    assert ledger.server_errors == 0
    assert figures["requests accepted"] == ledger.submitted
    for name in (
        "lost at center",
        "duplicated at center",
        "center orders never acknowledged to the caller",
        "lost before a station",
        "duplicated station effects",
        "events missing from the audit trail",
        "events duplicated in the audit trail",
        "orders with events applied out of order",
        "broken hash chains",
    ):
        assert figures[name] == 0, name
