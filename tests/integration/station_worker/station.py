"""Test stations of their own for the dashboard tests: staff, workers and dispatched orders.

Each test gets a station no other test uses, so listings, loads and streams are its own. Orders
arrive the way the center sends them: an ``order.dispatched`` event on the center's topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from services.dispatch_center.admin import upsert_community, upsert_station
from services.station_worker.admin import create_staff, create_worker
from shared import topics
from shared.db import transaction_in
from shared.domain import Satisfaction
from shared.events import (
    SYSTEM,
    Deadlines,
    Envelope,
    EventPayload,
    Location,
    OrderDispatched,
    Redo,
    new_event,
)
from tests.conftest import RunningStack
from tests.factories import events as center_events
from tests.helpers import eventually


@dataclass
class OwnStation:
    id: str
    base: str
    manager: str
    workers: dict[str, str] = field(default_factory=dict)
    """worker id -> bearer token"""

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.manager}"}


async def new_station(
    stack: RunningStack, db: asyncpg.Pool, workers: Sequence[tuple[str, list[str], int, bool]] = ()
) -> OwnStation:
    """A station with a manager and social workers (name, skills, capacity, on duty)."""
    station_id = f"st-test-{uuid.uuid4().hex[:8]}"
    async with transaction_in("station_worker", stack.database_url) as conn:
        manager = await create_staff(
            conn, station_id, "station_manager", "Test manager", f"{station_id}-manager"
        )
        station = OwnStation(station_id, stack.urls["station_worker"], manager)
        for name, skills, capacity, on_duty in workers:
            worker_id = f"{station_id}-{name}"
            station.workers[worker_id] = await create_staff(
                conn, station_id, "social_worker", f"Worker {name}", worker_id
            )
            await create_worker(conn, worker_id, station_id, skills, capacity, on_duty)
    return station


async def routed_station(
    stack: RunningStack, db: asyncpg.Pool, workers: Sequence[tuple[str, list[str], int, bool]] = ()
) -> tuple[OwnStation, dict[str, str]]:
    """A station of its own that the center routes one new community to; the location fields
    of a request for that community."""
    station = await new_station(stack, db, workers)
    suffix = station.id.removeprefix("st-test-").upper()
    township, community = f"TS-{suffix}", f"UI-{suffix}"
    async with transaction_in("dispatch_center", stack.database_url) as conn:
        await upsert_station(conn, station.id, "Routed test station", township)
        await upsert_community(conn, community, "Routed test village", township, station.id)
    return station, {"township_code": township, "community_code": community}


def dispatched(
    station_id: str,
    *,
    order_id: uuid.UUID | None = None,
    category: str = "elder_care",
    urgency: str = "routine",
    accept_in: timedelta = timedelta(hours=24),
    dispatch_no: int = 1,
) -> Any:
    return center_events.dispatched(
        station_id,
        order_id=order_id,
        category=category,
        urgency=urgency,
        accept_in=accept_in,
        dispatch_no=dispatch_no,
        location=Location(township_code="TS-T", community_code="T-VILLAGE"),
    )


def redo_dispatched(
    station_id: str,
    order_id: uuid.UUID | str,
    dispatch_no: int,
    *,
    send_back_no: int = 1,
    reason: str = "The resident says the meals never came",
    accept_in: timedelta = timedelta(hours=4),
) -> Envelope[OrderDispatched]:
    """The dispatch the center sends after a send-back for redo: a higher ``dispatch_no`` and
    deadlines counted afresh from now."""
    now = datetime.now(UTC)
    event: Envelope[OrderDispatched] = dispatched(
        station_id, order_id=uuid.UUID(str(order_id)), dispatch_no=dispatch_no
    )
    payload = event.payload.model_copy(
        update={
            "reason": "sent back for redo",
            "redo": Redo(
                send_back_no=send_back_no,
                reason=reason,
                resolved=False,
                satisfaction=Satisfaction.DISSATISFIED,
            ),
            "deadlines": Deadlines(
                dispatch_by=now,
                accept_by=now + accept_in,
                assign_by=now + accept_in + timedelta(hours=1),
                complete_by=now + accept_in + timedelta(days=1),
            ),
        }
    )
    return new_event(payload, order_id=event.order_id, actor=SYSTEM)


async def publish_events(stack: RunningStack, *events: Envelope[Any]) -> None:
    """Send these very events (their ids too: a redelivery is a duplicate)."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topics.CENTER_EVENTS, event.to_json().encode(), key=str(event.order_id).encode()
            )
    finally:
        await producer.stop()


async def publish(stack: RunningStack, *payloads: tuple[uuid.UUID, EventPayload]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for order_id, payload in payloads:
            event = new_event(payload, order_id=order_id, actor=SYSTEM)
            await producer.send_and_wait(
                topics.CENTER_EVENTS, event.to_json().encode(), key=str(order_id).encode()
            )
    finally:
        await producer.stop()


async def dispatch(
    stack: RunningStack, http: httpx.AsyncClient, station: OwnStation, **kwargs: Any
) -> dict[str, Any]:
    """Send an order to the station and return it once the station has queued it."""
    event = dispatched(station.id, **kwargs)
    await publish(stack, (event.order_id, event.payload))
    return await order_when(http, station, event.order_id)


async def order_when(
    http: httpx.AsyncClient,
    station: OwnStation,
    order_id: uuid.UUID | str,
    status: str | None = None,
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        resp = await http.get(f"{station.base}/v1/orders/{order_id}", headers=station.auth())
        if resp.status_code == 200 and status in (None, resp.json()["status"]):
            body: dict[str, Any] = resp.json()
            return body
        return None

    return await eventually(probe)
