"""Every lifecycle event of every order, from the center and the stations, into the trail and
the timeliness projection."""

from __future__ import annotations

import uuid
from typing import Any, cast

from faststream.kafka import KafkaBroker

from services.audit.chain import GENESIS, HMAC_SHA256, link_hash
from services.audit.checkpoints import hold_off_checkpoints
from services.audit.settings import AuditSettings
from services.audit.store import lock_orders, refresh_orders
from shared import topics
from shared.consumer import EventConsumer
from shared.db import Connection, Pool
from shared.events import KNOWN_TYPES, Envelope
from shared.settings import Settings


class TrailWriter:
    """Appends a batch of events to their orders' hash chains, then refreshes those orders'
    projections: a handful of statements per batch, however many events it holds."""

    def __init__(self, hmac_key: bytes) -> None:
        self._key = hmac_key

    def handles(self, event_type: str) -> bool:
        return event_type in KNOWN_TYPES

    async def apply(self, conn: Connection, events: list[Envelope[Any]]) -> None:
        order_ids = list({event.order_id for event in events})
        await hold_off_checkpoints(conn)
        # Each link must see the one before it, whichever replica applies the event (during a
        # rebalance two may hold the same partition for a moment).
        await lock_orders(conn, order_ids)
        last_hash: dict[uuid.UUID, str] = {
            row["order_id"]: row["hash"]
            for row in await conn.fetch(
                """SELECT DISTINCT ON (order_id) order_id, hash FROM trail
                   WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, seq DESC""",
                order_ids,
            )
        }
        links = []
        for event in events:
            station_id = getattr(event.payload, "station_id", None)
            redacted = event.redacted()
            prev_hash = last_hash.get(event.order_id, GENESIS)
            last_hash[event.order_id] = link_hash(
                self._key,
                prev_hash,
                order_id=event.order_id,
                event_id=event.event_id,
                event_type=event.type,
                occurred_at=event.occurred_at,
                station_id=station_id,
                event=redacted,
            )
            links.append(
                (
                    event.order_id,
                    event.event_id,
                    event.type,
                    event.occurred_at,
                    station_id,
                    redacted,
                    prev_hash,
                    last_hash[event.order_id],
                    HMAC_SHA256,
                )
            )
        await conn.executemany(
            """INSERT INTO trail (order_id, event_id, event_type, occurred_at, station_id, event,
                   prev_hash, hash, hash_version)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            links,
        )
        await refresh_orders(conn, order_ids)


def consumers(pool: Pool, broker: KafkaBroker, settings: Settings) -> list[EventConsumer]:
    return [
        EventConsumer(
            name="audit",
            topics=topics.READ_BY["audit"],
            pool=pool,
            broker=broker,
            applier=TrailWriter(cast(AuditSettings, settings).hmac_key),
            max_event_bytes=settings.kafka.max_event_bytes,
        )
    ]
