"""What the center learns from the stations: each event to its flow."""

from __future__ import annotations

from typing import Any

from services.dispatch_center import flows
from services.dispatch_center.domain import PROGRESS
from services.dispatch_center.settings import CenterSettings
from shared.consumer import Applier, Handler, PerEvent
from shared.db import Connection
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

    async def progressed(conn: Connection, event: Envelope[Any]) -> None:
        await flows.progressed(conn, settings, event)

    progress: dict[type[EventPayload], Handler] = dict.fromkeys(PROGRESS, progressed)
    return {
        OrderReceived: flows.received,
        OrderAccepted: flows.accepted,
        OrderRejected: rejected,
        **progress,
    }


def applier(settings: CenterSettings) -> Applier:
    return PerEvent(handlers(settings))
