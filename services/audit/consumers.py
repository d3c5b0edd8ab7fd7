"""Every lifecycle event of every order, from the center and the stations, into the trail."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from services.audit import trail
from services.audit.settings import AuditSettings
from shared import topics
from shared.consumer import EventConsumer
from shared.db import Connection, Pool
from shared.events import KNOWN_TYPES, Envelope


class TrailWriter:
    def __init__(self, hmac_key: bytes) -> None:
        self._key = hmac_key

    def handles(self, event_type: str) -> bool:
        return event_type in KNOWN_TYPES

    async def apply(self, conn: Connection, events: list[Envelope[Any]]) -> None:
        await trail.append(conn, self._key, events)


def consumers(pool: Pool, broker: KafkaBroker, settings: AuditSettings) -> list[EventConsumer]:
    """One consumer: every event of every order goes into the trail, in one group."""
    applier = TrailWriter(settings.hmac_key)
    limit = settings.kafka.max_event_bytes
    audit = topics.READ_BY["audit"]
    return [
        EventConsumer(
            name="audit",
            topics=audit,
            pool=pool,
            broker=broker,
            applier=applier,
            max_event_bytes=limit,
        )
    ]
