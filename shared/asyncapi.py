"""The event contracts as an AsyncAPI document (``swdispatch asyncapi``)."""

from __future__ import annotations

from typing import Any, Union

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared.events import PUBLISHED_ON, Envelope


def document(bootstrap: str) -> dict[str, Any]:
    broker = KafkaBroker(bootstrap, description="swdispatch order lifecycle events")
    for topic, payloads in PUBLISHED_ON.items():
        envelopes = tuple(Envelope[p] for p in payloads)  # type: ignore[valid-type]
        broker.publisher(
            topic,
            title=topic,
            description="key: order id; one envelope per event: "
            + ", ".join(p.event_type for p in payloads),
            schema=Union[envelopes],  # noqa: UP007 - a union built at run time
        )
    spec = AsyncAPI(broker, title="swdispatch events", version="1").to_specification()
    return dict(spec.to_jsonable())
