"""A real Prometheus (Debian's package) scrapes the running stack; the test queries it over its
HTTP API and checks the figures against what the test drove."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.audit.jobs import DURATION_BUCKETS
from shared import topics
from shared.locks import LockNamespace
from swdispatch.embedded import free_port
from tests.conftest import RunningStack
from tests.debian import debian_tool
from tests.factories.audit import OrderScript
from tests.helpers import eventually, get_json_when
from tests.integration.pipeline.test_walking_skeleton import _dispatched_event

pytestmark = pytest.mark.integration

ALERT_RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"
STATION_GROUP = topics.consumer_group("station_worker")
CENTER_DLQ = topics.dead_letter(topics.CENTER_EVENTS)


@pytest.fixture(scope="module")
def prometheus(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = debian_tool("prometheus", "prometheus")
    root = tmp_path_factory.mktemp("prometheus")
    targets = "\n".join(
        f"""  - job_name: {service}
    static_configs:
      - targets: ['{urlsplit(url).netloc}']"""
        for service, url in stack.urls.items()
    )
    config = root / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ALERT_RULES}']\n"
        f"scrape_configs:\n{targets}\n"
    )
    port = free_port()
    with (root / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"prometheus exited; see {root / 'prometheus.log'}"
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def query(http: httpx.AsyncClient, prometheus: str, promql: str) -> float | None:
    """The single value of an instant query, or None when it has no result."""
    resp = await http.get(f"{prometheus}/api/v1/query", params={"query": promql})
    assert resp.status_code == 200, resp.text
    result = resp.json()["data"]["result"]
    assert len(result) <= 1, f"{promql} returned {len(result)} series"
    return float(result[0]["value"][1]) if result else None


async def value_becomes(
    http: httpx.AsyncClient, prometheus: str, promql: str, expected: float, timeout_s: float = 20
) -> None:
    last: list[float | None] = [None]

    async def probe() -> bool:
        last[0] = await query(http, prometheus, promql)
        return last[0] is not None and round(last[0], 6) == round(expected, 6)

    try:
        await eventually(probe, timeout_s, every_s=0.5)
    except AssertionError:
        raise AssertionError(f"{promql} is {last[0]}, expected {expected}") from None


async def test_prometheus_sees_the_lag_of_a_stopped_consumer_and_the_dead_letters(
    stack: RunningStack, http: httpx.AsyncClient, prometheus: str
) -> None:
    lag = f'sum(max by (partition) (swd_consumer_lag_messages{{consumer_group="{STATION_GROUP}"}}))'
    dead_letters = f'max(swd_dead_letter_topic_messages{{topic="{CENTER_DLQ}"}})'
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        # One record per request: Tansu 0.6 reports a partition's end offset as the last
        # batch's base offset + 1, so batched records would be under-counted there.
        async def send_dispatched() -> uuid.UUID:
            order_id, raw = _dispatched_event("st-liuhe")
            await producer.send_and_wait(topics.CENTER_EVENTS, raw, key=order_id.bytes)
            return order_id

        # The station worker's group has committed (Tansu lists a group only from then on).
        first = await send_dispatched()
        await get_json_when(
            http,
            f"{stack.urls['station_worker']}/v1/orders/{first}",
            {"Authorization": f"Bearer {stack.manager_token('st-liuhe')}"},
        )
        await value_becomes(http, prometheus, lag, 0)
        dead_before = await query(http, prometheus, dead_letters)
        assert dead_before is not None

        stack.local.stop_service("station_worker")
        try:
            for _ in range(4):
                await send_dispatched()
            await producer.send_and_wait(topics.CENTER_EVENTS, b"not an event", key=b"garbage")
            # The center and the audit, still up, report the stopped consumer group's lag.
            await value_becomes(http, prometheus, lag, 5)
        finally:
            stack.local.start_service("station_worker")
            stack.local.wait_ready(("station_worker",))
    finally:
        await producer.stop()
    await value_becomes(http, prometheus, lag, 0, timeout_s=30)
    # The audit and the station worker each dead-lettered the garbage once.
    await value_becomes(http, prometheus, dead_letters, dead_before + 2)


async def test_a_stuck_outbox_shows_as_backlog_and_raises_its_alert(
    stack: RunningStack, http: httpx.AsyncClient, prometheus: str, db: asyncpg.Pool
) -> None:
    unsent = 'max(swd_outbox_unsent_events{service="audit"})'
    oldest = 'max(swd_outbox_oldest_unsent_age_seconds{service="audit"})'
    await value_becomes(http, prometheus, unsent, 0)
    async with db.acquire() as conn:
        # Take the audit relay's lock away from it, as a hung replica holding it would.
        await conn.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_locks
               WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
                 AND objsubid = 2 AND classid = $1 AND objid = hashtext('audit')::oid""",
            LockNamespace.OUTBOX_RELAY,
        )
        await conn.execute(
            "SELECT pg_advisory_lock($1, hashtext('audit'))", LockNamespace.OUTBOX_RELAY
        )
        try:
            await conn.execute(
                """INSERT INTO audit.outbox (event_id, topic, key, event_type, body, created_at)
                   VALUES (gen_random_uuid(), 'swd.test.never-sent', 'k', 'test', '{}',
                           now() - interval '10 minutes')"""
            )
            try:
                await value_becomes(http, prometheus, unsent, 1)
                age = await query(http, prometheus, oldest)
                assert age is not None
                assert 600 <= age < 700
                await value_becomes(
                    http,
                    prometheus,
                    'count(ALERTS{alertname="OutboxBacklogStale", service="audit"})',
                    1,
                )
            finally:
                await conn.execute("DELETE FROM audit.outbox WHERE topic = 'swd.test.never-sent'")
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock($1, hashtext('audit'))", LockNamespace.OUTBOX_RELAY
            )
    await value_becomes(http, prometheus, unsent, 0)
    await value_becomes(http, prometheus, oldest, 0)


