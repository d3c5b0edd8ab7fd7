"""The return visit (回访) and what follows it: feedback from the order's integration or an
operator's visit or call, closing, and the send-back for redo (发回重办).

Each locks the order once, asks the domain, and writes one change; the counters count after the
transaction committed. The feedback's comment is personal data: it goes into the event only
(the audit redacts it), never into a log, a timeline or a callback.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prometheus_client import Counter

from services.dispatch_center import domain, store
from services.dispatch_center.domain import Feedback, Integration, Operator, Order
from services.dispatch_center.settings import CenterSettings
from shared.db import Pool
from shared.errors import NotFound
from shared.events import Actor

FEEDBACK = Counter(
    "swd_feedback_total",
    "Answered return visits (feedback) by satisfaction and the station that served the order",
    ["satisfaction", "station"],
)
SEND_BACKS = Counter(
    "swd_send_backs_total",
    "Orders sent back for redo, by the station that served them",
    ["station"],
)


def _counted(order: Order, feedback: Feedback) -> None:
    if feedback.reached and feedback.satisfaction is not None:
        FEEDBACK.labels(feedback.satisfaction.value, order.station_id or "").inc()


async def _give(
    pool: Pool,
    order_id: uuid.UUID,
    integration_id: str | None,
    feedback: Feedback,
    actor: Actor,
    scope: tuple[str, ...] | None = None,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        order = await store.lock(conn, order_id, scope=scope)
        if order is None or (integration_id is not None and order.integration_id != integration_id):
            raise NotFound("no such request" if integration_id else "no such order")
        change = domain.feedback_change(order, feedback, actor=actor, at=datetime.now(UTC))
        await store.write(conn, order, change)
    _counted(order, feedback)


async def integration_feedback(
    pool: Pool, integration: Integration, order_id: uuid.UUID, feedback: Feedback
) -> None:
    """Feedback from the order's own integration; 404 for another integration's order."""
    actor = Actor(kind="integration", id=integration.id)
    await _give(pool, order_id, integration.id, feedback, actor)


async def return_visit(
    pool: Pool, operator: Operator, order_id: uuid.UUID, feedback: Feedback
) -> None:
    """An operator's visit or call; one that reached nobody is recorded only. 404 outside
    the operator's scope."""
    await _give(pool, order_id, None, feedback, operator.actor, operator.stations)


async def send_back(
    pool: Pool,
    settings: CenterSettings,
    operator: Operator,
    order_id: uuid.UUID,
    reason: str,
    station_id: str | None,
) -> None:
    """Send an order waiting after a negative return visit back for redo, to the station
    that served it or ``station_id``."""
    async with pool.acquire() as conn, conn.transaction():
        order = await store.lock(conn, order_id, scope=operator.stations)
        if order is None:
            raise NotFound("no such order")
        to_station = station_id or order.station_id
        active = to_station is not None and await store.station_active(conn, to_station)
        change = domain.send_back_change(
            settings,
            order,
            to_station or "",
            to_station is not None and domain.station_usable(operator, to_station, active),
            reason=reason,
            actor=operator.actor,
            now=datetime.now(UTC),
        )
        await store.write(conn, order, change)
    SEND_BACKS.labels(order.station_id or "").inc()
