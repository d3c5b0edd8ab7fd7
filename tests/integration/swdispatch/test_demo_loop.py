"""The demo takes its orders around the loop through the services' APIs: the station serves
them, the return visit closes them; a dissatisfied one is sent back for redo."""

from __future__ import annotations

import random
import uuid

import asyncpg
import httpx
import pytest

from swdispatch import demo, demo_loop
from tests.conftest import RunningStack
from tests.helpers import post_request
from tests.integration.dispatch_center.center_support import center_events, center_order

pytestmark = pytest.mark.integration


class Share(random.Random):
    """A generator whose ``random()`` is fixed: it picks the demo's branch."""

    def __init__(self, share: float) -> None:
        super().__init__(0)
        self.share = share

    def random(self) -> float:
        return self.share


async def _demo_order(stack: RunningStack, http: httpx.AsyncClient, seed: int) -> tuple[str, str]:
    body = demo.random_request(random.Random(seed), community="CX-XINHUA")
    resp = await post_request(http, stack, body)
    assert resp.status_code == 201, resp.text
    return resp.json()["order_id"], "st-chengxiang"


async def _loop(
    stack: RunningStack, http: httpx.AsyncClient, order_id: str, station: str, share: float
) -> None:
    await demo_loop.around_the_loop(
        http, stack.urls, stack.credentials, order_id, station, Share(share)
    )


async def test_the_demo_serves_an_order_and_its_return_visit_closes_it(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    satisfied, called = [await _demo_order(stack, http, seed) for seed in (141, 142)]
    await _loop(stack, http, *satisfied, share=0.0)
    await _loop(stack, http, *called, share=demo_loop.SATISFIED + 0.01)
    for order_id, _ in (satisfied, called):
        row = await center_order(db, order_id)
        assert row["status"] == "closed"
    visits = await center_events(db, called[0], "order.feedback_received")
    assert [(v["payload"]["source"], v["payload"]["reached"]) for v in visits] == [
        ("operator", False),
        ("operator", True),
    ]


async def test_the_demo_sends_a_dissatisfied_order_back_for_redo(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order_id, station = await _demo_order(stack, http, 143)
    await _loop(stack, http, order_id, station, share=0.8)
    row = await center_order(db, order_id)
    assert (row["send_backs"], row["dispatch_no"]) == (1, 2)
    [sent_back] = await center_events(db, order_id, "order.sent_back")
    assert sent_back["payload"]["to_station_id"] == station
    redo = (await center_events(db, order_id, "order.dispatched"))[-1]["payload"]
    assert redo["redo"]["satisfaction"] == "dissatisfied"

    station = await db.fetchrow(
        "SELECT dispatch_no, status FROM station_worker.station_orders WHERE order_id = $1",
        uuid.UUID(order_id),
    )
    assert (station["dispatch_no"], station["status"]) == (2, "completed")
    assert (await center_order(db, order_id))["status"] == "closed"
