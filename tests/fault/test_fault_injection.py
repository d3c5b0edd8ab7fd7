"""Fault injection with a loss/duplicate oracle.

The whole stack runs with two replicas of every service, each its own process (own HTTP port,
one consumer group per service, one relay leading per outbox). A steady stream of requests goes
to the intake API, spread over both center replicas, each with a status callback to a loopback
receiver; meanwhile simulated staff accept, assign, start and complete every order through
both station replicas. Replicas are SIGKILLed at random moments (one of a service, or both in
turn), PostgreSQL is crash-restarted once and the broker is restarted once (Tansu keeps
nothing). Then the oracle reconciles the databases and the callbacks against the ledger of
accepted requests: nothing lost, nothing applied twice wherever a second copy could land, the
center and the stations agree on every order's status, every hash chain intact, and no personal
data in any service log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
import uvicorn

from services.audit.domain import GENESIS, row_hash
from shared.db import Connection, Pool
from shared.domain import Category
from shared.kafka import create_topics
from shared.locks import LockNamespace
from shared.settings import KafkaSettings
from swdispatch.demo import random_request
from swdispatch.embedded import free_port
from swdispatch.stack import SERVICES, LocalStack, Ports
from tests.conftest import TEST_SERVICE_ENV
from tests.helpers import assert_no_personal_data_in_logs, eventually, remember_personal_data_of

pytestmark = [pytest.mark.integration, pytest.mark.fault]

SEED = 20261123
REPLICAS = 2
RATE_PER_S = 4
DRIVE_S = 30
CONVERGE_S = 120
STAFF_IN_FLIGHT = 6

FAULT_ENV = TEST_SERVICE_ENV | {
    "SWD_KAFKA_REQUEST_TIMEOUT_MS": "5000",
    "SWD_OUTBOX_POLL_INTERVAL_S": "0.2",
    "SWD_DB_POOL_MIN_SIZE": "1",
    # A callback whose sender was killed mid-POST is retried once its lease (timeout + 30 s)
    # runs out; keep that inside the convergence wait.
    "SWD_CALLBACK_TIMEOUT_S": "2",
    "SWD_CALLBACK_BACKOFF_MAX_S": "2",
}

STAFF_ACTION = {
    "dispatched": "accept",
    "accepted": "assign",
    "assigned": "start",
    "in_service": "complete",
}


@dataclass
class Ledger:
    submitted: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # external_id -> order_id
    server_errors: Counter[str] = field(default_factory=Counter)  # 5xx other than 503
    retries: int = 0
    failovers: int = 0
    """Calls one replica could not answer that the other one did."""
    abandoned: list[str] = field(default_factory=list)


@dataclass
class Staff:
    done: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # "<action> <status>"
    unanswered: int = 0


@dataclass
class Faults:
    injected: Counter[str] = field(default_factory=Counter)
    recovery_s: list[tuple[str, float]] = field(default_factory=list)


async def _call(
    http: httpx.AsyncClient,
    stack: LocalStack,
    service: str,
    method: str,
    path: str,
    ledger: Ledger,
    first: int,
    **kw: Any,
) -> httpx.Response | None:
    """``method path`` on replica ``first``, then on the other when it is down or answers 503;
    None when neither answered."""
    for attempt in range(REPLICAS):
        url = stack.url(service, (first + attempt) % REPLICAS) + path
        try:
            resp = await http.request(method, url, **kw)
        except httpx.TransportError:
            continue
        if resp.status_code == 503:
            continue
        if resp.status_code >= 500:
            ledger.server_errors[f"{method} {service} {resp.status_code}"] += 1
        ledger.failovers += attempt
        return resp
    return None


# --- callbacks ------------------------------------------------------------------------------


@dataclass
class CallbackReceiver:
    """The integration's callback endpoint on loopback: records every POST, answers 200."""

    secret: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (delivery, body)
    bad_signatures: int = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # its sender was killed mid-request: not a delivery
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        timestamp = headers.get("x-swd-timestamp", "")
        mac = hmac.new(self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
        if headers.get("x-swd-signature") != f"sha256={mac.hexdigest()}":
            self.bad_signatures += 1
        self.received.append((headers.get("x-swd-delivery", ""), json.loads(body)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def _serving(app: CallbackReceiver) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started))
    try:
        yield f"http://127.0.0.1:{port}/swd-callbacks"
    finally:
        server.should_exit = True
        await task


# --- traffic --------------------------------------------------------------------------------


async def _submit_until_accepted(
    http: httpx.AsyncClient,
    stack: LocalStack,
    key: str,
    body: dict[str, Any],
    ledger: Ledger,
    first: int,
) -> None:
    deadline = time.monotonic() + DRIVE_S + CONVERGE_S
    while time.monotonic() < deadline:
        resp = await _call(
            http,
            stack,
            "dispatch_center",
            "POST",
            "/v1/requests",
            ledger,
            first,
            json=body,
            headers={"X-API-Key": key},
        )
        if resp is not None and resp.status_code in (200, 201):
            ledger.accepted[body["external_id"]] = resp.json()["order_id"]
            return
        ledger.retries += 1
        await asyncio.sleep(0.3)
    ledger.abandoned.append(body["external_id"])


async def _drive(
    stack: LocalStack,
    credentials: dict[str, Any],
    callback_url: str,
    ledger: Ledger,
    faults_over: asyncio.Event,
) -> None:
    """Requests at a steady rate for at least DRIVE_S and until every fault has recovered,
    so that each fault meets traffic however slow the machine is."""
    rng = random.Random(SEED)
    key = credentials["integration"]["api_key"]
    submissions = set()
    async with httpx.AsyncClient(timeout=10) as http:
        started = time.monotonic()
        while time.monotonic() - started < DRIVE_S or not faults_over.is_set():
            body = random_request(rng) | {"callback_url": callback_url}
            remember_personal_data_of(body)
            first = ledger.submitted % REPLICAS
            ledger.submitted += 1
            submissions.add(
                asyncio.create_task(_submit_until_accepted(http, stack, key, body, ledger, first))
            )
            await asyncio.sleep(1 / RATE_PER_S)
        await asyncio.gather(*submissions)


async def _staff_stations(stack: LocalStack, credentials: dict[str, Any]) -> None:
    """Every station's social workers take every category and up to 100 orders, so staff
    seldom wait for capacity."""
    async with httpx.AsyncClient(timeout=10) as http:
        for station_id, tokens in credentials["stations"].items():
            for worker_id in tokens["social_worker_tokens"]:
                resp = await http.post(
                    f"{stack.url('station_worker')}/v1/stations/{station_id}/workers",
                    json={"worker_id": worker_id, "skills": list(Category), "capacity": 100},
                    headers={"Authorization": f"Bearer {tokens['manager_token']}"},
                )
                assert resp.status_code in (200, 201), resp.text


async def _work_stations(
    stack: LocalStack, credentials: dict[str, Any], ledger: Ledger, staff: Staff
) -> None:
    """Each station's manager looks at the open queue (through either replica) and moves every
    order one step on: accept, assign the first suggested worker, start (as the worker),
    complete. A 409 or an unanswered call is left for the next look, which sees the order as it
    is now. Runs until cancelled."""
    limit = asyncio.Semaphore(STAFF_IN_FLIGHT)
    async with httpx.AsyncClient(timeout=10) as http:
        await asyncio.gather(
            *(
                _work_station(http, stack, station_id, tokens, ledger, staff, limit)
                for station_id, tokens in credentials["stations"].items()
            )
        )


async def _work_station(
    http: httpx.AsyncClient,
    stack: LocalStack,
    station_id: str,
    tokens: dict[str, Any],
    ledger: Ledger,
    staff: Staff,
    limit: asyncio.Semaphore,
) -> None:
    manager = {"Authorization": f"Bearer {tokens['manager_token']}"}
    looks = 0
    while True:
        looks += 1
        queue = await _call(
            http,
            stack,
            "station_worker",
            "GET",
            f"/v1/stations/{station_id}/orders",
            ledger,
            looks,
            params={"limit": 100},
            headers=manager,
        )
        if queue is None or queue.status_code != 200:
            staff.unanswered += 1
        else:
            await asyncio.gather(
                *(
                    _step(http, stack, item, tokens, ledger, staff, limit, looks + i)
                    for i, item in enumerate(queue.json()["orders"])
                    if item["status"] in STAFF_ACTION
                )
            )
        await asyncio.sleep(0.3)


async def _step(
    http: httpx.AsyncClient,
    stack: LocalStack,
    item: dict[str, Any],
    tokens: dict[str, Any],
    ledger: Ledger,
    staff: Staff,
    limit: asyncio.Semaphore,
    first: int,
) -> None:
    order_id, action = item["order_id"], STAFF_ACTION[item["status"]]
    headers = {"Authorization": f"Bearer {tokens['manager_token']}"}
    body: dict[str, Any] | None = None
    async with limit:
        if action == "assign":
            suggested = await _call(
                http,
                stack,
                "station_worker",
                "GET",
                f"/v1/orders/{order_id}/suggested-workers",
                ledger,
                first,
                headers=headers,
            )
            if suggested is None or suggested.status_code != 200 or not suggested.json():
                staff.refused["suggested-workers"] += 1
                return
            body = {"worker_id": suggested.json()[0]["worker_id"]}
        elif action in ("start", "complete"):
            headers = {
                "Authorization": f"Bearer {tokens['social_worker_tokens'][item['worker_id']]}"
            }
            if action == "complete":
                body = {
                    "outcome": "served",
                    "service_minutes": 30,
                    "summary": "Home visit; needs met for now.",
                    "follow_up_needed": False,
                }
        resp = await _call(
            http,
            stack,
            "station_worker",
            "POST",
            f"/v1/orders/{order_id}/{action}",
            ledger,
            first,
            headers=headers,
            json=body,
        )
    if resp is None:
        staff.unanswered += 1
    elif resp.status_code == 200:
        staff.done[action] += 1
    else:
        staff.refused[f"{action} {resp.status_code}"] += 1


# --- faults ---------------------------------------------------------------------------------


async def _relay_leader(stack: LocalStack, service: str) -> int | None:
    """The replica whose outbox relay holds the advisory lock (``shared/outbox.py``), found by
    the lock holder's client port; None when none holds it (audit has no relay)."""
    db = await asyncpg.connect(stack.database_url)
    try:
        port = await db.fetchval(
            """SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.classid = $2 AND l.objid = hashtext($1)::oid""",
            service,
            int(LockNamespace.OUTBOX_RELAY),
        )
    finally:
        await db.close()
    for replica in range(REPLICAS):
        process = stack.processes.get(stack.instance(service, replica))
        if port is not None and process is not None:
            with contextlib.suppress(psutil.Error):
                sockets = psutil.Process(process.pid).net_connections("tcp")
                if any(c.laddr and c.laddr.port == port for c in sockets):
                    return replica
    return None


async def _kill_and_restart(
    stack: LocalStack, service: str, replicas: list[int], faults: Faults
) -> asyncio.Task[None]:
    """SIGKILL the ``replicas`` of ``service`` one after the other and restart them; return
    the task that waits until they are ready again (the next fault need not wait for it). A
    single kill takes the replica whose relay leads, so the other one's must take over."""
    leader = await _relay_leader(stack, service)
    if len(replicas) == 1 and leader is not None:
        replicas = [leader]
    what = (
        f"SIGKILL {service} replica {replicas[0]}"
        if len(replicas) == 1
        else f"SIGKILL both {service} replicas in turn"
    )
    if leader is not None:
        what += f" (relay leader: replica {leader})"
    killed = time.monotonic()
    for replica in replicas:
        stack.stop_service(service, signal.SIGKILL, replica)
        await asyncio.sleep(0.5)
    faults.injected[what] += 1
    for replica in replicas:
        stack.start_service(service, replica)

    async def recovered() -> None:
        await asyncio.to_thread(stack.wait_ready, (service,), 90, replicas)
        faults.recovery_s.append((f"{service} ready after {what}", time.monotonic() - killed))

    return asyncio.create_task(recovered())


async def _restart_postgres(stack: LocalStack, faults: Faults) -> None:
    assert stack.postgres is not None
    stopped = time.monotonic()
    await asyncio.to_thread(stack.postgres.stop, "immediate")
    faults.injected["PostgreSQL restart"] += 1
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.postgres.start)
    await asyncio.to_thread(stack.wait_ready, SERVICES, 90, range(REPLICAS))
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
    # One service loses both replicas in turn, the others one replica each.
    both = rng.choice(SERVICES)
    plan: list[tuple[str, str | None, list[int]]] = [
        (
            "kill",
            service,
            rng.sample(range(REPLICAS), REPLICAS) if service == both else [rng.randrange(REPLICAS)],
        )
        for service in SERVICES
    ]
    rng.shuffle(plan)
    plan.insert(rng.randint(1, len(plan) - 1), ("postgres", None, []))
    plan.insert(rng.randint(1, len(plan) - 1), ("broker", None, []))
    gap = (DRIVE_S - 4) / len(plan)
    restarting: list[asyncio.Task[None]] = []
    for kind, service, replicas in plan:
        await asyncio.sleep(rng.uniform(0.2, gap * 0.6))
        if kind == "kill":
            assert service is not None
            restarting.append(await _kill_and_restart(stack, service, replicas, faults))
            continue
        # Replicas still starting first: one that meets a database or broker outage while it
        # starts is the start-up's test, not this one's.
        await asyncio.gather(*restarting)
        if kind == "postgres":
            await _restart_postgres(stack, faults)
        else:
            await _restart_broker(stack, faults)
    await asyncio.gather(*restarting)
    await asyncio.sleep(2)  # traffic after the last recovery, too
    over.set()


