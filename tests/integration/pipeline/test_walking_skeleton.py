"""One order from intake to station to audit, on real PostgreSQL, Kafka protocol and HTTP."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.audit.domain import GENESIS, row_hash
from shared import topics
from shared.events import (
    decode,
)
from tests.conftest import RunningStack
from tests.factories.events import dispatched
from tests.factories.requests import request_body
from tests.helpers import eventually, get_json_when, post_request

pytestmark = pytest.mark.integration


async def test_an_order_travels_from_intake_to_station_to_audit(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    body = request_body(1, urgency="emergency")
    body["location"] |= {"township_code": "TS-SX", "community_code": "SX-TAIPING"}
    resp = await post_request(http, stack, body)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    order_id = created["order_id"]
    assert created["status"] == "dispatched"
    assert created["link"] == f"/v1/requests/{order_id}"

    center = (
        await http.get(
            f"{stack.urls['dispatch_center']}{created['link']}",
            headers={"X-API-Key": stack.api_key},
        )
    ).json()
    assert center["station_id"] == "st-shaxi"
    assert [t["status"] for t in center["timeline"]] == ["submitted", "dispatched"]
    submitted = datetime.fromisoformat(center["submitted_at"])
    accept_by = datetime.fromisoformat(center["deadlines"]["accept_by"])
    assert (accept_by - submitted).total_seconds() == 30 * 60  # emergency: accept within 30 min

    station_order = await get_json_when(
        http,
        f"{stack.urls['station_worker']}/v1/orders/{order_id}",
        {"Authorization": f"Bearer {stack.manager_token('st-shaxi')}"},
    )
    assert station_order["station_id"] == "st-shaxi"
    assert station_order["status"] == "dispatched"
    assert station_order["case"]["beneficiary_name"] == body["beneficiary"]["name"]

    trail = await get_json_when(
        http,
        f"{stack.urls['audit']}/v1/orders/{order_id}/trail",
        {"Authorization": f"Bearer {stack.supervisor_token}"},
        lambda t: len(t) >= 3,
    )
    assert [e["event_type"] for e in trail] == [
        "order.submitted",
        "order.dispatched",
        "order.received",
    ]
    key = stack.local.audit_env()["SWD_AUDIT_HMAC_KEY"].encode()
    prev = GENESIS
    for entry in sorted(trail, key=lambda e: e["seq"]):  # the chain links in recording order
        assert entry["prev_hash"] == prev
        row = entry | {"order_id": uuid.UUID(order_id), "event_id": uuid.UUID(entry["event_id"])}
        row["occurred_at"] = datetime.fromisoformat(entry["occurred_at"])
        assert entry["hash"] == row_hash(key, prev, row)
        prev = entry["hash"]
    # The trail keeps no personal data.
    assert body["beneficiary"]["name"] not in str(trail)
    assert "case" not in trail[1]["event"]["payload"]


async def test_another_station_cannot_see_the_order(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    body = request_body(2)
    body["location"] |= {"township_code": "TS-CX", "community_code": "CX-XINHUA"}
    order_id = (await post_request(http, stack, body)).json()["order_id"]
    url = f"{stack.urls['station_worker']}/v1/orders/{order_id}"
    await get_json_when(
        http, url, {"Authorization": f"Bearer {stack.manager_token('st-chengxiang')}"}
    )
    other = await http.get(
        url, headers={"Authorization": f"Bearer {stack.manager_token('st-liuhe')}"}
    )
    assert other.status_code == 404
    assert (await http.get(url)).status_code == 401


async def test_unknown_community_is_a_422_naming_the_field(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    body = request_body(3)
    body["location"]["community_code"] = "NO-SUCH-PLACE"
    resp = await post_request(http, stack, body)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["body", "location", "community_code"]


async def test_a_repeated_request_is_the_same_order_and_a_changed_one_conflicts(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    body = request_body(4)
    url = f"{stack.urls['dispatch_center']}/v1/requests"
    headers = {"X-API-Key": stack.api_key}
    first = await http.post(url, json=body, headers=headers)
    again = await http.post(url, json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["order_id"] == again.json()["order_id"]
    changed = await http.post(url, json=body | {"description": "something else"}, headers=headers)
    assert changed.status_code == 409


def _dispatched_event(station_id: str) -> tuple[uuid.UUID, bytes]:
    event = dispatched(station_id)
    return event.order_id, event.to_json().encode()


async def test_the_same_event_delivered_twice_changes_nothing_the_second_time(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    order_id, raw = _dispatched_event("st-liuhe")
    sentinel_id, sentinel = _dispatched_event("st-liuhe")
    key = str(order_id).encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        # Same key, same partition: once the sentinel is applied, both copies were taken.
        for message in (raw, raw, sentinel):
            await producer.send_and_wait(topics.CENTER_EVENTS, message, key=key)
    finally:
        await producer.stop()

    auth = {"Authorization": f"Bearer {stack.supervisor_token}"}
    await get_json_when(
        http,
        f"{stack.urls['station_worker']}/v1/orders/{sentinel_id}",
        {"Authorization": f"Bearer {stack.manager_token('st-liuhe')}"},
    )
    await get_json_when(
        http, f"{stack.urls['audit']}/v1/orders/{sentinel_id}/trail", auth, lambda t: len(t) >= 1
    )
    history = await _station_history(stack, http, order_id)
    trail = await get_json_when(
        http, f"{stack.urls['audit']}/v1/orders/{order_id}/trail", auth, lambda t: len(t) >= 2
    )
    assert len(history) == 1
    assert sorted(e["event_type"] for e in trail) == ["order.dispatched", "order.received"]


async def test_a_garbage_message_goes_to_the_dlq_and_the_partition_moves_on(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    order_id, raw = _dispatched_event("st-liuhe")
    key = str(order_id).encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        garbage = await producer.send_and_wait(topics.CENTER_EVENTS, b"\x00not an event", key=key)
        good = await producer.send_and_wait(topics.CENTER_EVENTS, raw, key=key)
    finally:
        await producer.stop()
    assert garbage.partition == good.partition

    await get_json_when(
        http,
        f"{stack.urls['station_worker']}/v1/orders/{order_id}",
        {"Authorization": f"Bearer {stack.manager_token('st-liuhe')}"},
    )

    dlq = topics.dead_letter(topics.CENTER_EVENTS)
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(dlq, 0)])
        await consumer.seek_to_beginning(TopicPartition(dlq, 0))

        async def dead_letters_for_our_message() -> list[dict[str, str]]:
            batch = await consumer.getmany(timeout_ms=500)
            found = []
            for records in batch.values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    if r.key == key and headers.get("swd-original-offset") == str(garbage.offset):
                        found.append(headers)
            return found

        letters = await eventually(dead_letters_for_our_message)
    finally:
        await consumer.stop()
    # The station worker and the audit each dead-letter it once.
    assert {h["swd-dlq-consumer"] for h in letters} == {"station_worker", "audit"}
    for headers in letters:
        assert headers["swd-dlq-reason"] == "not_json"
        assert headers["swd-original-topic"] == topics.CENTER_EVENTS
        assert headers["swd-original-partition"] == str(garbage.partition)


async def test_a_resent_dispatch_changes_nothing_but_is_acknowledged_again(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    order_id, raw = _dispatched_event("st-liuhe")
    original = decode(raw)
    resent = original.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "payload": original.payload.model_copy(update={"resend_of": original.event_id}),
        }
    )
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for message in (raw, resent.to_json().encode()):
            await producer.send_and_wait(topics.CENTER_EVENTS, message, key=str(order_id).encode())
    finally:
        await producer.stop()

    auth = {"Authorization": f"Bearer {stack.supervisor_token}"}

    async def acknowledgements() -> int:
        resp = await http.get(f"{stack.urls['audit']}/v1/orders/{order_id}/trail", headers=auth)
        trail = resp.json() if resp.status_code == 200 else []
        return sum(e["event_type"] == "order.received" for e in trail)

    assert await eventually(lambda: _at_least(acknowledgements, 2)) == 2
    assert len(await _station_history(stack, http, order_id)) == 1


async def _station_history(
    stack: RunningStack, http: httpx.AsyncClient, order_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The order's history as its station's manager sees it."""
    order = await get_json_when(
        http,
        f"{stack.urls['station_worker']}/v1/orders/{order_id}",
        {"Authorization": f"Bearer {stack.manager_token('st-liuhe')}"},
    )
    history: list[dict[str, Any]] = order["history"]
    return history


async def _at_least(count: Any, n: int) -> int | None:
    value = int(await count())
    return value if value >= n else None
