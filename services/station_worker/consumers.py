"""Orders arriving from the center."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from services.station_worker import actions
from shared import topics
from shared.consumer import EventConsumer, Handler, PerEvent
from shared.db import Connection, Pool
from shared.domain import OrderStatus
from shared.events import Envelope, EventPayload, OrderCancelled, OrderClosed, OrderDispatched
from shared.settings import Settings


async def on_dispatched(conn: Connection, event: Envelope[Any]) -> None:
    await actions.receive(conn, event)


async def on_cancelled(conn: Connection, event: Envelope[Any]) -> None:
    """The center cancelled the order: it leaves the active queue; later actions get 409."""
    p: OrderCancelled = event.payload
    await actions.end(conn, event, OrderStatus.CANCELLED, actions.CANCELLABLE, p.reason)


async def on_closed(conn: Connection, event: Envelope[Any]) -> None:
    """The center closed a completed order (after feedback, or without)."""
    await actions.end(conn, event, OrderStatus.CLOSED, (OrderStatus.COMPLETED,), None)


HANDLERS: dict[type[EventPayload], Handler] = {
    OrderDispatched: on_dispatched,
    OrderCancelled: on_cancelled,
    OrderClosed: on_closed,
}


def consumers(pool: Pool, broker: KafkaBroker, settings: Settings) -> list[EventConsumer]:
    return [
        EventConsumer(
            name="station_worker",
            topics=topics.READ_BY["station_worker"],
            pool=pool,
            broker=broker,
            applier=PerEvent(HANDLERS),
            max_event_bytes=settings.kafka.max_event_bytes,
        )
    ]
