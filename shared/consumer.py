"""Event consumers: decode, dead-letter what cannot be decoded, apply the rest exactly once.

Each fetched batch of messages is applied in one database transaction, every event together
with its inbox record; the offsets are committed only after that commit
(``AckPolicy.NACK_ON_ERROR``: on an unhandled error the consumer seeks back and the messages
come again). A transient failure (database down) is
retried with backoff and never skipped. A message that is not a known event, or that the
handler keeps failing on, goes to ``<topic>.dlq`` with headers naming the reason and where it
came from, and the partition moves on.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import Counter

from shared import inbox
from shared.db import Connection, Pool, is_transient
from shared.events import Envelope, EventPayload, UndecodableEvent, decode
from shared.kafka import consumer_options
from shared.settings import KafkaSettings
from shared.topics import REPLAYED_FROM_HEADER, consumer_group, dead_letter

log = logging.getLogger(__name__)

Handler = Callable[[Connection, Envelope[Any]], Awaitable[None]]


class Applier(Protocol):
    """How a consumer applies the events it handles, inside the transaction that claims them."""

    def handles(self, event_type: str) -> bool: ...

    async def apply(self, conn: Connection, events: list[Envelope[Any]]) -> None:
        """Apply ``events`` (none applied before), in the order they came."""


class PerEvent:
    """Each event by the handler of its payload type."""

    def __init__(self, handlers: Mapping[type[EventPayload], Handler]) -> None:
        self._handlers = {cls.event_type: h for cls, h in handlers.items()}

    def handles(self, event_type: str) -> bool:
        return event_type in self._handlers

    async def apply(self, conn: Connection, events: list[Envelope[Any]]) -> None:
        for event in events:
            await self._handlers[event.type](conn, event)


HANDLER_ATTEMPTS = 3
MAX_BACKOFF_S = 5.0

APPLIED = Counter(
    "swd_consumer_events_total",
    "Events a consumer took from Kafka, by outcome (applied, duplicate, ignored, dead_lettered)",
    ["consumer", "event_type", "outcome"],
)
BATCH_FALLBACKS = Counter(
    "swd_consumer_batch_fallbacks_total",
    "Fetched batches rolled back and applied again one event at a time, by the error that"
    " failed the batch (a deadlock, the database going away, an event a handler rejects)",
    ["consumer", "error"],
)
REDRIVEN = Counter(
    "swd_consumer_redriven_messages_total",
    "Re-driven dead letters a consumer took from Kafka (`swdispatch dlq replay`), by topic",
    ["consumer", "topic"],
)
DEAD_LETTERED = Counter(
    "swd_dead_letter_events_total", "Messages sent to a dead-letter topic", ["topic", "reason"]
)


@dataclass(kw_only=True)
class EventConsumer:
    """Applies the events of ``topics`` that ``applier`` handles, as consumer ``name``."""

    name: str
    topics: tuple[str, ...]
    pool: Pool
    broker: KafkaBroker
    applier: Applier
    max_event_bytes: int

    @property
    def group_id(self) -> str:
        return consumer_group(self.name)

    async def consume(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply one fetched batch of records (faststream's batch subscriber, given the raw
        records by :func:`raw_records`).

        The batch's events are applied in one transaction with their inbox records, in the
        order they came (per partition, the order they were published). When anything in it
        fails, the transaction rolls back and the events are applied one at a time, each in its
        own transaction, which retries transient failures and dead-letters the one that keeps
        failing.
        """
        batch: list[tuple[ConsumerRecord[bytes, bytes], Envelope[Any]]] = []
        for record in records:
            if any(key == REPLAYED_FROM_HEADER for key, _ in record.headers or ()):
                REDRIVEN.labels(self.name, record.topic).inc()
            body = record.value or b""
            if len(body) > self.max_event_bytes:
                await self._dead_letter(record, "oversized", f"{len(body)} bytes")
                continue
            try:
                event = decode(body)
            except UndecodableEvent as exc:
                await self._dead_letter(record, exc.reason, exc.detail)
                continue
            if not self.applier.handles(event.type):
                APPLIED.labels(self.name, event.type, "ignored").inc()
                continue
            batch.append((record, event))
        if not batch:
            return
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                outcomes = await self._apply_new(conn, [event for _, event in batch])
        except Exception as exc:
            BATCH_FALLBACKS.labels(self.name, type(exc).__name__).inc()
            if len(batch) > 1 or not is_transient(exc):
                log.warning(
                    "%s: batch of %d failed (%s); one at a time",
                    self.name,
                    len(batch),
                    type(exc).__name__,
                )
            for record, event in batch:
                await self._apply(record, event)
            return
        for event_type, outcome in outcomes:
            APPLIED.labels(self.name, event_type, outcome).inc()

    async def _apply_new(
        self, conn: Connection, events: list[Envelope[Any]]
    ) -> list[tuple[str, str]]:
        """Apply the events not applied before; return (event type, outcome) for each."""
        new = await inbox.claim(conn, self.name, [event.event_id for event in events])
        outcomes, first_times = [], []
        for event in events:
            first = event.event_id in new
            if first:
                new.discard(event.event_id)  # twice in one batch: applied once
                first_times.append(event)
            outcomes.append((event.type, "applied" if first else "duplicate"))
        if first_times:
            await self.applier.apply(conn, first_times)
        return outcomes

    async def _apply(self, record: ConsumerRecord[bytes, bytes], event: Envelope[Any]) -> None:
        transient_failures = 0
        handler_failures = 0
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    [(event_type, outcome)] = await self._apply_new(conn, [event])
                APPLIED.labels(self.name, event_type, outcome).inc()
                return
            except Exception as exc:
                if is_transient(exc):
                    # The database's condition, not the event's: retried until it passes.
                    transient_failures += 1
                    delay = min(0.1 * 2 ** min(transient_failures, 10), MAX_BACKOFF_S)
                    log.warning(
                        "%s: transient failure on %s (%s), retry in %.1fs",
                        self.name,
                        event.event_id,
                        _error_name(exc),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                handler_failures += 1
                # The error's name and where it was raised, not its message or traceback:
                # those may quote the event's personal data.
                log.warning(
                    "%s: handler failed on %s %s (%s at %s), attempt %d of %d",
                    self.name,
                    event.type,
                    event.event_id,
                    _error_name(exc),
                    _raised_at(exc),
                    handler_failures,
                    HANDLER_ATTEMPTS,
                )
                if handler_failures >= HANDLER_ATTEMPTS:
                    await self._dead_letter(record, "handler_failed", _error_name(exc))
                    return
                await asyncio.sleep(0.1 * handler_failures)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], reason: str, detail: str
    ) -> None:
        dlq = dead_letter(record.topic)
        # Never log the body: it may hold personal data.
        log.warning(
            "%s: %s:%s@%s to %s: %s (%s)",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            dlq,
            reason,
            detail,
        )
        await self.broker.publish(
            record.value[: self.max_event_bytes] if record.value else b"",
            dlq,
            key=record.key,
            headers={
                "swd-dlq-reason": reason,
                "swd-dlq-detail": detail,
                "swd-dlq-consumer": self.name,
                "swd-original-topic": record.topic,
                "swd-original-partition": str(record.partition),
                "swd-original-offset": str(record.offset),
            },
        )
        DEAD_LETTERED.labels(dlq, reason).inc()
        APPLIED.labels(self.name, "unknown", "dead_lettered").inc()


def _error_name(exc: BaseException) -> str:
    """The exception's type, with its SQLSTATE when the database raised it."""
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} {sqlstate}" if isinstance(sqlstate, str) else type(exc).__name__


def _raised_at(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


async def raw_records(msg: KafkaMessage) -> Any:
    """The batch's records as aiokafka gave them: the consumer decodes each itself, so
    faststream need not parse the bodies, nor inject the message through a worker thread."""
    return msg.raw_message  # a tuple; a list under faststream's TestKafkaBroker


def subscribe(broker: KafkaBroker, consumer: EventConsumer, kafka: KafkaSettings) -> None:
    """Register ``consumer`` on its topics, in one consumer group named after it: one batch
    holds what it fetched from all of them."""
    broker.subscriber(
        *consumer.topics,
        group_id=consumer.group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=kafka.consumer_batch_max_records,
        # After an empty fetch faststream also sleeps this long: keep it short.
        batch_timeout_ms=kafka.consumer_batch_timeout_ms,
        decoder=raw_records,
        title=consumer.name,
        **consumer_options(kafka),
    )(consumer.consume)
