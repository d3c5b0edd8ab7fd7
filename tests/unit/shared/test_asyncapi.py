from __future__ import annotations

from shared.asyncapi import document
from shared.events import PAYLOAD_TYPES, PUBLISHED_ON
from shared.topics import ALL


def test_every_event_type_is_published_on_exactly_one_topic() -> None:
    documented = [p for payloads in PUBLISHED_ON.values() for p in payloads]
    assert sorted(p.event_type for p in documented) == sorted(
        p.event_type for p in PAYLOAD_TYPES.values()
    )
    assert set(PUBLISHED_ON) == set(ALL)


def test_the_asyncapi_document_describes_every_envelope() -> None:
    doc = document("kafka:9092")
    assert set(doc["channels"]) == set(ALL)
    schemas = doc["components"]["schemas"]
    for payload in PAYLOAD_TYPES.values():
        # (a topic with one event type names its envelope without a union)
        named = {f"Envelope_{payload.__name__}_", f"Envelope[{payload.__name__}]"}
        assert named & set(schemas), payload.__name__
