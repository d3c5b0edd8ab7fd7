"""The outbox relay on its own, in a scratch schema, against the real database and broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared import outbox
from shared.events import SYSTEM, Envelope, OrderReceived, new_event
from shared.migrations import migrate
from shared.settings import KafkaSettings
from tests.conftest import RunningStack
from tests.helpers import eventually

pytestmark = pytest.mark.integration

TOPIC = "swd.test.relay"


async def test_the_relay_publishes_in_order_keyed_by_order_and_cleans_up(
    stack: RunningStack, tmp_path: Path
) -> None:
    schema = f"relay_{uuid.uuid4().hex[:8]}"
    await migrate(stack.database_url, schema, tmp_path)  # the shared outbox/inbox tables only
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": schema})
    order_id = uuid.uuid4()
    events = [
        new_event(OrderReceived(station_id="s", dispatch_no=n), order_id=order_id, actor=SYSTEM)
        for n in range(1, 6)
    ]
    stale = new_event(
        OrderReceived(station_id="s", dispatch_no=99), order_id=uuid.uuid4(), actor=SYSTEM
    )
    async with conn.transaction():
        await outbox.add(conn, TOPIC, stale)
        await conn.execute("UPDATE outbox SET sent_at = now() - interval '2 days'")
        await outbox.add(conn, TOPIC, *events)

    task = asyncio.create_task(_relay(stack, schema, batch_size=2).run())
    consumer = AIOKafkaConsumer(
        TOPIC,
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
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": schema})
    order_id = uuid.uuid4()

    def event(n: int) -> Envelope[OrderReceived]:
        return new_event(
            OrderReceived(station_id="s", dispatch_no=n), order_id=order_id, actor=SYSTEM
        )

    before, after = [event(n) for n in (1, 2, 3)], event(4)
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


def _relay(stack: RunningStack, schema: str, batch_size: int) -> outbox.OutboxRelay:
    return outbox.OutboxRelay(
        database_url=stack.database_url,
        schema=schema,
        kafka=KafkaSettings(bootstrap=stack.kafka_bootstrap),
        batch_size=batch_size,
        poll_interval_s=0.1,
        retention=timedelta(days=1),
        replay_window=timedelta(minutes=5),
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
