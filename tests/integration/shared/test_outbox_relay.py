"""The outbox relay on its own, in a scratch schema, against the real database and broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from services.audit import store
from shared import outbox
from shared.db import connect
from shared.events import SYSTEM, Envelope, OrderReceived, new_event
from shared.locks import LockNamespace
from shared.migrations import migrate
from shared.settings import KafkaSettings
from tests.conftest import RunningStack
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def test_the_relay_publishes_in_order_keyed_by_order_and_cleans_up(
    stack: RunningStack, tmp_path: Path
) -> None:
    schema = f"relay_{uuid.uuid4().hex[:8]}"
    topic = f"swd.test.relay.{schema}"
    await migrate(stack.database_url, schema, tmp_path)  # the shared outbox/inbox tables only
    conn = await connect(stack.database_url, schema)
    order_id = uuid.uuid4()
    events = _events(order_id, range(1, 6))
    stale = new_event(
        OrderReceived(station_id="s", dispatch_no=99), order_id=uuid.uuid4(), actor=SYSTEM
    )
    async with conn.transaction():
        await outbox.add(conn, topic, stale)
        await conn.execute("UPDATE outbox SET sent_at = now() - interval '2 days'")
        await outbox.add(conn, topic, *events)

    task = asyncio.create_task(_relay(stack, schema, batch_size=2).run())
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"relay-test-{schema}",
    )
    await consumer.start()
    try:
        received: list[tuple[bytes | None, bytes | None]] = []

        async def all_five() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            received.extend((r.key, r.value) for rs in batch.values() for r in rs)
            return len(received) >= 5

        await eventually(all_five)
        assert received == [(str(order_id).encode(), e.to_json().encode()) for e in events]

        async def drained() -> bool:
            unsent = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            remaining = await conn.fetchval("SELECT count(*) FROM outbox")
            return unsent == 0 and remaining == 5  # the stale sent row is gone

        await eventually(drained)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


@pytest.mark.parametrize(
    ("partitions", "partitions_after_loss"),
    [
        (1, 1),
        # Tansu, restarted empty, creates a topic the first time a client asks for it, with its
        # own partition count: the partition the relay last wrote to may be gone altogether.
        (3, 1),
    ],
)
async def test_when_the_broker_loses_what_it_acknowledged_the_recent_outbox_goes_out_again(
    stack: RunningStack, tmp_path: Path, partitions: int, partitions_after_loss: int
) -> None:
    schema = f"relay_{uuid.uuid4().hex[:8]}"
    topic = f"swd.test.replay.{schema}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, partitions, 1)])
    await migrate(stack.database_url, schema, tmp_path)
    conn = await connect(stack.database_url, schema)
    order_id = uuid.uuid4()

    before, (after,) = _events(order_id, range(1, 4)), _events(order_id, range(4, 5))
    await outbox.add(conn, topic, *before)
    task = asyncio.create_task(_relay(stack, schema, batch_size=10).run())
    try:
        assert await eventually(lambda: _read_all(stack, topic, 3)) == [
            e.to_json().encode() for e in before
        ]
        # The broker forgets everything on the topic, as Tansu does when it restarts.
        await admin.delete_topics([topic])
        await asyncio.sleep(0.5)
        await admin.create_topics([NewTopic(topic, partitions_after_loss, 1)])
        await outbox.add(conn, topic, after)
        assert await eventually(lambda: _read_all(stack, topic, 4)) == [
            e.to_json().encode() for e in [*before, after]
        ]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await admin.delete_topics([topic])
        await admin.close()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


def _relay(
    stack: RunningStack,
    schema: str,
    batch_size: int,
    *,
    replay_window: timedelta = timedelta(minutes=5),
    readers: dict[str, list[str]] | None = None,
    leader_timeout_s: float = 60,
) -> outbox.OutboxRelay:
    return outbox.OutboxRelay(
        database_url=stack.database_url,
        schema=schema,
        kafka=KafkaSettings(bootstrap=stack.kafka_bootstrap),
        batch_size=batch_size,
        poll_interval_s=0.1,
        retention=timedelta(days=1),
        replay_window=replay_window,
        readers=readers or {},
        leader_timeout_s=leader_timeout_s,
    )


async def _read_all(stack: RunningStack, topic: str, at_least: int) -> list[bytes] | None:
    """Everything on the topic from the beginning (one order's events: one partition), once
    there are ``at_least`` messages."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        batch = await consumer.getmany(*tps, timeout_ms=300)
        values = [r.value for records in batch.values() for r in records if r.value is not None]
        return values if len(values) >= at_least else None
    finally:
        await consumer.stop()


def _events(order_id: uuid.UUID, numbers: range) -> list[Envelope[OrderReceived]]:
    """The order's events numbered ``numbers``, as the outbox numbers them when they are added
    in that order (outbox.numbered)."""
    return [
        new_event(
            OrderReceived(station_id="s", dispatch_no=n), order_id=order_id, actor=SYSTEM
        ).model_copy(update={"seq": n})
        for n in numbers
    ]


@contextlib.asynccontextmanager
async def _scratch_schema(stack: RunningStack, tmp_path: Path) -> AsyncIterator[tuple[str, Any]]:
    schema = f"relay_{uuid.uuid4().hex[:8]}"
    await migrate(stack.database_url, schema, tmp_path)
    conn = await connect(stack.database_url, schema)
    try:
        yield schema, conn
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


@contextlib.asynccontextmanager
async def _running(relay: outbox.OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_first_batches_to_a_topic_that_did_not_exist_are_not_taken_for_a_loss(
    stack: RunningStack, tmp_path: Path
) -> None:
    # The relay's clients start before its first send creates the topic; nothing else asks for
    # the topic meanwhile, so the relay alone learns that it exists.
    async with _scratch_schema(stack, tmp_path) as (schema, conn):
        topic = f"swd.test.fresh.{schema}"
        events = _events(uuid.uuid4(), range(1, 8))
        await outbox.add(conn, topic, *events)
        async with _running(_relay(stack, schema, batch_size=2)):

            async def drained() -> bool:
                return await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

            await eventually(drained)
            # Loss checks run at least once a second: give a false one time to fire.
            await asyncio.sleep(2 * outbox.LOSS_CHECK_INTERVAL_S)
            replays = REGISTRY.get_sample_value("swd_outbox_replays_total", {"service": schema})
            assert replays is None
            assert await eventually(lambda: _read_all(stack, topic, len(events))) == [
                e.to_json().encode() for e in events
            ]


async def test_after_a_quiet_period_a_broker_loss_replays_what_a_stopped_reader_lacks(
    stack: RunningStack, tmp_path: Path
) -> None:
    """A reader (the audit, say) stops; events go out; all is quiet for longer than the replay
    window; the broker loses everything. The reader, back, still gets every event it lacked."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    async with _scratch_schema(stack, tmp_path) as (schema, conn):
        topic, group = f"swd.test.quiet.{schema}", f"reader-{schema}"
        await admin.create_topics([NewTopic(topic, 1, 1)])
        order_id = uuid.uuid4()
        read, missed = _events(order_id, range(1, 3)), _events(order_id, range(3, 6))
        window = timedelta(seconds=1)
        relay = _relay(stack, schema, batch_size=10, replay_window=window, readers={topic: [group]})
        try:
            async with _running(relay):
                await outbox.add(conn, topic, *read)
                # The reader reads and commits the first events, then stops.
                assert await _read_as(stack, group, topic, len(read)) == _bodies(read)
                await outbox.add(conn, topic, *missed)
                assert await eventually(lambda: _read_all(stack, topic, 5)) == _bodies(
                    [*read, *missed]
                )
                await asyncio.sleep(3 * window.total_seconds())  # quiet, longer than the window
                await admin.delete_topics([topic])
                await asyncio.sleep(0.5)
                await admin.create_topics([NewTopic(topic, 1, 1)])
                # Nothing new is written: the relay notices on its own.
                again = await eventually(lambda: _read_all(stack, topic, len(missed)), 30)
                assert again == _bodies(missed)
        finally:
            await admin.delete_topics([topic])
            await admin.close()


def _bodies(events: list[Envelope[OrderReceived]]) -> list[bytes]:
    return [e.to_json().encode() for e in events]


async def _read_as(stack: RunningStack, group: str, topic: str, count: int) -> list[bytes]:
    """Read ``count`` messages as consumer group ``group`` and commit them."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []

        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            values.extend(r.value for rs in batch.values() for r in rs if r.value is not None)
            return len(values) >= count

        await eventually(enough, 30)
        await consumer.commit()
        return values
    finally:
        await consumer.stop()


async def test_the_relay_leader_lock_and_the_audit_order_locks_have_namespaces_of_their_own(
    stack: RunningStack, tmp_path: Path
) -> None:
    async with _scratch_schema(stack, tmp_path) as (schema, conn):
        relay = _relay(stack, schema, batch_size=10)
        async with _running(relay):

            async def leading() -> bool:
                return relay.is_leader

            await eventually(leading)
            async with conn.transaction():
                await store.lock_orders(conn, [uuid.uuid4()])
                locks = await conn.fetch(
                    """SELECT a.application_name = $1 AS relay, l.classid, l.objsubid
                       FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                       WHERE l.locktype = 'advisory'
                         AND (a.pid = pg_backend_pid() OR a.application_name = $1)""",
                    f"swdispatch-{schema}-relay",
                )
        # Two-key locks (objsubid 2), the first key the namespace.
        assert sorted((r["relay"], r["classid"], r["objsubid"]) for r in locks) == [
            (False, LockNamespace.AUDIT_ORDER, 2),
            (True, LockNamespace.OUTBOX_RELAY, 2),
        ]
        assert LockNamespace.AUDIT_ORDER != LockNamespace.OUTBOX_RELAY


RELAY_PROCESS = """
import asyncio, sys
from datetime import timedelta
from shared.outbox import OutboxRelay
from shared.settings import KafkaSettings
url, schema, bootstrap = sys.argv[1:4]
asyncio.run(OutboxRelay(database_url=url, schema=schema, kafka=KafkaSettings(bootstrap=bootstrap),
    batch_size=10, poll_interval_s=0.1, retention=timedelta(days=1),
    replay_window=timedelta(minutes=5), readers={}, leader_timeout_s=3).run())
"""


async def test_a_leader_that_stops_talking_loses_the_lead_and_another_relay_drains_the_outbox(
    stack: RunningStack, tmp_path: Path
) -> None:
    """A leader whose process hangs (or whose connection goes half-open) keeps its database
    session, and so the leader lock, unless the server ends a session that says nothing."""
    async with _scratch_schema(stack, tmp_path) as (schema, conn):
        topic = f"swd.test.leader.{schema}"
        first, later = _events(uuid.uuid4(), range(1, 3)), _events(uuid.uuid4(), range(1, 3))
        await outbox.add(conn, topic, *first)
        leader = subprocess.Popen(
            [sys.executable, "-c", RELAY_PROCESS, stack.database_url, schema, stack.kafka_bootstrap]
        )
        try:

            async def sent(count: int) -> bool:
                unsent = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                total = await conn.fetchval("SELECT count(*) FROM outbox")
                return unsent == 0 and total == count

            await eventually(lambda: sent(len(first)), 60)
            leader.send_signal(signal.SIGSTOP)
            standby = _relay(stack, schema, batch_size=10, leader_timeout_s=3)
            async with _running(standby):
                await outbox.add(conn, topic, *later)
                started = time.monotonic()
                await eventually(lambda: sent(len(first) + len(later)), 30)
                took = time.monotonic() - started
            assert took < 20, took
        finally:
            leader.send_signal(signal.SIGCONT)
            leader.terminate()
            leader.wait(30)


async def test_two_writers_racing_number_an_orders_events_without_a_gap_or_a_double(
    stack: RunningStack, tmp_path: Path
) -> None:
    async with _scratch_schema(stack, tmp_path) as (schema, conn):
        other = await connect(stack.database_url, schema)
        order_id = uuid.uuid4()
        try:

            async def write(c: Any, n: int) -> None:
                for _ in range(n):
                    async with c.transaction():
                        await outbox.add(c, "swd.test.race", *_events(order_id, range(1, 3)))

            await asyncio.gather(write(conn, 10), write(other, 10))
        finally:
            await other.close()
        bodies = await conn.fetch("SELECT body FROM outbox ORDER BY id")
        numbers = sorted(json.loads(b["body"])["seq"] for b in bodies)
        assert numbers == list(range(1, 41))
