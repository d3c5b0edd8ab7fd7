"""What the dispatch center's integration tests share: a township of their own (so routing
changes touch no other test's orders), station events sent as a station would, lookups."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaProducer
from starlette.requests import Request
from starlette.responses import Response

from shared import topics
from shared.events import Actor, EventPayload, new_event
from swdispatch.embedded import free_port
from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import eventually

TOWNSHIP = "TS-T3"
STATIONS = ("st-t3-a", "st-t3-b", "st-t3-c", "st-t3-d", "st-t3-rehab", "st-t3-off")
# community -> (covering station, fallbacks)
COMMUNITIES: dict[str, tuple[str | None, list[str]]] = {
    "T3-ONE": ("st-t3-a", ["st-t3-b", "st-t3-c"]),
    "T3-TWO": ("st-t3-b", []),
    "T3-THREE": ("st-t3-off", ["st-t3-b"]),
    "T3-NONE": (None, []),
    "T3-FOUR": ("st-t3-a", ["st-t3-b", "st-t3-c", "st-t3-rehab", "st-t3-d"]),
}


def operator_headers(stack: RunningStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.operator_token}"}


async def set_up_township(stack: RunningStack, http: httpx.AsyncClient) -> None:
    """Through the operator API: stations, coverage with fallbacks, a category override."""
    base = f"{stack.urls['dispatch_center']}/v1/operator"
    headers = operator_headers(stack)
    for station in STATIONS:
        resp = await http.put(
            f"{base}/stations/{station}",
            json={
                "name": f"Test station {station}",
                "township_code": TOWNSHIP,
                "active": station != "st-t3-off",
                "reason": "test township",
            },
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
    for code, (station, fallbacks) in COMMUNITIES.items():
        resp = await http.put(
            f"{base}/communities/{code}",
            json={
                "name": f"Test community {code}",
                "township_code": TOWNSHIP,
                "station_id": station,
                "fallbacks": fallbacks,
                "reason": "test township",
            },
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
    resp = await http.put(
        f"{base}/overrides/{TOWNSHIP}/disability_rehabilitation",
        json={"station_id": "st-t3-rehab", "reason": "st-t3-rehab has the rehabilitation team"},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text


def t3_request(community: str, **overrides: Any) -> dict[str, Any]:
    body = request_body(**overrides)
    body["location"] |= {"township_code": TOWNSHIP, "community_code": community}
    if body["category"] == "disability_rehabilitation" and "category" not in overrides:
        body["category"] = "elder_care"
    return body


async def submit(
    http: httpx.AsyncClient, center_url: str, key: str, body: dict[str, Any]
) -> dict[str, Any]:
    resp = await http.post(f"{center_url}/v1/requests", json=body, headers={"X-API-Key": key})
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def send_station_events(
    stack: RunningStack, order_id: str, *payloads: EventPayload, occurred_at: datetime | None = None
) -> None:
    """Publish events to the station topic as the station worker would (at ``occurred_at``:
    as if delayed on the way)."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for payload in payloads:
            event = new_event(
                payload,
                order_id=uuid.UUID(order_id),
                actor=Actor(kind="station_staff", id="t3-manager"),
                occurred_at=occurred_at,
            )
            await producer.send_and_wait(
                topics.STATION_EVENTS, event.to_json().encode(), key=order_id.encode()
            )
    finally:
        await producer.stop()


async def center_order(db: asyncpg.Pool, order_id: str) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT * FROM dispatch_center.orders WHERE id = $1", uuid.UUID(order_id)
    )
    assert row is not None
    return row


async def center_events(db: asyncpg.Pool, order_id: str, event_type: str) -> list[dict[str, Any]]:
    """The center's events of one type for an order, in the order they were written."""
    import json

    rows = await db.fetch(
        "SELECT body FROM dispatch_center.outbox WHERE key = $1 AND event_type = $2 ORDER BY id",
        order_id,
        event_type,
    )
    return [json.loads(r["body"]) for r in rows]


async def new_integration(
    stack: RunningStack, http: httpx.AsyncClient, **extra: Any
) -> dict[str, Any]:
    resp = await http.post(
        f"{stack.urls['dispatch_center']}/v1/operator/integrations",
        json={"name": f"test-{uuid.uuid4().hex[:8]}", "reason": "test", **extra},
        headers=operator_headers(stack),
    )
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


@dataclass
class Receiver:
    """An integration's callback endpoint: fails the first ``failures`` requests."""

    failures: int
    calls: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body = await request.body()
        code = 500 if len(self.calls) < self.failures else 200
        self.calls.append((code, dict(request.headers), body))
        await Response(status_code=code)(scope, receive, send)


@contextlib.asynccontextmanager
async def serving(app: Receiver) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started))
    try:
        yield f"http://127.0.0.1:{port}/swd-callbacks"
    finally:
        server.should_exit = True
        await task
