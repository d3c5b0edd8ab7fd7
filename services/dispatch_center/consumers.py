"""What the center learns from the stations."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from shared import topics
from shared.consumer import EventConsumer, Handler
from shared.db import Connection, Pool
from shared.events import Envelope, EventPayload, OrderReceived
from shared.settings import Settings


async def on_received(conn: Connection, event: Envelope[Any]) -> None:
    """The station has the order: its dispatch needs no resending."""
    payload: OrderReceived = event.payload
    await conn.execute(
        """UPDATE orders SET received_at = $3, updated_at = now()
           WHERE id = $1 AND dispatch_no = $2 AND received_at IS NULL""",
        event.order_id,
        payload.dispatch_no,
        event.occurred_at,
    )


HANDLERS: dict[type[EventPayload], Handler] = {OrderReceived: on_received}


def consumers(pool: Pool, broker: KafkaBroker, settings: Settings) -> list[EventConsumer]:
    return [
        EventConsumer(
            name="dispatch_center",
            topic=topics.STATION_EVENTS,
            pool=pool,
            broker=broker,
            handlers=HANDLERS,
            max_event_bytes=settings.kafka.max_event_bytes,
        )
    ]
