"""Orders arriving from the center."""

from __future__ import annotations

from typing import Any

from services.station_worker import actions
from services.station_worker.settings import StationSettings
from shared.consumer import Applier, Handler, PerEvent
from shared.db import Connection
from shared.domain import OrderStatus
from shared.events import Envelope, EventPayload, OrderCancelled, OrderClosed, OrderDispatched


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


def applier(settings: StationSettings) -> Applier:
    return PerEvent(HANDLERS)
