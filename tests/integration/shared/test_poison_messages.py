"""Poison and oversized input on every consumed topic: each lands in the topic's DLQ with the
reason, the partition keeps flowing, and the DLQ count metric of each consumer rises."""

from __future__ import annotations

import collections
import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from shared import topics
from shared.events import SYSTEM, OrderAccepted, OrderReceived, new_event
from tests.conftest import RunningStack
from tests.helpers import eventually

pytestmark = pytest.mark.integration

# Which services consume which topic (and so dead-letter its poison).
CONSUMERS = {
    topics.CENTER_EVENTS: ("station_worker", "audit"),
    topics.STATION_EVENTS: ("dispatch_center", "audit"),
}


def _valid(order_id: uuid.UUID) -> dict[str, object]:
    return json.loads(
        new_event(
            OrderReceived(station_id="st-x", dispatch_no=1), order_id=order_id, actor=SYSTEM
        ).to_json()
    )


def _envelope_with(oid: uuid.UUID, **changes: object) -> bytes:
    return json.dumps(_valid(oid) | changes).encode()


HUGE = b": " + b"1" * 5000 + b","
# (reason it is dead-lettered for, how to make it from the order id)
POISON: list[tuple[str, Callable[[uuid.UUID], bytes]]] = [
    ("not_json", lambda oid: b"\x89PNG\r\n\x1a\n random bytes \xff\xfe"),
    ("invalid_envelope", lambda oid: json.dumps({"order": str(oid), "what": [1, 2]}).encode()),
    ("unknown_event_type", lambda oid: _envelope_with(oid, type="order.vanished")),
    ("unsupported_schema_version", lambda oid: _envelope_with(oid, schema_version=99)),
    ("oversized", lambda oid: _envelope_with(oid, padding="x" * 300_000)),
    ("too_deep", lambda oid: b"[" * 100_000),
    # a number past Python's 4,300-digit limit inside an otherwise valid envelope
    ("not_json", lambda oid: _envelope_with(oid, schema_version=0).replace(b": 0,", HUGE, 1)),
    ("not_json", lambda oid: _envelope_with(oid, correlation_id="\udc00")),  # a lone surrogate
    ("not_json", lambda oid: _envelope_with(oid, type="order.\ud800")),
    (
        "invalid_envelope",
        lambda oid: _envelope_with(oid, payload={"station_id": ["st-x"], "dispatch_no": "one"}),
    ),
    ("invalid_envelope", lambda oid: _envelope_with(oid, occurred_at=[{"year": 2026}])),
]
REASONS = collections.Counter(reason for reason, _ in POISON)


async def _dead_letter_counts(http: httpx.AsyncClient, url: str, dlq: str) -> dict[str, float]:
    text = (await http.get(f"{url}/metrics")).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "swd_dead_letter_events":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["topic"] == dlq:
                    counts[sample.labels["reason"]] = sample.value
    return counts


