"""The closed loop across the three services, through their APIs only: an integration's
request is served by a real station, the return visit (回访) finds it unresolved, an operator
sends it back for redo (发回重办), the station redoes it, and the second return visit closes it.
The integration's callbacks carry every public status in order; the audit's trail has every
step and none of the personal data."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import eventually, get_json_when, remember_personal_data
from tests.integration.dispatch_center.center_support import (
    Receiver,
    new_integration,
    operator_headers,
    serving,
    submit,
)
from tests.integration.station_worker.station import OwnStation, order_when, routed_station

pytestmark = pytest.mark.integration

COMMENT = "Grandma Zhou says the carer never came on Thursdays"
PLAN = "check the Thursday carer visits with Grandma Zhou"
remember_personal_data(COMMENT, PLAN)


async def _act(
    http: httpx.AsyncClient,
    station: OwnStation,
    order_id: str,
    action: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    resp = await http.post(
        f"{station.base}/v1/orders/{order_id}/{action}", json=body, headers=station.auth(token)
    )
    assert resp.status_code == 200, (action, resp.text)
    done: dict[str, Any] = resp.json()
    return done


async def _serve(
    http: httpx.AsyncClient, station: OwnStation, order_id: str, completion: dict[str, Any]
) -> None:
    ((worker, token),) = station.workers.items()
    await _act(http, station, order_id, "accept")
    await _act(http, station, order_id, "assign", {"worker_id": worker})
    await _act(http, station, order_id, "start", token=token)
    await _act(http, station, order_id, "complete", completion, token=token)


async def _center_status(
    http: httpx.AsyncClient, stack: RunningStack, key: str, order_id: str, status: str
) -> dict[str, Any]:
    return await get_json_when(
        http,
        f"{stack.urls['dispatch_center']}/v1/requests/{order_id}",
        {"X-API-Key": key},
        lambda order: order["status"] == status,
    )


async def test_an_unresolved_order_is_sent_back_redone_by_its_station_and_closed(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station, location = await routed_station(stack, db, [("sw1", [], 5, True)])
    integration = await new_integration(stack, http)
    key = integration["api_key"]
    receiver = Receiver(failures=0)
    follow_up_by = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    async with serving(receiver) as url:
        body = request_body(77, urgency="urgent", category="elder_care", callback_url=url)
        body["location"] |= location
        order_id = (await submit(http, stack.urls["dispatch_center"], key, body))["order_id"]

        first = await order_when(http, station, order_id, "dispatched")
        assert first["redo"] is None
        await _serve(
            http,
            station,
            order_id,
            {
                "outcome": "served",
                "service_minutes": 40,
                "summary": "Arranged a carer for Thursdays.",
                "follow_up_needed": True,
                "follow_up_by": follow_up_by,
                "follow_up_plan": PLAN,
            },
        )
        await _center_status(http, stack, key, order_id, "awaiting_feedback")
        unresolved = await http.post(
            f"{stack.urls['dispatch_center']}/v1/requests/{order_id}/feedback",
            json={"resolved": False, "satisfaction": "dissatisfied", "comment": COMMENT},
            headers={"X-API-Key": key},
        )
        assert unresolved.status_code == 200, unresolved.text
        sent_back = await http.post(
            f"{stack.urls['dispatch_center']}/v1/operator/orders/{order_id}/send-back",
            json={"reason": "the carer did not come on Thursdays"},
            headers=operator_headers(stack),
        )
        assert sent_back.status_code == 200, sent_back.text

        # The station has it again, marked as a redo, with deadlines counted afresh.
        redo = await get_json_when(
            http,
            f"{station.base}/v1/orders/{order_id}",
            station.auth(),
            lambda order: order["dispatch_no"] == 2 and order["status"] == "dispatched",
        )
        assert redo["redo"] == {
            "send_back_no": 1,
            "reason": "the carer did not come on Thursdays",
            "resolved": False,
            "satisfaction": "dissatisfied",
        }
        for stage in ("accept_by", "assign_by", "complete_by"):
            assert redo["deadlines"][stage] > first["deadlines"][stage], stage
        assert redo["deadlines"]["dispatch_by"] == first["deadlines"]["dispatch_by"]
        queue = (
            await http.get(
                f"{station.base}/v1/stations/{station.id}/orders", headers=station.auth()
            )
        ).json()
        [row] = [o for o in queue["orders"] if o["order_id"] == order_id]
        assert row["redo"]["send_back_no"] == 1

        await _serve(
            http,
            station,
            order_id,
            {
                "outcome": "served",
                "service_minutes": 30,
                "summary": "The carer now comes on Thursdays.",
                "follow_up_needed": False,
            },
        )
        await _center_status(http, stack, key, order_id, "awaiting_feedback")
        resolved = await http.post(
            f"{stack.urls['dispatch_center']}/v1/requests/{order_id}/feedback",
            json={"resolved": True, "satisfaction": "very_satisfied"},
            headers={"X-API-Key": key},
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "closed"
        again = await http.post(
            f"{stack.urls['dispatch_center']}/v1/requests/{order_id}/feedback",
            json={"resolved": True, "satisfaction": "satisfied"},
            headers={"X-API-Key": key},
        )
        assert again.status_code == 409
        await order_when(http, station, order_id, "closed")

        statuses = [
            "submitted",
            "dispatched",
            "accepted",
            "assigned",
            "in_service",
            "completed",
            "awaiting_feedback",
            "sent_back",
            "dispatched",
            "accepted",
            "assigned",
            "in_service",
            "completed",
            "awaiting_feedback",
            "closed",
        ]
        await eventually(lambda: asyncio.sleep(0, len(receiver.calls) >= len(statuses)))
        await asyncio.sleep(0.3)  # nothing more comes
    assert [json.loads(call_body)["status"] for _, _, call_body in receiver.calls] == statuses
    assert COMMENT not in str(receiver.calls)

    trail = await get_json_when(
        http,
        f"{stack.urls['audit']}/v1/orders/{order_id}/trail",
        {"Authorization": f"Bearer {stack.supervisor_token}"},
        lambda t: any(e["event_type"] == "order.closed" for e in t),
    )
    loop_steps = [
        e["event_type"]
        for e in trail
        if e["event_type"]
        in {
            "order.completed",
            "order.awaiting_feedback",
            "order.feedback_received",
            "order.sent_back",
            "order.dispatched",
            "order.closed",
        }
    ]
    assert loop_steps == [
        "order.dispatched",
        "order.completed",
        "order.awaiting_feedback",
        "order.feedback_received",
        "order.sent_back",
        "order.dispatched",
        "order.completed",
        "order.awaiting_feedback",
        "order.feedback_received",
        "order.closed",
    ]
    assert COMMENT not in json.dumps(trail)
    assert PLAN not in json.dumps(trail)
