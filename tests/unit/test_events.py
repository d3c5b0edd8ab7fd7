from __future__ import annotations

import json
import uuid

import pytest

from shared.events import (
    SYSTEM,
    OrderCompleted,
    OrderDispatched,
    OrderReceived,
    UndecodableEvent,
    decode,
    new_event,
)
from tests import factories


def dispatched() -> OrderDispatched:
    return factories.dispatched("st-a").payload


def test_an_event_survives_the_wire_typed() -> None:
    event = new_event(dispatched(), order_id=uuid.uuid4(), actor=SYSTEM)
    back = decode(event.to_json().encode())
    assert back == event
    assert isinstance(back.payload, OrderDispatched)
    assert back.type == "order.dispatched"
    assert back.schema_version == 1


def test_redaction_drops_every_personal_field() -> None:
    event = new_event(dispatched(), order_id=uuid.uuid4(), actor=SYSTEM)
    redacted = json.dumps(event.redacted())
    assert "Gu Xiaolan" not in redacted
    assert "13911112222" not in redacted
    assert "case" not in event.redacted()["payload"]
    assert event.redacted()["payload"]["station_id"] == "st-a"
    completed = OrderCompleted(
        station_id="s",
        worker_id="w",
        outcome="served",
        service_minutes=30,
        follow_up_needed=False,
        summary="visited Zhao Min",
    )
    assert (
        "summary"
        not in new_event(completed, order_id=uuid.uuid4(), actor=SYSTEM).redacted()["payload"]
    )


def _raw(**changes: object) -> bytes:
    event = new_event(
        OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM
    )
    data = json.loads(event.to_json())
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe garbage", "not_json"),
        (b"[1, 2]", "invalid_envelope"),
        (b'{"hello": "world"}', "invalid_envelope"),
        (_raw(type="order.teleported"), "unknown_event_type"),
        (_raw(schema_version=2), "unsupported_schema_version"),
        (_raw(payload={"station_id": "s"}), "invalid_envelope"),
        (_raw(order_id="not-a-uuid"), "invalid_envelope"),
        (_raw(occurred_at="2026-01-01T00:00:00"), "invalid_envelope"),
        (_raw(surprise=1), "invalid_envelope"),
    ],
)
def test_what_cannot_be_decoded_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(UndecodableEvent) as caught:
        decode(body)
    assert caught.value.reason == reason


def test_decode_errors_never_echo_the_input() -> None:
    bad = _raw(payload={"station_id": "Zhao Min 13811112222", "dispatch_no": "Zhao Min"})
    with pytest.raises(UndecodableEvent) as caught:
        decode(bad)
    assert "Zhao" not in caught.value.detail
    assert "payload.dispatch_no" in caught.value.detail