# --- oracle ---------------------------------------------------------------------------------


async def _progress(
    db: asyncpg.Pool, order_ids: list[str], receiver: CallbackReceiver
) -> dict[str, int]:
    row = await db.fetchrow(
        """SELECT
             (SELECT count(*) FROM dispatch_center.orders
                WHERE id = ANY($1::uuid[]) AND status = 'awaiting_feedback') AS center_completed,
             (SELECT count(*) FROM station_worker.station_orders
                WHERE order_id = ANY($1::uuid[]) AND status = 'completed') AS station_completed,
             (SELECT count(*) FROM dispatch_center.outbox WHERE sent_at IS NULL)
               + (SELECT count(*) FROM station_worker.outbox WHERE sent_at IS NULL) AS unsent,
             (SELECT count(*) FROM dispatch_center.outbox WHERE key = ANY($2::text[]))
               + (SELECT count(*) FROM station_worker.outbox WHERE key = ANY($2::text[]))
               AS published,
             (SELECT count(*) FROM audit.trail WHERE order_id = ANY($1::uuid[])) AS trail,
             (SELECT count(*) FROM dispatch_center.callbacks
                WHERE order_id = ANY($1::uuid[]) AND delivered_at IS NULL) AS undelivered""",
        order_ids,
        order_ids,
    )
    assert row is not None
    return {
        "orders": len(order_ids),
        "completed at center": row["center_completed"],
        "completed at stations": row["station_completed"],
        "unsent outbox rows": row["unsent"],
        "events published": row["published"],
        "in the trail": row["trail"],
        "callbacks undelivered": row["undelivered"],
        "callbacks received": len(receiver.received),
    }


