"""What the center learns from the stations: each event to its flow."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from services.dispatch_center import flows
from services.dispatch_center.domain import PROGRESS
from services.dispatch_center.settings import CenterSettings
from shared import topics
from shared.consumer import EventConsumer, Handler, PerEvent
from shared.db import Connection, Pool
from shared.events import (
    Envelope,
    EventPayload,
    OrderAccepted,
    OrderReceived,
    OrderRejected,
)


def handlers(settings: CenterSettings) -> dict[type[EventPayload], Handler]:
    async def rejected(conn: Connection, event: Envelope[Any]) -> None:
        await flows.rejected(conn, settings, event)

    progress: dict[type[EventPayload], Handler] = dict.fromkeys(PROGRESS, flows.progressed)
    return {
        OrderReceived: flows.received,
        OrderAccepted: flows.accepted,
        OrderRejected: rejected,
        **progress,
    }


def consumers(pool: Pool, broker: KafkaBroker, settings: CenterSettings) -> list[EventConsumer]:
    return [
        EventConsumer(
            name="dispatch_center",
            topics=topics.READ_BY["dispatch_center"],
            pool=pool,
            broker=broker,
            applier=PerEvent(handlers(settings)),
            max_event_bytes=settings.kafka.max_event_bytes,
        )
    ]
