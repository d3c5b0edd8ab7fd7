"""Hypothesis strategies for hostile message bodies: whatever a producer might put on a topic."""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import strategies as st

from shared.events import (
    SYSTEM,
    OrderAccepted,
    OrderCompleted,
    OrderReceived,
    OrderRejected,
    new_event,
)
from tests.factories import events as center_events

# Text with every code point, lone surrogates included: json.dumps writes those as "\ud800".
any_text = st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=20)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)

_HOLE = "@@hostile@@"
# What cannot come from json.dumps: nesting past any parser's recursion, numbers past Python's
# 4,300-digit int limit, a surrogate encoded as UTF-8, NUL, numbers JSON does not have.
raw_json_fragments = st.one_of(
    st.integers(1, 200_000).map(lambda n: b"[" * n),
    st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 50_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(4_000, 20_000).map(lambda n: b"9" * n),
    st.integers(4_000, 20_000).map(lambda n: b"-0." + b"1" * n),
    st.sampled_from(
        [b"1e400", b"-1e400", b"NaN", b"Infinity", b'"\xed\xa0\x80"', b'"\\u0000"', b'"\\udfff"']
    ),
    st.integers(2**31, 2**70).map(lambda n: str(n).encode()),
)


def _valid_events() -> list[dict[str, Any]]:
    order_id = uuid.uuid4()
    payloads = [
        OrderReceived(station_id="s", dispatch_no=1),
        OrderAccepted(station_id="s"),
        OrderRejected(station_id="s", dispatch_no=1, reason_code="busy", note=None),
        OrderCompleted(
            station_id="s",
            worker_id="w",
            outcome="served",
            service_minutes=30,
            follow_up_needed=False,
            summary="visited",
        ),
    ]
    events = [new_event(p, order_id=order_id, actor=SYSTEM).to_json() for p in payloads]
    events.append(center_events.dispatched("s", order_id=order_id).to_json())
    return [json.loads(e) for e in events]


VALID_EVENTS = _valid_events()


@st.composite
def damaged_envelopes(draw: st.DrawFn) -> bytes:
    """A valid event of a known type with one field, of the envelope or of its payload,
    replaced by arbitrary JSON or by one of :data:`raw_json_fragments`."""
    event = json.loads(json.dumps(draw(st.sampled_from(VALID_EVENTS))))
    target = draw(st.sampled_from([event, event["payload"]]))
    field = draw(st.sampled_from([*target, "unexpected"]))
    if draw(st.booleans()):
        target[field] = draw(json_values)
        return json.dumps(event).encode()
    target[field] = _HOLE
    return json.dumps(event).encode().replace(f'"{_HOLE}"'.encode(), draw(raw_json_fragments))


hostile_bodies = st.one_of(
    st.binary(),
    json_values.map(lambda v: json.dumps(v).encode()),
    raw_json_fragments,
    damaged_envelopes(),
)
