from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings

from shared.events import (
    SYSTEM,
    OrderCompleted,
    OrderDispatched,
    OrderReceived,
    UndecodableEvent,
    decode,
    new_event,
)
from tests.factories import events as center_events
from tests.factories.strategies import VALID_EVENTS, damaged_envelopes, hostile_bodies


def dispatched() -> OrderDispatched:
    return center_events.dispatched("st-a").payload


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


def _received_with(dispatch_no: bytes) -> bytes:
    """An order.received whose payload's dispatch_no is the JSON text ``dispatch_no``."""
    body = _raw(payload={"station_id": "s", "dispatch_no": 0})
    return body.replace(b'"dispatch_no": 0', b'"dispatch_no": ' + dispatch_no)


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
        (b"[" * 100_000, "too_deep"),
        (b'{"a":' * 100_000, "too_deep"),
        (_received_with(b"9" * 5000), "not_json"),  # past Python's 4,300-digit limit
        (b"9" * 5000, "not_json"),
        (_raw(correlation_id="\ud800"), "not_json"),
        (_raw(type="order.\udfff"), "not_json"),
        (_raw(payload={"station_id": ["s"], "dispatch_no": 1}), "invalid_envelope"),
        (_received_with(b"1e400"), "invalid_envelope"),
        (_received_with(b"[[[[1]]]]"), "invalid_envelope"),
        (_raw(occurred_at=1e300), "invalid_envelope"),
        (b'{"type": "order.received", "schema_version": NaN}', "not_json"),
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bodies)
def test_any_body_decodes_or_says_why(body: bytes) -> None:
    try:
        decode(body)
    except UndecodableEvent as exc:
        reason, detail = exc.reason, exc.detail
    else:
        return
    assert reason in {
        "not_json",
        "too_deep",
        "invalid_envelope",
        "unknown_event_type",
        "unsupported_schema_version",
    }
    detail.encode()  # it goes into a Kafka header: UTF-8 without lone surrogates


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_envelopes())
def test_a_decoded_event_can_be_written_out_again(body: bytes) -> None:
    """What decode accepts, the services can serialize: to Kafka, to jsonb, to logs."""
    try:
        event = decode(body)
    except UndecodableEvent:
        return
    assert decode(event.to_json().encode()) == event
    json.dumps(event.redacted()).encode()


def test_every_sample_event_is_valid() -> None:
    for raw in VALID_EVENTS:
        decode(json.dumps(raw).encode())
