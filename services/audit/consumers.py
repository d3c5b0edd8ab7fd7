"""Every lifecycle event of every order, from the center and the stations, into the trail and
the timeliness projection."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from services.audit.chain import GENESIS, link_hash
from services.audit.store import lock_order, refresh_orders
from shared import topics
from shared.consumer import EventConsumer, Handler
from shared.db import Connection, Pool
from shared.events import PAYLOAD_TYPES, Envelope, EventPayload
from shared.settings import Settings


async def append_to_trail(conn: Connection, event: Envelope[Any]) -> None:
    # Each link must see the one before it, whichever replica applies the event (during a
    # rebalance two may hold the same partition for a moment).
    await lock_order(conn, event.order_id)
    prev = await conn.fetchval(
        "SELECT hash FROM trail WHERE order_id = $1 ORDER BY seq DESC LIMIT 1", event.order_id
    )
    redacted = event.redacted()
    prev_hash = prev or GENESIS
    await conn.execute(
        """INSERT INTO trail (order_id, event_id, event_type, occurred_at, station_id, event,
               prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        event.order_id,
        event.event_id,
        event.type,
        event.occurred_at,
        getattr(event.payload, "station_id", None),
        redacted,
        prev_hash,
        link_hash(prev_hash, redacted),
    )


async def refresh_projections(conn: Connection, events: list[Envelope[Any]]) -> None:
    """Once per batch: each order's projection from its trail, which now holds the batch."""
    await refresh_orders(conn, {event.order_id for event in events})


HANDLERS: dict[type[EventPayload], Handler] = {
    cls: append_to_trail for cls in PAYLOAD_TYPES.values()
}


def consumers(pool: Pool, broker: KafkaBroker, settings: Settings) -> list[EventConsumer]:
    return [
        EventConsumer(
            name="audit",
            topics=topics.READ_BY["audit"],
            pool=pool,
            broker=broker,
            handlers=HANDLERS,
            max_event_bytes=settings.kafka.max_event_bytes,
            after_batch=refresh_projections,
        )
    ]
