"""``swdispatch dlq`` on the real stack: dead letters are listed, shown and replayed to their
original topic; a replay is applied once however often it is repeated, and it is counted."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from shared import topics
from shared.events import SYSTEM, OrderAccepted, new_event
from tests.conftest import RunningStack
from tests.helpers import eventually

pytestmark = pytest.mark.integration

TOPIC = topics.STATION_EVENTS
DLQ = topics.dead_letter(TOPIC)


async def _swdispatch(stack: RunningStack, *args: str) -> str:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "swdispatch", "dlq", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SWD_KAFKA_BOOTSTRAP": stack.kafka_bootstrap},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _headers(reason: str, consumer: str, offset: int) -> list[tuple[str, bytes]]:
    return [
        (name, value.encode())
        for name, value in {
            "swd-dlq-reason": reason,
            "swd-dlq-detail": "RuntimeError",
            "swd-dlq-consumer": consumer,
            "swd-original-topic": TOPIC,
            "swd-original-partition": "0",
            "swd-original-offset": str(offset),
        }.items()
    ]


async def _audit_metric(
    http: httpx.AsyncClient, stack: RunningStack, name: str, labels: dict[str, str]
) -> float:
    text = (await http.get(f"{stack.urls['audit']}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def _duplicates_seen_by_audit(http: httpx.AsyncClient, stack: RunningStack) -> float:
    labels = {"consumer": "audit", "event_type": "order.accepted", "outcome": "duplicate"}
    return await _audit_metric(http, stack, "swd_consumer_events_total", labels)


async def _redriven_seen_by_audit(http: httpx.AsyncClient, stack: RunningStack) -> float:
    labels = {"consumer": "audit", "topic": TOPIC}
    return await _audit_metric(http, stack, "swd_consumer_redriven_messages_total", labels)


async def test_dead_letters_are_listed_shown_and_replayed_once(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    order_id, other_order = uuid.uuid4(), uuid.uuid4()
    good = new_event(OrderAccepted(station_id="st-liuhe"), order_id=order_id, actor=SYSTEM)
    outside = new_event(OrderAccepted(station_id="st-liuhe"), order_id=other_order, actor=SYSTEM)
    key = str(order_id).encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        # As the audit and the center would dead-letter one message their handlers failed on
        # (the bug since fixed), an oversized one (its body cut) and, after the range replayed,
        # another one.
        body = good.to_json().encode()
        sends = [
            (body, key, _headers("handler_failed", "audit", 9001)),
            (body, key, _headers("handler_failed", "dispatch_center", 9001)),
            (b'{"cut', key, _headers("oversized", "audit", 9002)),
            (outside.to_json().encode(), str(other_order).encode(), _headers("x", "audit", 9003)),
        ]
        offsets = [
            (await producer.send_and_wait(DLQ, value, key=k, partition=0, headers=h)).offset
            for value, k, h in sends
        ]
    finally:
        await producer.stop()
    first, last = offsets[0], offsets[2]
    in_range = ["--topic", TOPIC, "--from-offset", str(first), "--to-offset", str(last)]

    listed = await _swdispatch(stack, "list", *in_range)
    assert f"{DLQ}:0@{first} " in listed
    assert f"{DLQ}:0@{last} " in listed
    assert f"{DLQ}:0@{offsets[3]} " not in listed
    assert f"reason=handler_failed detail=RuntimeError consumer=audit original={TOPIC}:0@9001" in (
        listed
    )
    assert listed.splitlines()[-1] == "3 dead letters"
    only_oversized = await _swdispatch(stack, "list", *in_range, "--reason", "oversized")
    assert only_oversized.splitlines()[-1] == "1 dead letters"

    shown = await _swdispatch(stack, "show", "--topic", TOPIC, "--offset", str(first))
    assert "swd-dlq-consumer: audit" in shown
    assert str(good.event_id) in shown
    assert f"key: {order_id}" in shown

    dry = await _swdispatch(stack, "replay", *in_range, "--dry-run")
    assert "would replay 1, skipped 2" in dry

    redriven_before = await _redriven_seen_by_audit(http, stack)
    duplicates_before = await _duplicates_seen_by_audit(http, stack)
    replayed = await _swdispatch(stack, "replay", *in_range)
    assert "replayed 1, skipped 2" in replayed
    assert (
        f'swd_dead_letters_replayed_total{{reason="handler_failed",topic="{DLQ}"}} 1.0' in replayed
    )

    async def audit_trail() -> list[dict[str, object]] | None:
        resp = await http.get(
            f"{stack.urls['audit']}/v1/orders/{order_id}/trail",
            headers={"Authorization": f"Bearer {stack.supervisor_token}"},
        )
        return resp.json() if resp.status_code == 200 and resp.json() else None

    trail = await eventually(audit_trail, timeout_s=30)
    assert [entry["event_id"] for entry in trail] == [str(good.event_id)]

    # Replayed again: the audit's inbox takes it as a duplicate, the trail keeps one entry.
    await _swdispatch(stack, "replay", *in_range)

    async def audit_saw_the_duplicate() -> bool:
        return await _duplicates_seen_by_audit(http, stack) > duplicates_before

    await eventually(audit_saw_the_duplicate, timeout_s=30)
    trail = await eventually(audit_trail)
    assert [entry["event_id"] for entry in trail] == [str(good.event_id)]
    # The service that took them counts both re-driven messages.
    assert await _redriven_seen_by_audit(http, stack) == redriven_before + 2

    # The replays went to the original partition, marked with where they were replayed from.
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        origins: list[str] = []

        async def both_replays_found() -> bool:
            batch = await consumer.getmany(timeout_ms=300)
            for record in (r for rs in batch.values() for r in rs):
                if record.key == key:
                    origins.extend(
                        v.decode() for k, v in record.headers if k == "swd-replayed-from"
                    )
            return len(origins) >= 2

        await eventually(both_replays_found, timeout_s=30)
        assert origins == [f"{DLQ}:0:{first}"] * 2
    finally:
        await consumer.stop()