def bucket_quantile(q: float, observations: list[float], bounds: tuple[float, ...]) -> float:
    """The q-quantile Prometheus interpolates from a histogram of ``observations``."""
    cumulative = [sum(o <= b for o in observations) for b in bounds]
    rank = q * len(observations)
    for i, count in enumerate(cumulative):
        if count >= rank:
            lower, below = (bounds[i - 1], cumulative[i - 1]) if i else (0.0, 0)
            return lower + (bounds[i] - lower) * (rank - below) / (count - below)
    raise AssertionError("observations beyond the last finite bucket")


async def test_prometheus_sees_the_lifecycle_counter_and_stage_durations_the_test_drove(
    stack: RunningStack, http: httpx.AsyncClient, prometheus: str
) -> None:
    before = time.time()
    # Four routine orders, dispatched to st-liuhe 20, 40, 100 and 200 minutes after submission.
    minutes = [20.0, 40.0, 100.0, 200.0]
    scripts = [
        OrderScript(datetime.now(UTC) - timedelta(hours=4)).submitted().dispatched("st-liuhe", m)
        for m in minutes
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for script in scripts:
            for topic, event in script.events:
                await producer.send_and_wait(
                    topic, event.to_json().encode(), key=str(event.order_id).encode()
                )
    finally:
        await producer.stop()

    dispatched = (
        'swd_lifecycle_events_total{event_type="order.dispatched",urgency="routine",'
        'station="st-liuhe"}'
    )
    await value_becomes(
        http,
        prometheus,
        f"sum({dispatched}) - (sum({dispatched} @ {before}) or vector(0))",
        len(scripts),
    )
    buckets = 'swd_stage_duration_seconds_bucket{stage="dispatch",urgency="routine"}'
    # Only this test's observations: the buckets now minus the buckets before it.
    added = (
        f"sum by (le) ({buckets}) - "
        f"(sum by (le) ({buckets} @ {before}) or sum by (le) ({buckets}) * 0)"
    )
    seconds = [m * 60 for m in minutes]
    for q in (0.5, 0.9):
        expected = bucket_quantile(q, seconds, DURATION_BUCKETS)
        await value_becomes(http, prometheus, f"histogram_quantile({q}, {added})", expected)


async def test_every_service_is_up_for_prometheus(
    stack: RunningStack, http: httpx.AsyncClient, prometheus: str
) -> None:
    await value_becomes(http, prometheus, "sum(up)", 3)
    rules = (await http.get(f"{prometheus}/api/v1/rules")).json()["data"]["groups"]
    assert rules, "the alert rules were not loaded"
    assert all(rule["health"] == "ok" for group in rules for rule in group["rules"])