def _as_the_station_has_it(center_status: str) -> str:
    """A completed order waits for its return visit at the center; the station has it as
    completed."""
    return "completed" if center_status == "awaiting_feedback" else center_status


def _converged(progress: dict[str, int]) -> bool:
    return (
        progress["completed at center"] == progress["orders"]
        and progress["completed at stations"] == progress["orders"]
        and progress["unsent outbox rows"] == 0
        and progress["in the trail"] >= progress["events published"]
        and progress["callbacks undelivered"] == 0
    )


def _warnings(logs: Path) -> str:
    lines = [
        f"{log.name}: {line[:200]}"
        for log in sorted(logs.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if " WARNING " in line or " ERROR " in line
    ]
    return "\n".join(lines[-40:])


# Where a redelivered event or a repeated action could leave a second copy of one effect. In
# this test no order visits a station twice (staff never reject and accept in time), so each
# (order, status, station) happens at most once.
DUPLICATED_EFFECTS = {
    "center timeline entries recorded twice": """
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM dispatch_center.order_timeline
            WHERE order_id = ANY($1::uuid[]) GROUP BY order_id, status, station_id) t""",
    "status callbacks queued twice": """
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM dispatch_center.callbacks
            WHERE order_id = ANY($1::uuid[])
            GROUP BY order_id, body::jsonb ->> 'status', body::jsonb ->> 'station_id') c""",
    "station history entries recorded twice": """
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM station_worker.order_history
            WHERE order_id = ANY($1::uuid[]) GROUP BY order_id, station_id, status) h""",
    # A dispatch is acknowledged again when re-sent (order.received) and a re-send is an event
    # of its own (resend_of); any other status change is one event.
    "status changes twice in the audit trail": """
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM audit.trail
            WHERE order_id = ANY($1::uuid[]) AND event_type <> 'order.received'
              AND event -> 'payload' ->> 'resend_of' IS NULL
            GROUP BY order_id, event_type, station_id,
                event -> 'payload' ->> 'dispatch_no') a""",
}


async def _duplicated_effects(conn: Pool | Connection, order_ids: list[str]) -> dict[str, int]:
    return {name: await conn.fetchval(sql, order_ids) for name, sql in DUPLICATED_EFFECTS.items()}


async def _assert_duplicates_would_be_counted(db: asyncpg.Pool, order_id: str) -> None:
    """The counting queries see a second copy in each place (fabricated, rolled back)."""
    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(
                """INSERT INTO dispatch_center.order_timeline
                       (order_id, status, station_id, at, reason, actor)
                   SELECT order_id, status, station_id, at, reason, actor
                   FROM dispatch_center.order_timeline
                   WHERE order_id = $1 AND status = 'accepted'""",
                order_id,
            )
            await conn.execute(
                """INSERT INTO dispatch_center.callbacks (order_id, integration_id, url, body)
                   SELECT order_id, integration_id, url, body FROM dispatch_center.callbacks
                   WHERE order_id = $1 AND body::jsonb ->> 'status' = 'accepted'""",
                order_id,
            )
            await conn.execute(
                """INSERT INTO station_worker.order_history
                       (order_id, station_id, status, at, actor, note)
                   SELECT order_id, station_id, status, at, actor, note
                   FROM station_worker.order_history WHERE order_id = $1 AND status = 'accepted'""",
                order_id,
            )
            await conn.execute(
                """INSERT INTO audit.trail (order_id, event_id, event_type, occurred_at,
                       station_id, event, prev_hash, hash, hash_version)
                   SELECT order_id, gen_random_uuid(), event_type, occurred_at, station_id, event,
                       prev_hash, hash, hash_version
                   FROM audit.trail WHERE order_id = $1 AND event_type = 'order.accepted'""",
                order_id,
            )
            seen = await _duplicated_effects(conn, [order_id])
        finally:
            await tx.rollback()
    assert seen == dict.fromkeys(DUPLICATED_EFFECTS, 1), seen


async def _reconcile(
    db: asyncpg.Pool,
    ledger: Ledger,
    integration_id: str,
    receiver: CallbackReceiver,
    hmac_key: bytes,
) -> dict[str, int]:
    order_ids = list(ledger.accepted.values())
    figures: dict[str, int] = {}
    center = await db.fetch(
        "SELECT external_id, id, status, station_id, dispatch_no FROM dispatch_center.orders"
        " WHERE integration_id = $1",
        integration_id,
    )
    per_external = Counter(r["external_id"] for r in center)
    figures["requests accepted"] = len(ledger.accepted)
    figures["lost at center"] = sum(1 for e in ledger.accepted if per_external[e] == 0)
    figures["duplicated at center"] = sum(n - 1 for n in per_external.values() if n > 1)
    figures["center orders never acknowledged to the caller"] = len(
        set(per_external) - set(ledger.accepted)
    )
    station = await db.fetch(
        "SELECT order_id, status, station_id, dispatch_no FROM station_worker.station_orders"
        " WHERE order_id = ANY($1::uuid[])",
        order_ids,
    )
    at_station = {str(r["order_id"]): r for r in station}
    routed = [r for r in center if r["station_id"]]
    figures["dispatched orders"] = len(routed)
    figures["lost before a station"] = sum(
        1
        for r in routed
        if str(r["id"]) not in at_station
        or at_station[str(r["id"])]["station_id"] != r["station_id"]
    )
    figures["orders whose center and station status disagree"] = sum(
        1
        for r in routed
        if (s := at_station.get(str(r["id"]))) is None
        or (s["status"], s["station_id"], s["dispatch_no"])
        != (_as_the_station_has_it(r["status"]), r["station_id"], r["dispatch_no"])
    )
    figures["orders not completed"] = sum(1 for r in center if r["status"] != "awaiting_feedback")
    figures |= await _duplicated_effects(db, order_ids)

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
    figures["events published"] = len(published)
    figures["events missing from the audit trail"] = sum(
        1 for p in published if p["event_id"] not in seq_of
    )

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

    figures |= _callback_figures(
        await db.fetch(
            "SELECT order_id, id FROM dispatch_center.order_timeline"
            " WHERE order_id = ANY($1::uuid[])",
            order_ids,
        ),
        receiver,
    )
    return figures


def _callback_figures(timeline: list[asyncpg.Record], receiver: CallbackReceiver) -> dict[str, int]:
    """What the integration saw: one callback per timeline entry, in order; a retry of one
    delivery (same X-SWD-Delivery, e.g. its sender killed before it recorded the answer) is
    the receiver's to drop, a second delivery of one status change is not."""
    sequences: set[tuple[str, int]] = set()
    deliveries: dict[tuple[str, str, str | None], set[str]] = defaultdict(set)
    first_seen: dict[str, list[int]] = defaultdict(list)
    for delivery, body in receiver.received:
        if (body["order_id"], body["sequence"]) not in sequences:
            sequences.add((body["order_id"], body["sequence"]))
            first_seen[body["order_id"]].append(body["sequence"])
        deliveries[(body["order_id"], body["status"], body["station_id"])].add(delivery)
    expected = {(str(r["order_id"]), r["id"]) for r in timeline}
    return {
        "status changes never called back": len(expected - sequences),
        "status changes called back under two deliveries": sum(
            1 for ids in deliveries.values() if len(ids) > 1
        ),
        "orders whose callbacks arrived out of order": sum(
            1 for seqs in first_seen.values() if seqs != sorted(seqs)
        ),
        "callbacks with a bad signature": receiver.bad_signatures,
        "callback retries of one delivery (receiver dedupes)": len(receiver.received)
        - len(sequences),
    }


MUST_BE_ZERO = (
    "lost at center",
    "duplicated at center",
    "center orders never acknowledged to the caller",
    "lost before a station",
    "orders whose center and station status disagree",
    "orders not completed",
    *DUPLICATED_EFFECTS,
    "events missing from the audit trail",
    "orders with events applied out of order",
    "broken hash chains",
    "status changes never called back",
    "status changes called back under two deliveries",
    "orders whose callbacks arrived out of order",
    "callbacks with a bad signature",
)


async def test_nothing_is_lost_or_doubled_when_replicas_database_and_broker_fail(
    tmp_path: Path,
) -> None:
    stack = LocalStack(root=tmp_path, ports=Ports.free(), service_env=FAULT_ENV)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        await asyncio.to_thread(stack.start_infra)
        credentials = await stack.prepare()
        for service in SERVICES:
            for replica in range(REPLICAS):
                stack.start_service(service, replica)
        await asyncio.to_thread(stack.wait_ready, SERVICES, 60, range(REPLICAS))

        await _staff_stations(stack, credentials)
        receiver = CallbackReceiver(credentials["integration"]["callback_secret"])
        ledger, staff, faults = Ledger(), Staff(), Faults()
        async with _serving(receiver) as callback_url:
            working = asyncio.create_task(_work_stations(stack, credentials, ledger, staff))
            try:
                started = time.monotonic()
                faults_over = asyncio.Event()
                await asyncio.gather(
                    _drive(stack, credentials, callback_url, ledger, faults_over),
                    _inject(stack, faults, faults_over),
                )
                driven_s = time.monotonic() - started
                assert stack.database_url
                async with asyncpg.create_pool(stack.database_url, min_size=1, max_size=2) as db:
                    order_ids = list(ledger.accepted.values())
                    while not _converged(progress := await _progress(db, order_ids, receiver)):
                        if time.monotonic() - started - driven_s > CONVERGE_S:
                            break
                        await asyncio.sleep(0.5)
                    converged_s = time.monotonic() - started - driven_s
                    working.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await working
                    await asyncio.sleep(1)  # a callback still on its way
                    integration_id = credentials["integration"]["id"]
                    key = stack.audit_env()["SWD_AUDIT_HMAC_KEY"].encode()
                    figures = await _reconcile(db, ledger, integration_id, receiver, key)
                    await _assert_duplicates_would_be_counted(db, order_ids[0])
            finally:
                working.cancel()
            warnings = _warnings(stack.logs)

    print(
        f"\nfault injection (seed {SEED}, {REPLICAS} replicas of each service): "
        f"{ledger.submitted} requests in {driven_s:.0f} s, {ledger.retries} client retries, "
        f"{ledger.failovers} calls answered by the other replica, "
        f"converged {converged_s:.1f} s after the last request"
    )
    print(
        f"  staff actions done: {dict(staff.done)}; refused (stale view, retried): "
        f"{dict(staff.refused)}; unanswered: {staff.unanswered}"
    )
    for kind, n in sorted(faults.injected.items()):
        print(f"  fault  {kind}: {n}")
    for what, seconds in faults.recovery_s:
        print(f"  recovery  {what}: {seconds:.1f} s")
    for name, value in figures.items():
        print(f"  {name}: {value}")

    assert _converged(progress), f"never converged: {progress}\n{warnings}"
    assert_no_personal_data_in_logs(stack.logs)
    assert ledger.abandoned == []
    assert not ledger.server_errors, ledger.server_errors
    assert figures["requests accepted"] == ledger.submitted
    failed = {name: figures[name] for name in MUST_BE_ZERO if figures[name] != 0}
    assert not failed, failed
