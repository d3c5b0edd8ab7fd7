"""What station events and timers do to an order: each locks the order once, reads what the
decision needs, asks the domain, and writes one change.

Events about a dispatch the order has moved on from (another station, an older dispatch
number, a cancelled order) change nothing: the station worker drops such orders itself. The
exception: an accept that happened before the deadline of the dispatch the order was escalated
from wins over the redispatch (domain.accept_outcome).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.dispatch_center import domain, store
from services.dispatch_center.domain import Order
from services.dispatch_center.settings import CenterSettings
from shared.db import Connection
from shared.events import Envelope, OrderReceived, OrderRejected


async def _next_stations(conn: Connection, settings: CenterSettings, order: Order) -> list[str]:
    """The stations a redispatch may go to, best first; none once the center may not
    redispatch by itself any more."""
    if not domain.may_redispatch(settings, order):
        return []
    found = await store.candidates(
        conn, order.community_code, order.category, exclude=order.tried_stations
    )
    return found.stations if found else []


async def received(conn: Connection, event: Envelope[Any]) -> None:
    """The station has the order: its dispatch needs no resending."""
    payload: OrderReceived = event.payload
    await store.mark_received(conn, event.order_id, payload.dispatch_no, event.occurred_at)


async def accepted(conn: Connection, event: Envelope[Any]) -> None:
    order = await store.lock(conn, event.order_id)
    if order is None:
        return
    change = domain.accept_change(order, event, datetime.now(UTC))
    if change is not None:
        await store.write(conn, order, change)


async def progressed(conn: Connection, settings: CenterSettings, event: Envelope[Any]) -> None:
    """order.assigned, order.started, order.completed (then awaiting feedback)."""
    order = await store.lock(conn, event.order_id)
    if order is None:
        return
    change = domain.progress_change(settings, order, event, datetime.now(UTC))
    if change is not None:
        await store.write(conn, order, change)


async def rejected(conn: Connection, settings: CenterSettings, event: Envelope[Any]) -> None:
    """The station returned the order: the next fallback station, or an operator."""
    p: OrderRejected = event.payload
    order = await store.lock(conn, event.order_id)
    if order is None or not domain.rejection_counts(order, p):
        return
    stations = await _next_stations(conn, settings, order)
    change = domain.reject_change(settings, order, event, stations, datetime.now(UTC))
    await store.write(conn, order, change)


async def resend(conn: Connection, settings: CenterSettings, order: Order, now: datetime) -> None:
    """A locked order whose dispatch is unacknowledged."""
    await store.write(conn, order, domain.resend_change(settings, order, now))


async def escalate(conn: Connection, settings: CenterSettings, order: Order, now: datetime) -> None:
    """A locked order not accepted in time: escalated, then redispatched or held."""
    stations = await _next_stations(conn, settings, order)
    await store.write(conn, order, domain.escalate_change(settings, order, stations, now))


async def close_unanswered(
    conn: Connection, settings: CenterSettings, order: Order, now: datetime
) -> None:
    """A locked order whose return visit did not come in time: closed without feedback."""
    await store.write(conn, order, domain.unanswered_change(order, now))
