"""The center's durable timers firing: re-sends of unacknowledged dispatches, and escalation
of orders not accepted in time.

A second dispatch-center process with short deadlines runs beside the session's one, on the
same database and broker; the orders submitted through it carry its short deadlines. Both
processes' timers read the due times from the order rows, so either may fire them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest

from shared.events import OrderAccepted
from swdispatch.embedded import free_port
from tests.conftest import RunningStack
from tests.helpers import eventually
from tests.integration.dispatch_center.center_support import (
    center_events,
    center_order,
    operator_headers,
    send_station_events,
    set_up_township,
    submit,
    t3_request,
)

pytestmark = pytest.mark.integration

ACCEPT_WITHIN_S = 2


@pytest.fixture(scope="module")
def fast_center(stack: RunningStack) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        **stack.local.env(),
        "SWD_DISPATCH_CENTER_PORT": str(port),
        "SWD_DEADLINES": json.dumps(
            {"urgent": {"dispatch": "PT1S", "accept": f"PT{ACCEPT_WITHIN_S}S"}}
        ),
        "SWD_RESEND_INTERVAL_S": "0.5",
    }
    log = (stack.local.logs / "dispatch_center_fast.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "swdispatch", "dispatch-center"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the fast dispatch center exited"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the fast dispatch center is not ready"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.fixture(scope="module")
async def township(stack: RunningStack, http: httpx.AsyncClient) -> None:
    await set_up_township(stack, http)


@pytest.mark.usefixtures("township")
async def test_unaccepted_orders_escalate_then_redispatch_or_wait_for_an_operator(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, fast_center: str
) -> None:
    # T3-ONE has fallbacks (st-t3-b, st-t3-c); T3-TWO has none.
    with_fallbacks = await submit(
        http, fast_center, stack.api_key, t3_request("T3-ONE", urgency="urgent")
    )
    without = await submit(http, fast_center, stack.api_key, t3_request("T3-TWO", urgency="urgent"))
    started = time.monotonic()

    async def redispatched() -> asyncpg.Record | None:
        row = await center_order(db, with_fallbacks["order_id"])
        return row if row["dispatch_no"] == 2 else None

    async def held() -> asyncpg.Record | None:
        row = await center_order(db, without["order_id"])
        return row if row["awaiting_operator"] else None

    moved = await eventually(redispatched, timeout_s=15)
    waiting = await eventually(held, timeout_s=15)
    assert time.monotonic() - started >= ACCEPT_WITHIN_S - 0.5  # not before the deadline

    assert (moved["status"], moved["station_id"]) == ("dispatched", "st-t3-b")
    # The next station gets the whole acceptance window again.
    window = (moved["accept_due_at"] - moved["updated_at"]).total_seconds()
    assert ACCEPT_WITHIN_S - 1 <= window <= ACCEPT_WITHIN_S + 1
    [escalated] = await center_events(db, with_fallbacks["order_id"], "order.escalated")
    assert escalated["payload"]["stage"] == "accept"
    assert escalated["payload"]["station_id"] == "st-t3-a"
    dispatches = [  # re-sends aside (a slow acknowledgement may cause one)
        d
        for d in await center_events(db, with_fallbacks["order_id"], "order.dispatched")
        if d["payload"]["resend_of"] is None
    ]
    assert [d["payload"]["station_id"] for d in dispatches] == ["st-t3-a", "st-t3-b"]
    assert dispatches[1]["payload"]["reason"] == "not accepted by st-t3-a in time"

    assert (waiting["status"], waiting["station_id"]) == ("escalated", "st-t3-b")
    assert waiting["accept_due_at"] is None  # escalated once, not again and again
    assert len(await center_events(db, without["order_id"], "order.escalated")) == 1
    view = (
        await http.get(f"{fast_center}{without['link']}", headers={"X-API-Key": stack.api_key})
    ).json()
    assert [t["status"] for t in view["timeline"]] == ["submitted", "dispatched", "escalated"]
    overdue = (
        await http.get(
            f"{fast_center}/v1/operator/orders",
            params={"overdue": "true", "awaiting_operator": "true", "limit": 500},
            headers=operator_headers(stack),
        )
    ).json()
    assert without["order_id"] in {o["order_id"] for o in overdue["items"]}
    assert all(o["overdue"] for o in overdue["items"])

    # The station accepts late, while the order waits for an operator: it is accepted.
    await send_station_events(stack, without["order_id"], OrderAccepted(station_id="st-t3-b"))

    async def accepted() -> asyncpg.Record | None:
        row = await center_order(db, without["order_id"])
        return row if row["status"] == "accepted" else None

    assert not (await eventually(accepted))["awaiting_operator"]


@pytest.mark.usefixtures("township")
async def test_an_unacknowledged_dispatch_is_resent_until_the_station_acknowledges(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, fast_center: str
) -> None:
    stack.local.stop_service("station_worker")
    try:
        created = await submit(http, fast_center, stack.api_key, t3_request("T3-TWO"))
        order_id = created["order_id"]

        async def resent() -> list[dict[str, object]]:
            dispatches = await center_events(db, order_id, "order.dispatched")
            return dispatches if len(dispatches) >= 2 else []

        original, *resends = await eventually(resent, timeout_s=15)
        assert (await center_order(db, order_id))["received_at"] is None
    finally:
        stack.local.start_service("station_worker")
        stack.local.wait_ready(("station_worker",))
    for resend in resends:
        assert resend["event_id"] != original["event_id"]
        payload = resend["payload"]
        assert isinstance(payload, dict)
        assert payload["resend_of"] == original["event_id"]
        assert payload["dispatch_no"] == 1
        assert payload["station_id"] == "st-t3-b"

    async def acknowledged() -> asyncpg.Record | None:
        row = await center_order(db, order_id)
        return row if row["received_at"] is not None else None

    row = await eventually(acknowledged, timeout_s=20)
    assert row["next_resend_at"] is None  # no more re-sends
    history = await db.fetchval(
        "SELECT count(*) FROM station_worker.order_history WHERE order_id = $1",
        uuid.UUID(order_id),
    )
    assert history == 1  # the station applied the order once


@pytest.mark.usefixtures("township")
async def test_an_order_whose_timer_fails_does_not_hold_up_the_others(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    center = stack.urls["dispatch_center"]
    healthy = (await submit(http, center, stack.api_key, t3_request("T3-TWO")))["order_id"]
    broken = (await submit(http, center, stack.api_key, t3_request("T3-TWO")))["order_id"]

    async def both_received() -> bool:
        rows = [await center_order(db, o) for o in (healthy, broken)]
        return all(r["received_at"] for r in rows)

    await eventually(both_received)
    # As if both acknowledgements were lost; one order's row no longer makes a valid event.
    await db.execute(
        """UPDATE dispatch_center.orders SET received_at = NULL, next_resend_at = now(),
               case_details = CASE WHEN id = $2 THEN '{}'::jsonb ELSE case_details END
           WHERE id = ANY($1::uuid[])""",
        [uuid.UUID(healthy), uuid.UUID(broken)],
        uuid.UUID(broken),
    )

    async def healthy_resent() -> asyncpg.Record | None:
        row = await center_order(db, healthy)
        return row if row["resends"] >= 1 and row["received_at"] else None

    await eventually(healthy_resent)
    row = await center_order(db, broken)
    assert row["resends"] == 0
    assert (row["next_resend_at"] - row["updated_at"]).total_seconds() > 30  # postponed


async def _escalated_to_b(
    http: httpx.AsyncClient, db: asyncpg.Pool, stack: RunningStack, fast_center: str
) -> tuple[str, asyncpg.Record]:
    """An order escalated from st-t3-a to st-t3-b; B's own escalation is put off, so the test
    decides what happens next. Returns the order id and its row as first dispatched."""
    created = await submit(http, fast_center, stack.api_key, t3_request("T3-ONE", urgency="urgent"))
    order_id = created["order_id"]
    first = await center_order(db, order_id)
    assert (first["station_id"], first["dispatch_no"]) == ("st-t3-a", 1)

    async def at_b() -> bool:
        moved = await db.fetchval(
            """UPDATE dispatch_center.orders SET accept_due_at = now() + interval '1 hour'
               WHERE id = $1 AND dispatch_no = 2 RETURNING station_id""",
            uuid.UUID(order_id),
        )
        return moved == "st-t3-b"

    await eventually(at_b, timeout_s=30)
    return order_id, first


async def _audit_order(db: asyncpg.Pool, order_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM audit.orders WHERE order_id = $1", uuid.UUID(order_id)
    )
    return row


@pytest.mark.usefixtures("township")
async def test_an_accept_made_in_time_that_arrives_after_the_escalation_wins(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, fast_center: str
) -> None:
    order_id, first = await _escalated_to_b(http, db, stack, fast_center)
    on_time = first["accept_due_at"] - timedelta(milliseconds=500)
    await send_station_events(
        stack, order_id, OrderAccepted(station_id="st-t3-a"), occurred_at=on_time
    )

    async def taken_back() -> asyncpg.Record | None:
        row = await center_order(db, order_id)
        return row if row["status"] == "accepted" else None

    row = await eventually(taken_back, timeout_s=30)
    assert (row["station_id"], row["dispatch_no"]) == ("st-t3-a", 3)
    assert row["accept_due_at"] is None
    last = (await center_events(db, order_id, "order.dispatched"))[-1]["payload"]
    assert (last["station_id"], last["dispatch_no"]) == ("st-t3-a", 3)
    assert datetime.fromisoformat(last["accepted_at"]) == on_time

    async def station_has_it_accepted() -> bool:
        held = await db.fetchrow(
            "SELECT station_id, status FROM station_worker.station_orders WHERE order_id = $1",
            uuid.UUID(order_id),
        )
        return held is not None and tuple(held) == ("st-t3-a", "accepted")

    await eventually(station_has_it_accepted, timeout_s=30)

    async def audit_agrees() -> asyncpg.Record | None:
        audited = await _audit_order(db, order_id)
        ok = audited and (audited["status"], audited["station_id"]) == ("accepted", "st-t3-a")
        return audited if ok else None

    audited = await eventually(audit_agrees, timeout_s=30)
    assert audited["accepted_at"] == on_time


@pytest.mark.usefixtures("township")
async def test_an_accept_made_after_the_deadline_of_a_dispatch_moved_on_from_is_dropped(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, fast_center: str
) -> None:
    order_id, first = await _escalated_to_b(http, db, stack, fast_center)
    late = first["accept_due_at"] + timedelta(milliseconds=500)
    await send_station_events(
        stack, order_id, OrderAccepted(station_id="st-t3-a"), occurred_at=late
    )
    # Then something the center does apply, so that the late accept is known to be behind us.
    await send_station_events(stack, order_id, OrderAccepted(station_id="st-t3-b"))

    async def accepted_at_b() -> asyncpg.Record | None:
        row = await center_order(db, order_id)
        return row if row["status"] == "accepted" else None

    row = await eventually(accepted_at_b, timeout_s=30)
    assert (row["station_id"], row["dispatch_no"]) == ("st-t3-b", 2)

    async def audit_agrees() -> asyncpg.Record | None:
        audited = await _audit_order(db, order_id)
        ok = audited and (audited["status"], audited["station_id"]) == ("accepted", "st-t3-b")
        return audited if ok else None

    await eventually(audit_agrees, timeout_s=30)
