"""The dead-letter topics, read: what a consumer could not decode or apply, with the reason
and where it came from in its headers (shared/consumer.py writes them). ``swdispatch dlq``
lists, shows and replays them; the audit's verify looks there for an event it never got."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import topics
from shared.kafka import client_options
from shared.settings import KafkaSettings


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("swd-dlq-reason", "")

    @property
    def original(self) -> tuple[str, int, int] | None:
        """(topic, partition, offset) the message was first published at, when known."""
        try:
            return (
                self.headers["swd-original-topic"],
                int(self.headers["swd-original-partition"]),
                int(self.headers["swd-original-offset"]),
            )
        except (KeyError, ValueError):
            return None

    @property
    def at(self) -> str:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Selection:
    """Which dead letters: of these original topics, with this reason, in this offset range
    of the dead-letter topic (inclusive)."""

    topics: tuple[str, ...] = topics.ALL
    reason: str | None = None
    partition: int | None = None
    from_offset: int = 0
    to_offset: int | None = None

    def wants(self, letter: DeadLetter) -> bool:
        return (
            (self.reason is None or letter.reason == self.reason)
            and (self.partition is None or letter.partition == self.partition)
            and letter.offset >= self.from_offset
            and (self.to_offset is None or letter.offset <= self.to_offset)
        )


async def read(kafka: KafkaSettings, selection: Selection) -> list[DeadLetter]:
    """The selected dead letters, in offset order per dead-letter topic partition."""
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        client_id=f"{kafka.client_id}-dlq",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=2 * kafka.max_event_bytes,
    )
    await consumer.start()
    try:
        existing = await consumer.topics()
        dlqs = [
            topics.dead_letter(t) for t in selection.topics if topics.dead_letter(t) in existing
        ]
        partitions = [
            TopicPartition(dlq, p) for dlq in dlqs for p in consumer.partitions_for_topic(dlq) or ()
        ]
        if selection.partition is not None:
            partitions = [tp for tp in partitions if tp.partition == selection.partition]
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, selection.from_offset)
        letters: list[DeadLetter] = []
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for record in (r for records in batch.values() for r in records):
                letter = DeadLetter(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    timestamp_ms=record.timestamp,
                    key=record.key,
                    value=record.value or b"",
                    headers={k: v.decode("utf-8", "replace") for k, v in record.headers},
                )
                if selection.wants(letter):
                    letters.append(letter)
            positions = [await consumer.position(tp) for tp in partitions]
            past_range = selection.to_offset is not None and min(positions) > selection.to_offset
            # An empty fetch past the end offsets read at the start: all read (some brokers
            # report a low end offset, so the empty fetch decides).
            at_end = not batch and all(
                position >= ends[tp] for tp, position in zip(partitions, positions, strict=True)
            )
            if past_range or at_end:
                break
        return sorted(letters, key=lambda d: (d.topic, d.partition, d.offset))
    finally:
        await consumer.stop()
