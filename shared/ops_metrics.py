"""Operational gauges faststream does not give: consumer lag, dead-letter topic sizes and
outbox backlog.

Both are measured periodically by background jobs that every service runs. Lag is measured
from outside the consumers, for every swdispatch consumer group (``<consumer>.<topic>``), so a
consumer that is down still shows its lag growing; each replica reports the same figures, so
alerts and dashboards take ``max`` over instances.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge

from shared import topics
from shared.kafka import client_options
from shared.settings import KafkaSettings

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "swd_consumer_lag_messages",
    "Messages on a partition that a consumer group has not committed yet",
    ["consumer_group", "topic", "partition"],
)
DEAD_LETTER_MESSAGES = Gauge(
    "swd_dead_letter_topic_messages",
    "Messages a dead-letter topic holds (end offset minus start offset, over its partitions)",
    ["topic"],
)
OUTBOX_UNSENT = Gauge(
    "swd_outbox_unsent_events", "Outbox events not yet published to Kafka", ["service"]
)
OUTBOX_OLDEST_UNSENT_AGE = Gauge(
    "swd_outbox_oldest_unsent_age_seconds",
    "Age of the oldest outbox event not yet published (0 when none)",
    ["service"],
)


# Every swdispatch consumer group and the topics it reads.
GROUP_TOPICS = {topics.consumer_group(service): read for service, read in topics.READ_BY.items()}


Lag = dict[tuple[str, str, int], int]
"""Messages behind, by (consumer group, topic, partition)."""


class LagProbe:
    """Committed offsets of the swdispatch consumer groups against the partitions' end offsets,
    and how many messages each dead-letter topic holds."""

    def __init__(self, kafka: KafkaSettings) -> None:
        options = client_options(kafka)
        self._admin = AIOKafkaAdminClient(**options, client_id=f"{kafka.client_id}-lag")
        # No group: this consumer only asks for log offsets, it never joins or commits.
        self._offsets = AIOKafkaConsumer(
            **options, client_id=f"{kafka.client_id}-lag", enable_auto_commit=False
        )

    async def __aenter__(self) -> LagProbe:
        await self._admin.start()
        try:
            await self._offsets.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._offsets.stop()
        await self._admin.close()

    async def measure(self, own_groups: Iterable[str] = ()) -> tuple[Lag, dict[str, int]]:
        """Lag of every swdispatch consumer group the broker lists (some brokers list a group
        only once it has committed) and of ``own_groups``, and the size of every dead-letter
        topic."""
        listed = {group_id for group_id, *_ in await self._admin.list_consumer_groups()}
        groups = sorted(
            (group_id, topic)
            for group_id in listed | set(own_groups)
            for topic in GROUP_TOPICS.get(group_id, ())
        )
        existing = set(await self._admin.list_topics())
        dead_letter_topics = [topics.dead_letter(t) for t in topics.ALL]
        wanted = sorted(
            {topic for _, topic in groups} | {t for t in dead_letter_topics if t in existing}
        )
        if not wanted:
            return {}, {}
        partitions = {
            t["topic"]: [TopicPartition(t["topic"], p["partition"]) for p in t["partitions"]]
            for t in await self._admin.describe_topics(wanted)
        }
        every = [tp for tps in partitions.values() for tp in tps]
        ends = await self._offsets.end_offsets(every)
        starts = await self._offsets.beginning_offsets(every)
        lag: Lag = {}
        for group_id, topic in groups:
            committed = await self._admin.list_consumer_group_offsets(
                group_id, partitions=partitions.get(topic, [])
            )
            for tp in partitions.get(topic, []):
                # Nothing committed (-1), or only what retention has deleted since: the group
                # goes on from the earliest retained message.
                offset = committed[tp].offset if tp in committed else -1
                position = max(offset, starts[tp])
                lag[(group_id, topic, tp.partition)] = max(ends[tp] - position, 0)
        dead_letters = {
            topic: sum(ends[tp] - starts[tp] for tp in partitions.get(topic, []))
            for topic in dead_letter_topics
            if topic in existing
        }
        return lag, dead_letters


def publish(lag: Lag, dead_letters: dict[str, int]) -> None:
    CONSUMER_LAG.clear()
    for (group_id, topic, partition), messages in lag.items():
        CONSUMER_LAG.labels(group_id, topic, str(partition)).set(messages)
    for topic, messages in dead_letters.items():
        DEAD_LETTER_MESSAGES.labels(topic).set(messages)


async def report_consumer_lag(runtime: Runtime[Any]) -> None:
    async with LagProbe(runtime.settings.kafka) as probe:
        while True:
            publish(*await probe.measure(runtime.consumer_groups))
            await asyncio.sleep(runtime.settings.ops_metrics_interval_s)


async def report_outbox_backlog(runtime: Runtime[Any]) -> None:
    service = runtime.spec.name
    while True:
        row = await runtime.pool.fetchrow(
            """SELECT count(*) AS unsent,
                      coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest_s
               FROM outbox WHERE sent_at IS NULL"""
        )
        assert row is not None
        OUTBOX_UNSENT.labels(service).set(row["unsent"])
        OUTBOX_OLDEST_UNSENT_AGE.labels(service).set(float(row["oldest_s"]))
        await asyncio.sleep(runtime.settings.ops_metrics_interval_s)


OPS_JOBS = (report_consumer_lag, report_outbox_backlog)
