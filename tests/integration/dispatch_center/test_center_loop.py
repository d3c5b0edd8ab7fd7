"""The closed loop at the center, on the real stack through its HTTP API: a completion awaits
the return visit (回访); feedback from the integration or an operator closes the order or
holds it; an operator sends it back for redo (发回重办) with fresh deadlines; the third
send-back opens supervision; no feedback in time closes it without feedback. The station's
events are scripted, as a station would send them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.dispatch_center.settings import DEFAULT_DEADLINES
from shared.domain import Stage, Urgency
from shared.events import OrderAccepted, OrderAssigned, OrderCompleted, OrderStarted
from tests.conftest import RunningStack
from tests.helpers import eventually, remember_personal_data
from tests.integration.dispatch_center.center_support import (
    Receiver,
    center_events,
    center_order,
    new_integration,
    operator_headers,
    send_station_events,
    serving,
    set_up_township,
    submit,
    t3_request,
)

pytestmark = pytest.mark.integration

# The feedback's comment is personal data: never in a log, a callback or a timeline.
COMMENT = "Mrs Qian says the new handrail wobbles near the stairs"
VISIT_NOTE = "called the daughter on 138 0000 1111, no answer"
remember_personal_data(COMMENT, VISIT_NOTE)

STATION = "st-t3-b"  # T3-TWO's only station
SEVEN_DAYS = timedelta(days=7)


@pytest.fixture(scope="module")
async def township(stack: RunningStack, http: httpx.AsyncClient) -> None:
    await set_up_township(stack, http)


def _center(stack: RunningStack) -> str:
    return stack.urls["dispatch_center"]


async def _status(db: asyncpg.Pool, order_id: str, status: str, **columns: Any) -> asyncpg.Record:
    async def there() -> asyncpg.Record | None:
        row = await center_order(db, order_id)
        ok = row["status"] == status and all(row[k] == v for k, v in columns.items())
        return row if ok else None

    return await eventually(there, timeout_s=20)


async def _serve(
    stack: RunningStack, db: asyncpg.Pool, order_id: str, dispatch_no: int, station: str = STATION
) -> asyncpg.Record:
    """The station accepts, assigns, starts and completes dispatch ``dispatch_no``; returns
    the order awaiting its return visit."""
    await _status(db, order_id, "dispatched", dispatch_no=dispatch_no, station_id=station)
    await send_station_events(
        stack,
        order_id,
        OrderAccepted(station_id=station),
        OrderAssigned(station_id=station, worker_id="w-loop"),
        OrderStarted(station_id=station, worker_id="w-loop"),
        OrderCompleted(
            station_id=station,
            worker_id="w-loop",
            outcome="resolved",
            service_minutes=30,
            follow_up_needed=False,
            summary="fitted a handrail",
        ),
    )
    return await _status(db, order_id, "awaiting_feedback", dispatch_no=dispatch_no)


async def _completed_order(
    stack: RunningStack,
    http: httpx.AsyncClient,
    db: asyncpg.Pool,
    key: str | None = None,
    **request: Any,
) -> str:
    created = await submit(
        http, _center(stack), key or stack.api_key, t3_request("T3-TWO", **request)
    )
    await _serve(stack, db, created["order_id"], 1)
    return str(created["order_id"])


async def _feedback(
    http: httpx.AsyncClient, stack: RunningStack, order_id: str, key: str | None = None, **body: Any
) -> httpx.Response:
    return await http.post(
        f"{_center(stack)}/v1/requests/{order_id}/feedback",
        json=body,
        headers={"X-API-Key": key or stack.api_key},
    )


async def _visit(
    http: httpx.AsyncClient, stack: RunningStack, order_id: str, headers: Any = None, **body: Any
) -> httpx.Response:
    return await http.post(
        f"{_center(stack)}/v1/operator/orders/{order_id}/return-visit",
        json=body,
        headers=headers or operator_headers(stack),
    )


async def _send_back(
    http: httpx.AsyncClient, stack: RunningStack, order_id: str, headers: Any = None, **body: Any
) -> httpx.Response:
    return await http.post(
        f"{_center(stack)}/v1/operator/orders/{order_id}/send-back",
        json=body,
        headers=headers or operator_headers(stack),
    )


async def _callbacks(db: asyncpg.Pool, order_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT body FROM dispatch_center.callbacks WHERE order_id = $1 ORDER BY id",
        uuid.UUID(order_id),
    )
    return [json.loads(r["body"]) for r in rows]


def _metric(text: str, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{"):
            sample, value = line.rsplit(" ", 1)
            have = sample[len(name) + 1 : -1].split(",")
            if ",".join(sorted(have)) == wanted:
                return float(value)
    return 0.0


async def _metrics(http: httpx.AsyncClient, stack: RunningStack) -> str:
    return (await http.get(f"{_center(stack)}/metrics")).text


# --- feedback closes the order ----------------------------------------------------------------


@pytest.mark.usefixtures("township")
async def test_integration_feedback_closes_a_completed_order_and_callbacks_carry_each_status(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    integration = await new_integration(stack, http)
    key = integration["api_key"]
    before = _metric(
        await _metrics(http, stack), "swd_feedback_total", satisfaction="satisfied", station=STATION
    )
    receiver = Receiver(failures=0)
    async with serving(receiver) as url:
        order_id = await _completed_order(stack, http, db, key, callback_url=url)
        row = await center_order(db, order_id)
        [awaiting] = await center_events(db, order_id, "order.awaiting_feedback")
        at = {
            t["status"]: t["at"]
            for t in await db.fetch(
                "SELECT status, at FROM dispatch_center.order_timeline"
                " WHERE order_id = $1 AND status IN ('completed', 'awaiting_feedback')",
                uuid.UUID(order_id),
            )
        }
        due = datetime.fromisoformat(awaiting["payload"]["feedback_due_at"])
        # Seven days from when the center learned of the completion, never before it.
        assert due == at["awaiting_feedback"] + SEVEN_DAYS
        assert at["completed"] <= at["awaiting_feedback"]
        assert row["feedback_due_at"] == due
        assert awaiting["payload"]["station_id"] == STATION

        resp = await _feedback(
            http, stack, order_id, key, resolved=True, satisfaction="satisfied", comment=COMMENT
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "closed"
        statuses = [
            "submitted",
            "dispatched",
            "accepted",
            "assigned",
            "in_service",
            "completed",
            "awaiting_feedback",
            "closed",
        ]
        await eventually(lambda: asyncio.sleep(0, len(receiver.calls) >= len(statuses)))
        await asyncio.sleep(0.3)  # nothing more may come
    assert [json.loads(body)["status"] for _, _, body in receiver.calls] == statuses
    assert [t["status"] for t in resp.json()["timeline"]] == statuses
    assert COMMENT not in str(receiver.calls)

    [received] = await center_events(db, order_id, "order.feedback_received")
    p = received["payload"]
    assert (p["source"], p["reached"], p["resolved"], p["satisfaction"]) == (
        "integration",
        True,
        True,
        "satisfied",
    )
    assert p["comment"] == COMMENT  # in the event only (the audit redacts it)
    assert received["actor"] == {"kind": "integration", "id": integration["id"]}
    [closed] = await center_events(db, order_id, "order.closed")
    assert closed["payload"] == {"station_id": STATION, "without_feedback": False}
    row = await center_order(db, order_id)
    assert (row["status"], row["feedback_due_at"], row["awaiting_operator"]) == (
        "closed",
        None,
        False,
    )
    timeline = await db.fetch(
        "SELECT reason FROM dispatch_center.order_timeline WHERE order_id = $1",
        uuid.UUID(order_id),
    )
    assert COMMENT not in str([t["reason"] for t in timeline])

    # The audit keeps the event, its comment redacted.
    async def audited() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await db.fetchrow(
            "SELECT event::text AS event FROM audit.trail"
            " WHERE order_id = $1 AND event_type = 'order.feedback_received'",
            uuid.UUID(order_id),
        )
        return row

    assert COMMENT not in (await eventually(audited, timeout_s=30))["event"]

    # The first feedback counted; a later one is 409 with the current status.
    again = await _feedback(http, stack, order_id, key, resolved=False, satisfaction="dissatisfied")
    assert again.status_code == 409
    assert again.json()["current"]["status"] == "closed"
    after = _metric(
        await _metrics(http, stack), "swd_feedback_total", satisfaction="satisfied", station=STATION
    )
    assert after == before + 1


@pytest.mark.usefixtures("township")
async def test_an_operator_return_visit_that_reached_nobody_changes_nothing_then_one_closes(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order_id = await _completed_order(stack, http, db)
    missing = await _visit(http, stack, order_id, reached=True, resolved=True)
    assert missing.status_code == 422
    assert [e["loc"] for e in missing.json()["errors"]] == [["body", "satisfaction"]]

    nobody = await _visit(http, stack, order_id, reached=False, comment=VISIT_NOTE)
    assert nobody.status_code == 200, nobody.text
    assert nobody.json()["status"] == "awaiting_feedback"
    assert nobody.json()["awaiting_operator"] is False
    row = await center_order(db, order_id)
    assert row["feedback_at"] is None
    assert row["feedback_due_at"] is not None  # still waiting

    reached = await _visit(
        http, stack, order_id, reached=True, resolved=True, satisfaction="very_satisfied"
    )
    assert reached.status_code == 200, reached.text
    assert reached.json()["status"] == "closed"
    visits = await center_events(db, order_id, "order.feedback_received")
    assert [(v["payload"]["reached"], v["payload"]["source"]) for v in visits] == [
        (False, "operator"),
        (True, "operator"),
    ]
    assert visits[0]["payload"]["comment"] == VISIT_NOTE
    assert visits[1]["actor"]["kind"] == "operator"
    assert len(await center_events(db, order_id, "order.closed")) == 1
    late = await _visit(http, stack, order_id, reached=False)
    assert late.status_code == 409


@pytest.mark.usefixtures("township")
async def test_two_racing_feedbacks_one_wins_one_is_409(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order_id = await _completed_order(stack, http, db)
    first, second = await asyncio.gather(
        _feedback(http, stack, order_id, resolved=True, satisfaction="satisfied"),
        _visit(http, stack, order_id, reached=True, resolved=False, satisfaction="neutral"),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    answered = [
        e
        for e in await center_events(db, order_id, "order.feedback_received")
        if e["payload"]["reached"]
    ]
    assert len(answered) == 1


@pytest.mark.usefixtures("township")
async def test_a_completion_crossing_an_operators_redispatch_still_awaits_feedback(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    created = await submit(http, _center(stack), stack.api_key, t3_request("T3-TWO"))
    order_id = created["order_id"]
    await _status(db, order_id, "dispatched", dispatch_no=1)
    await send_station_events(
        stack,
        order_id,
        OrderAccepted(station_id=STATION),
        OrderAssigned(station_id=STATION, worker_id="w-loop"),
    )
    await _status(db, order_id, "assigned")
    moved = await http.post(
        f"{_center(stack)}/v1/operator/orders/{order_id}/redispatch",
        json={"station_id": "st-t3-a", "reason": "try another station"},
        headers=operator_headers(stack),
    )
    assert moved.status_code == 200, moved.text
    # The visit was made before the redispatch reached the station.
    await send_station_events(
        stack,
        order_id,
        OrderCompleted(
            station_id=STATION,
            worker_id="w-loop",
            outcome="resolved",
            service_minutes=30,
            follow_up_needed=False,
            summary="fitted a handrail",
        ),
    )
    row = await _status(db, order_id, "awaiting_feedback")
    assert (row["station_id"], row["accept_due_at"], row["next_resend_at"]) == (STATION, None, None)
    # Served: an operator may not redispatch it any more, the return visit is next.
    again = await http.post(
        f"{_center(stack)}/v1/operator/orders/{order_id}/redispatch",
        json={"station_id": "st-t3-a", "reason": "again"},
        headers=operator_headers(stack),
    )
    assert again.status_code == 409
    assert again.json()["current"]["status"] == "awaiting_feedback"


# --- send-back for redo ------------------------------------------------------------------------


@pytest.mark.usefixtures("township")
async def test_dissatisfied_feedback_waits_for_an_operator_who_sends_it_back_for_redo(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    before = _metric(await _metrics(http, stack), "swd_send_backs_total", station=STATION)
    receiver = Receiver(failures=0)
    async with serving(receiver) as url:
        order_id = await _completed_order(stack, http, db, urgency="urgent", callback_url=url)
        first = await center_order(db, order_id)
        # Not yet: no feedback has come.
        early = await _send_back(http, stack, order_id, reason="too early")
        assert early.status_code == 409
        assert early.json()["current"]["status"] == "awaiting_feedback"

        resp = await _feedback(
            http, stack, order_id, resolved=False, satisfaction="dissatisfied", comment=COMMENT
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "awaiting_feedback"
        waiting = (
            await http.get(
                f"{_center(stack)}/v1/operator/orders",
                params={"awaiting_operator": "true", "status": "awaiting_feedback", "limit": 500},
                headers=operator_headers(stack),
            )
        ).json()["items"]
        [held] = [o for o in waiting if o["order_id"] == order_id]
        assert "not resolved" in held["hold_reason"]
        assert "dissatisfied" in held["hold_reason"]
        assert held["feedback_due_at"] is None

        unknown = await _send_back(http, stack, order_id, reason="r", station_id="st-t3-off")
        assert unknown.status_code == 422
        assert [e["loc"] for e in unknown.json()["errors"]] == [["body", "station_id"]]

        sent_at = datetime.now(UTC)
        sent = await _send_back(http, stack, order_id, reason="the handrail still wobbles")
        assert sent.status_code == 200, sent.text
        detail = sent.json()
        assert (detail["status"], detail["dispatch_no"], detail["station_id"]) == (
            "dispatched",
            2,
            STATION,
        )
        assert detail["send_backs"] == 1
        assert detail["awaiting_operator"] is False

        [sent_back] = await center_events(db, order_id, "order.sent_back")
        assert sent_back["payload"] == {
            "station_id": STATION,
            "to_station_id": STATION,
            "send_back_no": 1,
            "reason": "the handrail still wobbles",
        }
        redo = (await center_events(db, order_id, "order.dispatched"))[-1]["payload"]
        assert redo["dispatch_no"] == 2
        assert redo["redo"] == {
            "send_back_no": 1,
            "reason": "the handrail still wobbles",
            "resolved": False,
            "satisfaction": "dissatisfied",
        }
        offsets = DEFAULT_DEADLINES[Urgency.URGENT]
        deadlines = {k: datetime.fromisoformat(v) for k, v in redo["deadlines"].items()}
        for stage in (Stage.ACCEPT, Stage.ASSIGN, Stage.COMPLETE):
            fresh = deadlines[f"{stage}_by"] - offsets[stage]
            assert abs((fresh - sent_at).total_seconds()) < 5, stage  # from the send-back
        assert deadlines["dispatch_by"] == first["dispatch_by"]  # stays
        row = await center_order(db, order_id)
        assert abs((row["accept_due_at"] - deadlines["accept_by"]).total_seconds()) < 1
        assert row["accept_by"] > first["accept_by"]

        # The redo goes around again: completed, awaiting a fresh return visit.
        again = await _serve(stack, db, order_id, 2)
        assert again["feedback_at"] is None
        assert again["feedback_due_at"] > first["feedback_due_at"]
        resp = await _feedback(http, stack, order_id, resolved=True, satisfaction="very_satisfied")
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "closed"
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
        await asyncio.sleep(0.3)
    assert [json.loads(body)["status"] for _, _, body in receiver.calls] == statuses
    assert [c["status"] for c in await _callbacks(db, order_id)] == statuses
    assert COMMENT not in str(receiver.calls)
    assert len(await center_events(db, order_id, "order.feedback_received")) == 2
    assert await center_events(db, order_id, "order.supervision_opened") == []
    after = _metric(await _metrics(http, stack), "swd_send_backs_total", station=STATION)
    assert after == before + 1


@pytest.mark.usefixtures("township")
async def test_the_third_send_back_opens_supervision(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order_id = await _completed_order(stack, http, db)
    # The second round is redone by another station the operator names.
    stations = ["st-t3-b", "st-t3-a", "st-t3-a"]
    for number, station in enumerate(stations, start=1):
        resp = await _feedback(http, stack, order_id, resolved=False, satisfaction="neutral")
        assert resp.status_code == 200, resp.text
        named = {} if station == STATION else {"station_id": station}
        sent = await _send_back(http, stack, order_id, reason=f"round {number}", **named)
        assert sent.status_code == 200, sent.text
        assert sent.json()["send_backs"] == number
        await _serve(stack, db, order_id, number + 1, station=station)
    opened = await center_events(db, order_id, "order.supervision_opened")
    assert [o["payload"] for o in opened] == [
        {"station_id": "st-t3-a", "send_backs": 3, "reason": "round 3"}
    ]
    sent_backs = await center_events(db, order_id, "order.sent_back")
    assert [(s["payload"]["station_id"], s["payload"]["to_station_id"]) for s in sent_backs] == [
        ("st-t3-b", "st-t3-b"),
        ("st-t3-b", "st-t3-a"),
        ("st-t3-a", "st-t3-a"),
    ]
    dispatches = [
        d["payload"]
        for d in await center_events(db, order_id, "order.dispatched")
        if d["payload"]["resend_of"] is None
    ]
    assert [(d["dispatch_no"], (d["redo"] or {}).get("send_back_no")) for d in dispatches] == [
        (1, None),
        (2, 1),
        (3, 2),
        (4, 3),
    ]
    resp = await _feedback(http, stack, order_id, resolved=True, satisfaction="satisfied")
    assert resp.json()["status"] == "closed"


# --- who may, and what is refused ------------------------------------------------------------


@pytest.mark.usefixtures("township")
async def test_only_the_orders_integration_gives_feedback_and_a_viewer_may_not_act(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order_id = await _completed_order(stack, http, db)
    other = await new_integration(stack, http)
    theirs = await _feedback(
        http, stack, order_id, other["api_key"], resolved=True, satisfaction="satisfied"
    )
    assert theirs.status_code == 404
    nobody = await _feedback(
        http, stack, str(uuid.uuid4()), resolved=True, satisfaction="satisfied"
    )
    assert nobody.status_code == 404
    unauthenticated = await http.post(
        f"{_center(stack)}/v1/requests/{order_id}/feedback",
        json={"resolved": True, "satisfaction": "satisfied"},
    )
    assert unauthenticated.status_code == 401

    viewer = await _viewer(stack, db)
    visit = await _visit(
        http, stack, order_id, viewer, reached=True, resolved=True, satisfaction="satisfied"
    )
    assert visit.status_code == 403
    sent = await _send_back(http, stack, order_id, viewer, reason="r")
    assert sent.status_code == 403
    assert (await center_order(db, order_id))["status"] == "awaiting_feedback"
    assert await center_events(db, order_id, "order.feedback_received") == []
    missing = await _send_back(http, stack, str(uuid.uuid4()), reason="r")
    assert missing.status_code == 404


async def _viewer(stack: RunningStack, db: asyncpg.Pool) -> dict[str, str]:
    from services.dispatch_center.admin import create_operator

    async with db.acquire() as conn:
        await conn.execute("SET search_path TO dispatch_center")
        try:
            _, token = await create_operator(conn, f"viewer-{uuid.uuid4().hex[:6]}", "viewer")
        finally:
            await conn.execute("RESET search_path")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.usefixtures("township")
async def test_hostile_feedback_bodies_are_422s_naming_the_field(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    order_id = await _completed_order(stack, http, db)
    good = {"resolved": True, "satisfaction": "satisfied"}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({**good, "comment": "ok\x00then"}, ["body", "comment"]),
        ({**good, "comment": "bell\x07"}, ["body", "comment"]),
        ({**good, "comment": "x" * 5000}, ["body", "comment"]),
        ({**good, "comment": 42}, ["body", "comment"]),
        ({**good, "resolved": "yes"}, ["body", "resolved"]),
        ({**good, "resolved": 1}, ["body", "resolved"]),
        ({**good, "satisfaction": "ecstatic"}, ["body", "satisfaction"]),
        ({"resolved": True}, ["body", "satisfaction"]),
        ({**good, "closed": True}, ["body", "closed"]),
    ]
    for body, loc in cases:
        resp = await _feedback(http, stack, order_id, **body)
        assert resp.status_code == 422, (body, resp.text)
        assert [e["loc"] for e in resp.json()["errors"]] == [loc], body
    for body, loc in [
        ({"reached": "no"}, ["body", "reached"]),
        ({"reached": False, "satisfaction": "satisfied"}, ["body", "satisfaction"]),
        ({"reached": True, "satisfaction": "satisfied"}, ["body", "resolved"]),
        ({"reached": False, "comment": "\x00"}, ["body", "comment"]),
    ]:
        resp = await _visit(http, stack, order_id, **body)
        assert resp.status_code == 422, (body, resp.text)
        assert [e["loc"] for e in resp.json()["errors"]] == [loc], body
    for body, loc in [
        ({}, ["body", "reason"]),
        ({"reason": "r", "station_id": "st\x00"}, ["body", "station_id"]),
        ({"reason": "x" * 600}, ["body", "reason"]),
    ]:
        resp = await _send_back(http, stack, order_id, **body)
        assert resp.status_code == 422, (body, resp.text)
        assert [e["loc"] for e in resp.json()["errors"]] == [loc], body
    bad_id = await http.post(
        f"{_center(stack)}/v1/requests/not-a-uuid/feedback",
        json=good,
        headers={"X-API-Key": stack.api_key},
    )
    assert bad_id.status_code == 422
    # Nothing of it counted.
    assert (await center_order(db, order_id))["feedback_at"] is None
    assert await center_events(db, order_id, "order.feedback_received") == []


# --- no feedback in time ---------------------------------------------------------------------

FEEDBACK_TIMEOUT_S = 2


@pytest.fixture
def short_feedback_timeout(stack: RunningStack) -> Iterator[None]:
    """The session's center restarted with a short feedback timeout, and a second replica
    beside it (both fire timers); afterwards the center as it was."""
    local = stack.local
    original = dict(local.service_env)
    local.stop_service("dispatch_center")
    local.service_env["SWD_FEEDBACK_TIMEOUT_S"] = str(FEEDBACK_TIMEOUT_S)
    try:
        for replica in (0, 1):
            local.start_service("dispatch_center", replica)
        local.wait_ready(("dispatch_center",), replicas=(0, 1))
        yield
    finally:
        local.stop_service("dispatch_center", replica=1)
        local.stop_service("dispatch_center")
        local.service_env.clear()
        local.service_env.update(original)
        local.start_service("dispatch_center")
        local.wait_ready(("dispatch_center",))


@pytest.mark.usefixtures("township", "short_feedback_timeout")
async def test_no_feedback_in_time_closes_the_order_without_feedback_once(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    created = await submit(http, _center(stack), stack.api_key, t3_request("T3-TWO"))
    order_id = created["order_id"]
    row = await _serve(stack, db, order_id, 1)
    assert row["feedback_due_at"] is not None
    closed = await _status(db, order_id, "closed_without_feedback")
    assert closed["feedback_due_at"] is None
    [event] = await center_events(db, order_id, "order.closed")
    assert event["payload"] == {"station_id": STATION, "without_feedback": True}
    assert event["actor"] == {"kind": "system", "id": "dispatch_center"}
    fired_at = datetime.fromisoformat(event["occurred_at"])
    assert fired_at >= row["feedback_due_at"]  # not before it was due
    await asyncio.sleep(1)  # two replicas' timers: still one closing
    assert len(await center_events(db, order_id, "order.closed")) == 1
    late = await _feedback(http, stack, order_id, resolved=True, satisfaction="satisfied")
    assert late.status_code == 409
    assert late.json()["current"]["status"] == "closed_without_feedback"
    view = (
        await http.get(f"{_center(stack)}{created['link']}", headers={"X-API-Key": stack.api_key})
    ).json()
    assert [t["status"] for t in view["timeline"]][-3:] == [
        "completed",
        "awaiting_feedback",
        "closed_without_feedback",
    ]