async def _dead_letters(
    stack: RunningStack,
    dlq: str,
    key: bytes,
    enough: Callable[[list[dict[str, str]]], bool],
) -> list[dict[str, str]]:
    """The headers of the dead letters in ``dlq`` with ``key``, read until ``enough``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_bytes=2**21,
        max_partition_fetch_bytes=2**21,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(dlq, 0)])
        await consumer.seek_to_beginning(TopicPartition(dlq, 0))
        found: list[dict[str, str]] = []

        async def read_enough() -> bool:
            batch = await consumer.getmany(timeout_ms=300)
            for record in (r for rs in batch.values() for r in rs):
                if record.key == key:
                    found.append({k: v.decode() for k, v in record.headers})
            return enough(found)

        # Each consumer writes its dead letters as it gets past the poison; with two clean
        # clones' suites on two cores (one CI run saw it) that took over 15 s.
        await eventually(read_enough, timeout_s=45)
        return found
    finally:
        await consumer.stop()


async def _audit_has(
    stack: RunningStack, http: httpx.AsyncClient, order_id: uuid.UUID, event_id: uuid.UUID
) -> bool:
    resp = await http.get(
        f"{stack.urls['audit']}/v1/orders/{order_id}/trail",
        headers={"Authorization": f"Bearer {stack.supervisor_token}"},
    )
    return resp.status_code == 200 and str(event_id) in {e["event_id"] for e in resp.json()}


@pytest.mark.parametrize("topic", list(CONSUMERS))
async def test_poison_goes_to_the_dlq_and_the_partition_keeps_flowing(
    stack: RunningStack, http: httpx.AsyncClient, topic: str
) -> None:
    dlq = topics.dead_letter(topic)
    services = CONSUMERS[topic]
    before = {s: await _dead_letter_counts(http, stack.urls[s], dlq) for s in services}
    order_id = uuid.uuid4()
    key = str(order_id).encode()
    # The good event after the poison: the center ignores an accepted for an unknown order,
    # the audit records it; either way each consumer must get past the poison to reach it.
    good = new_event(OrderAccepted(station_id="st-liuhe"), order_id=order_id, actor=SYSTEM)
    if topic == topics.CENTER_EVENTS:
        good = new_event(
            OrderReceived(station_id="st-liuhe", dispatch_no=1), order_id=order_id, actor=SYSTEM
        )
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, max_request_size=2**20)
    await producer.start()
    try:
        poison_offsets = {}
        for reason, make in POISON:
            meta = await producer.send_and_wait(topic, make(order_id), key=key)
            poison_offsets[str(meta.offset)] = reason
        last = await producer.send_and_wait(topic, good.to_json().encode(), key=key)
    finally:
        await producer.stop()

    # The audit applied the good event that came after all the poison on that partition.
    await eventually(lambda: _audit_has(stack, http, order_id, good.event_id))

    headers = await _dead_letters(
        stack, dlq, key, lambda found: len(found) >= len(POISON) * len(services)
    )
    letters = [
        (h["swd-dlq-consumer"], h["swd-dlq-reason"], h["swd-original-offset"]) for h in headers
    ]

    expected = {
        (service, reason, offset)
        for service in services
        for offset, reason in poison_offsets.items()
    }
    assert set(letters) == expected
    assert all(int(offset) < last.offset for _, _, offset in letters)
    for service in services:
        after = await _dead_letter_counts(http, stack.urls[service], dlq)
        for reason, count in REASONS.items():
            assert after.get(reason, 0) - before[service].get(reason, 0) == count, (service, reason)


async def test_a_value_the_database_cannot_take_is_dead_lettered_not_retried_forever(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    """A dispatch_no past int8 decodes (an int), but asyncpg cannot send it to the center's
    integer column (DataError): the event's own failure, not the database's."""
    dlq = topics.dead_letter(topics.STATION_EVENTS)
    order_id = uuid.uuid4()
    key = str(order_id).encode()
    poison = _envelope_with(order_id, payload={"station_id": "st-x", "dispatch_no": 2**70})
    good = new_event(OrderAccepted(station_id="st-liuhe"), order_id=order_id, actor=SYSTEM)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        poisoned = await producer.send_and_wait(topics.STATION_EVENTS, poison, key=key)
        await producer.send_and_wait(topics.STATION_EVENTS, good.to_json().encode(), key=key)
    finally:
        await producer.stop()

    await eventually(lambda: _audit_has(stack, http, order_id, good.event_id))
    headers = await _dead_letters(
        stack,
        dlq,
        key,
        lambda found: any(h["swd-dlq-consumer"] == "dispatch_center" for h in found),
    )
    [center] = [h for h in headers if h["swd-dlq-consumer"] == "dispatch_center"]
    assert center["swd-dlq-reason"] == "handler_failed"
    assert center["swd-dlq-detail"].startswith("DataError")
    assert center["swd-original-offset"] == str(poisoned.offset)
