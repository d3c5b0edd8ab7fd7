"""The consumer wrapper's routing, on faststream's in-memory TestKafkaBroker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from shared import topics
from shared.consumer import EventConsumer, subscribe
from shared.events import SYSTEM, OrderReceived, new_event
from shared.settings import KafkaSettings


class RecordingPool:
    """Stands in for asyncpg's pool: the DLQ paths must not touch the database at all."""

    def acquire(self) -> Any:
        raise AssertionError("the database was used")


@pytest.fixture
def broker() -> KafkaBroker:
    return KafkaBroker()


def _consumer(broker: KafkaBroker, handlers: dict[Any, Any]) -> EventConsumer:
    consumer = EventConsumer(
        name="unit",
        topic=topics.STATION_EVENTS,
        pool=RecordingPool(),  # type: ignore[arg-type]
        broker=broker,
        handlers=handlers,
        max_event_bytes=1024,
    )
    subscribe(broker, consumer, KafkaSettings())
    return consumer


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not_json"),
        (b'{"type": "order.teleported", "schema_version": 1}', "unknown_event_type"),
        (b'{"type": "order.received", "schema_version": 7}', "unsupported_schema_version"),
        (b"x" * 2048, "oversized"),
    ],
)
async def test_undecodable_messages_go_to_the_dead_letter_topic(
    broker: KafkaBroker, body: bytes, reason: str
) -> None:
    _consumer(broker, {})
    dead: list[dict[str, str]] = []

    @broker.subscriber(topics.dead_letter(topics.STATION_EVENTS))
    async def dlq(message: KafkaMessage) -> None:
        dead.append(dict(message.headers))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(body, topics.STATION_EVENTS, key=b"k")
    assert len(dead) == 1
    assert dead[0]["swd-dlq-reason"] == reason
    assert dead[0]["swd-original-topic"] == topics.STATION_EVENTS
    assert dead[0]["swd-dlq-consumer"] == "unit"


async def test_events_without_a_handler_are_skipped_without_touching_the_database(
    broker: KafkaBroker,
) -> None:
    _consumer(broker, {})
    dead: list[KafkaMessage] = []

    @broker.subscriber(topics.dead_letter(topics.STATION_EVENTS))
    async def dlq(message: KafkaMessage) -> None:
        dead.append(message)

    event = new_event(
        OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM
    )
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(event.to_json().encode(), topics.STATION_EVENTS, key=b"k")
    assert dead == []
