"""Scopes for a province, at the center, on the real stack through its HTTP API: one
deployment serves two counties; an operator bound to county A's stations sees and acts on
county A's orders (and its unroutable ones), stations and coverage only, and gets 404 for
county B's orders, like a missing one; an unscoped operator sees both, as before."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from shared.events import OrderAccepted, OrderAssigned, OrderCompleted, OrderStarted
from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import eventually
from tests.integration.dispatch_center.center_support import (
    center_order,
    operator_headers,
    send_station_events,
    submit,
)

pytestmark = pytest.mark.integration

# Two counties, a township each: A's stations, B's station; each township has a community
# nobody covers (its orders are unroutable, held at the center).
A_TOWNSHIP, B_TOWNSHIP = "TS-SCOPE-A", "TS-SCOPE-B"
A_STATIONS = ("st-scope-a1", "st-scope-a2")
B_STATION = "st-scope-b1"
COMMUNITIES = {
    "SCOPE-A-ONE": (A_TOWNSHIP, "st-scope-a1"),
    "SCOPE-A-NONE": (A_TOWNSHIP, None),
    "SCOPE-B-ONE": (B_TOWNSHIP, B_STATION),
    "SCOPE-B-NONE": (B_TOWNSHIP, None),
}


def _center(stack: RunningStack) -> str:
    return stack.urls["dispatch_center"]


def _create_operator(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    """``swdispatch operators create`` as an administrator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "swdispatch", "operators", "create", *args],
        env={**os.environ, "SWD_DATABASE_URL": stack.database_url},
        capture_output=True,
        text=True,
        check=False,
    )


def _bearer(created: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert created.returncode == 0, created.stderr
    token = next(
        line.split(": ", 1)[1] for line in created.stdout.splitlines() if "Bearer token" in line
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def counties(stack: RunningStack, http: httpx.AsyncClient) -> dict[str, str]:
    """Both counties' stations and coverage (by the unscoped operator); the bearer headers
    of an operator bound to county A's stations."""
    base = f"{_center(stack)}/v1/operator"
    headers = operator_headers(stack)
    for station, township in [(s, A_TOWNSHIP) for s in A_STATIONS] + [(B_STATION, B_TOWNSHIP)]:
        resp = await http.put(
            f"{base}/stations/{station}",
            json={"name": station, "township_code": township, "active": True, "reason": "t"},
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
    for code, (township, station) in COMMUNITIES.items():
        resp = await http.put(
            f"{base}/communities/{code}",
            json={
                "name": code,
                "township_code": township,
                "station_id": station,
                "fallbacks": [],
                "reason": "t",
            },
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
    resp = await http.put(
        f"{base}/overrides/{B_TOWNSHIP}/disability_rehabilitation",
        json={"station_id": B_STATION, "reason": "t"},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    name = f"county-a-{uuid.uuid4().hex[:6]}"
    created = _create_operator(stack, name, f"--stations={','.join(A_STATIONS)}")
    assert "st-scope-a1, st-scope-a2" in created.stdout
    return _bearer(created)


def _request(community: str, **overrides: Any) -> dict[str, Any]:
    township = COMMUNITIES[community][0]
    body = request_body(**overrides)
    body["location"] |= {"township_code": township, "community_code": community}
    if body["category"] == "disability_rehabilitation":
        body["category"] = "elder_care"
    return body


async def _order(stack: RunningStack, http: httpx.AsyncClient, community: str) -> str:
    created = await submit(http, _center(stack), stack.api_key, _request(community))
    expected = "dispatched" if COMMUNITIES[community][1] else "unroutable"
    assert created["status"] == expected, created
    return str(created["order_id"])


async def _listed(
    http: httpx.AsyncClient, stack: RunningStack, headers: dict[str, str], **query: Any
) -> list[dict[str, Any]]:
    resp = await http.get(
        f"{_center(stack)}/v1/operator/orders",
        params={"limit": 500, **query},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def _actions(in_scope_station: str) -> list[tuple[str, dict[str, Any]]]:
    """Every operator action on an order, each with a body that is valid on its own."""
    return [
        ("redispatch", {"station_id": in_scope_station, "reason": "r"}),
        ("cancel", {"reason": "r"}),
        ("return-visit", {"reached": True, "resolved": False, "satisfaction": "dissatisfied"}),
        ("send-back", {"reason": "r"}),
        ("send-back", {"reason": "r", "station_id": in_scope_station}),
    ]


async def test_a_scoped_operator_lists_only_their_countys_orders_and_its_unroutable_ones(
    stack: RunningStack, http: httpx.AsyncClient, counties: dict[str, str]
) -> None:
    a_routed = await _order(stack, http, "SCOPE-A-ONE")
    a_held = await _order(stack, http, "SCOPE-A-NONE")
    b_routed = await _order(stack, http, "SCOPE-B-ONE")
    b_held = await _order(stack, http, "SCOPE-B-NONE")

    listed = await _listed(http, stack, counties)
    ids = {o["order_id"] for o in listed}
    assert {a_routed, a_held} <= ids
    assert not {b_routed, b_held} & ids
    for item in listed:
        assert item["station_id"] in A_STATIONS or (
            item["station_id"] is None and item["township_code"] == A_TOWNSHIP
        ), item

    held = await _listed(http, stack, counties, unroutable="true")
    assert held, "the scoped operator lists its unroutable order"
    assert a_held in {o["order_id"] for o in held}
    assert b_held not in {o["order_id"] for o in held}
    # Filtering by another county's station gives nothing rather than its orders.
    assert await _listed(http, stack, counties, station_id=B_STATION) == []
    by_station = await _listed(http, stack, counties, station_id="st-scope-a1")
    assert a_routed in {o["order_id"] for o in by_station}

    detail = await http.get(f"{_center(stack)}/v1/operator/orders/{a_held}", headers=counties)
    assert detail.status_code == 200, detail.text
    assert (detail.json()["status"], detail.json()["station_id"]) == ("unroutable", None)

    # The unscoped operator sees both counties, as before.
    everything = {o["order_id"] for o in await _listed(http, stack, operator_headers(stack))}
    assert {a_routed, a_held, b_routed, b_held} <= everything


async def test_another_countys_order_is_404_for_the_detail_and_every_action(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, counties: dict[str, str]
) -> None:
    center = f"{_center(stack)}/v1/operator/orders"
    for community in ("SCOPE-B-ONE", "SCOPE-B-NONE"):
        order_id = await _order(stack, http, community)
        before = await center_order(db, order_id)
        missing = await http.get(f"{center}/{uuid.uuid4()}", headers=counties)
        assert missing.status_code == 404
        detail = await http.get(f"{center}/{order_id}", headers=counties)
        assert detail.status_code == 404, detail.text
        # The same answer as for an order that does not exist: existence does not leak.
        same = ("status", "title", "detail", "type")
        assert {k: detail.json().get(k) for k in same} == {k: missing.json().get(k) for k in same}
        for action, body in _actions("st-scope-a1"):
            resp = await http.post(f"{center}/{order_id}/{action}", json=body, headers=counties)
            assert resp.status_code == 404, (action, resp.text)
        after = await center_order(db, order_id)
        assert (after["status"], after["version"], after["station_id"]) == (
            before["status"],
            before["version"],
            before["station_id"],
        )
        # The unscoped operator still sees it.
        seen = await http.get(f"{center}/{order_id}", headers=operator_headers(stack))
        assert seen.status_code == 200


async def test_a_scoped_operator_redispatches_only_into_their_county(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, counties: dict[str, str]
) -> None:
    center = f"{_center(stack)}/v1/operator/orders"
    held = await _order(stack, http, "SCOPE-A-NONE")
    unknown = await http.post(
        f"{center}/{held}/redispatch",
        json={"station_id": "st-nowhere", "reason": "r"},
        headers=counties,
    )
    into_b = await http.post(
        f"{center}/{held}/redispatch",
        json={"station_id": B_STATION, "reason": "r"},
        headers=counties,
    )
    assert into_b.status_code == 422, into_b.text
    assert [e["loc"] for e in into_b.json()["errors"]] == [["body", "station_id"]]
    # Another county's station is as unknown as a station that does not exist.
    assert into_b.json()["errors"] == unknown.json()["errors"]
    assert (await center_order(db, held))["status"] == "unroutable"

    moved = await http.post(
        f"{center}/{held}/redispatch",
        json={"station_id": "st-scope-a2", "reason": "the team next door has room"},
        headers=counties,
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["status"], moved.json()["station_id"]) == ("dispatched", "st-scope-a2")
    assert held in {o["order_id"] for o in await _listed(http, stack, counties)}

    # The unscoped operator may still send it anywhere.
    anywhere = await http.post(
        f"{center}/{held}/redispatch",
        json={"station_id": B_STATION, "reason": "county B takes it"},
        headers=operator_headers(stack),
    )
    assert anywhere.status_code == 200, anywhere.text
    # Now it is county B's: gone from the scoped operator's view.
    assert (await http.get(f"{center}/{held}", headers=counties)).status_code == 404


async def test_a_scoped_operator_sends_back_only_into_their_county(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, counties: dict[str, str]
) -> None:
    center = f"{_center(stack)}/v1/operator/orders"
    station = "st-scope-a1"
    order_id = await _order(stack, http, "SCOPE-A-ONE")
    await send_station_events(
        stack,
        order_id,
        OrderAccepted(station_id=station),
        OrderAssigned(station_id=station, worker_id="w-scope"),
        OrderStarted(station_id=station, worker_id="w-scope"),
        OrderCompleted(
            station_id=station,
            worker_id="w-scope",
            outcome="resolved",
            service_minutes=20,
            follow_up_needed=False,
            summary="done",
        ),
    )

    async def awaiting() -> bool:
        return bool((await center_order(db, order_id))["status"] == "awaiting_feedback")

    await eventually(awaiting, timeout_s=20)
    visit = await http.post(
        f"{center}/{order_id}/return-visit",
        json={"reached": True, "resolved": False, "satisfaction": "dissatisfied"},
        headers=counties,
    )
    assert visit.status_code == 200, visit.text
    into_b = await http.post(
        f"{center}/{order_id}/send-back",
        json={"reason": "redo it", "station_id": B_STATION},
        headers=counties,
    )
    assert into_b.status_code == 422, into_b.text
    assert [e["loc"] for e in into_b.json()["errors"]] == [["body", "station_id"]]
    assert (await center_order(db, order_id))["send_backs"] == 0
    sent = await http.post(
        f"{center}/{order_id}/send-back",
        json={"reason": "redo it", "station_id": "st-scope-a2"},
        headers=counties,
    )
    assert sent.status_code == 200, sent.text
    assert (sent.json()["status"], sent.json()["station_id"]) == ("dispatched", "st-scope-a2")


async def test_a_scoped_operator_lists_only_their_stations_and_coverage(
    stack: RunningStack, http: httpx.AsyncClient, counties: dict[str, str]
) -> None:
    base = f"{_center(stack)}/v1/operator"
    stations = await http.get(f"{base}/stations", headers=counties)
    assert stations.status_code == 200
    assert [s["id"] for s in stations.json()] == list(A_STATIONS)
    coverage = (await http.get(f"{base}/coverage", headers=counties)).json()
    codes = {c["code"] for c in coverage["communities"]}
    assert codes == {"SCOPE-A-ONE", "SCOPE-A-NONE"}
    assert coverage["overrides"] == []  # county B's override is not county A's business

    everything = await http.get(f"{base}/stations", headers=operator_headers(stack))
    assert {*A_STATIONS, B_STATION} <= {s["id"] for s in everything.json()}
    all_coverage = (await http.get(f"{base}/coverage", headers=operator_headers(stack))).json()
    assert set(COMMUNITIES) <= {c["code"] for c in all_coverage["communities"]}
    assert {"township_code": B_TOWNSHIP, "category": "disability_rehabilitation"} in [
        {k: o[k] for k in ("township_code", "category")} for o in all_coverage["overrides"]
    ]


async def test_an_operator_bound_to_an_unknown_station_is_refused(
    stack: RunningStack, db: asyncpg.Pool, counties: dict[str, str]
) -> None:
    name = f"county-x-{uuid.uuid4().hex[:6]}"
    refused = _create_operator(stack, name, "--stations=st-scope-a1,st-nowhere")
    assert refused.returncode != 0
    assert "st-nowhere" in refused.stderr
    assert "Bearer token" not in refused.stdout
    assert (
        await db.fetchval("SELECT count(*) FROM dispatch_center.operators WHERE name = $1", name)
        == 0
    )

    from services.dispatch_center.admin import create_operator
    from shared.errors import InvalidField

    async with db.acquire() as conn:
        await conn.execute("SET search_path TO dispatch_center")
        try:
            with pytest.raises(InvalidField) as unknown:
                await create_operator(conn, name, stations=["st-nowhere"])
            assert unknown.value.loc == ("stations",)
            with pytest.raises(InvalidField):
                await create_operator(conn, name, stations=[])
        finally:
            await conn.execute("RESET search_path")
    assert (
        await db.fetchval("SELECT count(*) FROM dispatch_center.operators WHERE name = $1", name)
        == 0
    )


async def test_a_scoped_operator_changes_only_their_countys_stations_and_coverage(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, counties: dict[str, str]
) -> None:
    base = f"{_center(stack)}/v1/operator"
    station = {"name": "renamed", "township_code": B_TOWNSHIP, "active": True, "reason": "r"}
    other = await http.put(f"{base}/stations/{B_STATION}", json=station, headers=counties)
    assert other.status_code == 404, other.text
    new = await http.put(f"{base}/stations/st-scope-new", json=station, headers=counties)
    assert new.status_code == 404, new.text
    assert (
        await db.fetchval("SELECT name FROM dispatch_center.stations WHERE id = $1", B_STATION)
        == B_STATION
    )
    own = await http.put(
        f"{base}/stations/st-scope-a2",
        json={**station, "name": "A2 (renamed)", "township_code": A_TOWNSHIP},
        headers=counties,
    )
    assert own.status_code == 200, own.text

    community = {"name": "c", "township_code": A_TOWNSHIP, "fallbacks": [], "reason": "r"}
    b_community = await http.put(
        f"{base}/communities/SCOPE-B-NONE",
        json={**community, "station_id": "st-scope-a1"},
        headers=counties,
    )
    assert b_community.status_code == 404, b_community.text
    into_b = await http.put(
        f"{base}/communities/SCOPE-A-NONE",
        json={**community, "township_code": B_TOWNSHIP, "station_id": None},
        headers=counties,
    )
    assert into_b.status_code == 422, into_b.text
    assert [e["loc"] for e in into_b.json()["errors"]] == [["body", "township_code"]]
    b_station = await http.put(
        f"{base}/communities/SCOPE-A-NONE",
        json={**community, "station_id": B_STATION},
        headers=counties,
    )
    assert b_station.status_code == 422, b_station.text
    assert [e["loc"] for e in b_station.json()["errors"]] == [["body", "station_id"]]
    b_fallback = await http.put(
        f"{base}/communities/SCOPE-A-NONE",
        json={**community, "station_id": None, "fallbacks": ["st-scope-a2", B_STATION]},
        headers=counties,
    )
    assert b_fallback.status_code == 422, b_fallback.text
    assert [e["loc"] for e in b_fallback.json()["errors"]] == [["body", "fallbacks"]]
    # (SCOPE-A-NONE stays uncovered: the other tests route to it.)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM dispatch_center.coverage WHERE community_code = 'SCOPE-A-NONE'"
        )
        == 0
    )

    b_override = await http.put(
        f"{base}/overrides/{B_TOWNSHIP}/disability_rehabilitation",
        json={"station_id": None, "reason": "r"},
        headers=counties,
    )
    assert b_override.status_code == 404, b_override.text
    a_override_to_b = await http.put(
        f"{base}/overrides/{A_TOWNSHIP}/disability_rehabilitation",
        json={"station_id": B_STATION, "reason": "r"},
        headers=counties,
    )
    assert a_override_to_b.status_code == 422, a_override_to_b.text
    a_override = await http.put(
        f"{base}/overrides/{A_TOWNSHIP}/disability_rehabilitation",
        json={"station_id": "st-scope-a2", "reason": "A2 has the rehabilitation team"},
        headers=counties,
    )
    assert a_override.status_code == 200, a_override.text
    coverage = (await http.get(f"{base}/coverage", headers=counties)).json()
    assert [(o["township_code"], o["station_id"]) for o in coverage["overrides"]] == [
        (A_TOWNSHIP, "st-scope-a2")
    ]


async def test_a_scoped_viewer_reads_their_county_only_and_may_not_act(
    stack: RunningStack, http: httpx.AsyncClient, counties: dict[str, str]
) -> None:
    viewer = _bearer(
        _create_operator(
            stack,
            f"county-a-viewer-{uuid.uuid4().hex[:6]}",
            "--role=viewer",
            "--stations=st-scope-a1",
        )
    )
    center = f"{_center(stack)}/v1/operator/orders"
    a_routed = await _order(stack, http, "SCOPE-A-ONE")
    a_held = await _order(stack, http, "SCOPE-A-NONE")
    b_routed = await _order(stack, http, "SCOPE-B-ONE")
    ids = {o["order_id"] for o in await _listed(http, stack, viewer)}
    # st-scope-a1 serves TS-SCOPE-A: its routed and its held orders.
    assert {a_routed, a_held} <= ids
    assert b_routed not in ids
    assert (await http.get(f"{center}/{b_routed}", headers=viewer)).status_code == 404
    # Acting is refused before the order is looked up: the same 403 for any order, so it
    # tells nothing of another county's orders either.
    for order_id in (a_routed, b_routed, str(uuid.uuid4())):
        resp = await http.post(f"{center}/{order_id}/cancel", json={"reason": "r"}, headers=viewer)
        assert resp.status_code == 403, resp.text


async def test_a_scoped_operator_cannot_widen_their_county(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, counties: dict[str, str]
) -> None:
    # Moving its own station into county B's township would make B's communities its own.
    base = f"{_center(stack)}/v1/operator"
    moved = await http.put(
        f"{base}/stations/st-scope-a1",
        json={"name": "A1", "township_code": B_TOWNSHIP, "active": True, "reason": "r"},
        headers=counties,
    )
    assert moved.status_code == 422, moved.text
    assert [(e["loc"], e["type"]) for e in moved.json()["errors"]] == [
        (["body", "township_code"], "out_of_scope")
    ]
    township = "SELECT township_code FROM dispatch_center.stations WHERE id = 'st-scope-a1'"
    assert await db.fetchval(township) == A_TOWNSHIP
    coverage = (await http.get(f"{base}/coverage", headers=counties)).json()
    assert {c["township_code"] for c in coverage["communities"]} == {A_TOWNSHIP}
    b_community = await http.put(
        f"{base}/communities/SCOPE-B-ONE",
        json={
            "name": "c",
            "township_code": B_TOWNSHIP,
            "station_id": "st-scope-a1",
            "fallbacks": [],
            "reason": "r",
        },
        headers=counties,
    )
    assert b_community.status_code == 404, b_community.text
    routed = "SELECT station_id FROM dispatch_center.coverage WHERE community_code = 'SCOPE-B-ONE'"
    assert await db.fetchval(routed) == B_STATION

    # Integrations serve the whole deployment: not a county operator's to see or change.
    integrations = f"{base}/integrations"
    assert (await http.get(integrations, headers=counties)).status_code == 403
    created = await http.post(
        integrations,
        json={"name": f"county-{uuid.uuid4().hex[:6]}", "reason": "r"},
        headers=counties,
    )
    assert created.status_code == 403, created.text
    revoked = await http.post(
        f"{integrations}/{stack.credentials['integration']['id']}/revoke",
        json={"reason": "r"},
        headers=counties,
    )
    assert revoked.status_code == 403, revoked.text
    assert (await http.get(integrations, headers=operator_headers(stack))).status_code == 200


async def test_operators_are_revoked_by_the_deployments_operator_or_the_command_line(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, counties: dict[str, str]
) -> None:
    base = f"{_center(stack)}/v1/operator"
    admin = operator_headers(stack)
    name = f"county-a-revoked-{uuid.uuid4().hex[:6]}"
    doomed = _bearer(_create_operator(stack, name, "--stations=st-scope-a1"))
    assert (await http.get(f"{base}/orders", headers=doomed)).status_code == 200
    listed = {o["id"]: o for o in (await http.get(f"{base}/operators", headers=admin)).json()}
    assert (listed[name]["stations"], listed[name]["revoked_at"]) == (["st-scope-a1"], None)

    # A county's operator may not revoke anyone, not even within the county.
    by_county = await http.post(
        f"{base}/operators/{name}/revoke", json={"reason": "r"}, headers=counties
    )
    assert by_county.status_code == 403, by_county.text
    assert (await http.get(f"{base}/operators", headers=counties)).status_code == 403

    revoked = await http.post(
        f"{base}/operators/{name}/revoke", json={"reason": "left the office"}, headers=admin
    )
    assert revoked.status_code == 204, revoked.text
    assert (await http.get(f"{base}/orders", headers=doomed)).status_code == 401
    again = await http.post(f"{base}/operators/{name}/revoke", json={"reason": "r"}, headers=admin)
    assert again.status_code == 404, again.text
    action = await db.fetchrow(
        "SELECT actor, reason FROM dispatch_center.admin_actions"
        " WHERE action = 'operator.revoke' AND subject = $1",
        name,
    )
    assert action is not None
    assert action["reason"] == "left the office"

    by_cli = f"county-a-cli-{uuid.uuid4().hex[:6]}"
    cli_doomed = _bearer(_create_operator(stack, by_cli, "--stations=st-scope-a1"))
    done = subprocess.run(
        [sys.executable, "-m", "swdispatch", "operators", "revoke", by_cli, "--reason", "r"],
        env={**os.environ, "SWD_DATABASE_URL": stack.database_url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (await http.get(f"{base}/orders", headers=cli_doomed)).status_code == 401
