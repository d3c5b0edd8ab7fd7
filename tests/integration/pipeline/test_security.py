"""Broken authentication, wrong-kind credentials, mass assignment and cross-station reads,
across the three services (issue 8). Isolation within each service's own API is also tested
beside that service."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import httpx
import pytest

from swdispatch import demo
from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import eventually, post_request, swdispatch

pytestmark = pytest.mark.integration


def _protected(stack: RunningStack) -> list[tuple[str, str]]:
    """One protected read per service (method, URL)."""
    some_order = "00000000-0000-4000-8000-000000000000"
    return [
        ("GET", f"{stack.urls['dispatch_center']}/v1/requests/{some_order}"),
        ("GET", f"{stack.urls['dispatch_center']}/v1/operator/orders"),
        ("GET", f"{stack.urls['station_worker']}/v1/orders/{some_order}"),
        ("GET", f"{stack.urls['audit']}/v1/orders/{some_order}/trail"),
        ("GET", f"{stack.urls['audit']}/v1/reports/timeliness"),
    ]


def _bad_credentials(stack: RunningStack) -> dict[str, dict[str, str]]:
    staff = stack.manager_token("st-shaxi")
    return {
        "missing": {},
        "bearer without a token": {"Authorization": "Bearer"},
        "malformed scheme": {"Authorization": f"Basic {staff}"},
        "garbage token": {"Authorization": "Bearer not-a-token", "X-API-Key": "not-a-key"},
        "a staff token as an API key": {"X-API-Key": staff},
    }


async def test_missing_malformed_and_garbage_credentials_are_401_everywhere(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    for method, url in _protected(stack):
        for kind, headers in _bad_credentials(stack).items():
            resp = await http.request(method, url, headers=headers)
            assert resp.status_code == 401, (kind, url, resp.status_code)


async def test_a_credential_of_another_kind_is_401(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    some_order = "00000000-0000-4000-8000-000000000000"
    wrong_kind = [
        # an integration key where a staff, reader or operator token is wanted
        (
            f"{stack.urls['station_worker']}/v1/orders/{some_order}",
            {"Authorization": f"Bearer {stack.api_key}"},
        ),
        (
            f"{stack.urls['audit']}/v1/orders/{some_order}/trail",
            {"Authorization": f"Bearer {stack.api_key}"},
        ),
        (
            f"{stack.urls['dispatch_center']}/v1/operator/orders",
            {"Authorization": f"Bearer {stack.api_key}"},
        ),
        # a station's staff token at the audit and at the operator API
        (
            f"{stack.urls['audit']}/v1/reports/timeliness",
            {"Authorization": f"Bearer {stack.manager_token('st-shaxi')}"},
        ),
        (
            f"{stack.urls['dispatch_center']}/v1/operator/orders",
            {"Authorization": f"Bearer {stack.manager_token('st-shaxi')}"},
        ),
        # an operator token at a station and an audit token as an integration key
        (
            f"{stack.urls['station_worker']}/v1/orders/{some_order}",
            {"Authorization": f"Bearer {stack.operator_token}"},
        ),
        (
            f"{stack.urls['dispatch_center']}/v1/requests/{some_order}",
            {"X-API-Key": stack.supervisor_token},
        ),
    ]
    for url, headers in wrong_kind:
        resp = await http.get(url, headers=headers)
        assert resp.status_code == 401, (url, resp.status_code)


async def test_a_revoked_integration_key_is_401(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    operator = {"Authorization": f"Bearer {stack.operator_token}"}
    center = stack.urls["dispatch_center"]
    created = await http.post(
        f"{center}/v1/operator/integrations",
        json={"name": "security-revoked", "reason": "test"},
        headers=operator,
    )
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    body = request_body(81)
    assert (
        await http.post(f"{center}/v1/requests", json=body, headers={"X-API-Key": key})
    ).status_code == 201
    revoked = await http.post(
        f"{center}/v1/operator/integrations/{created.json()['id']}/revoke",
        json={"reason": "test"},
        headers=operator,
    )
    assert revoked.status_code == 204
    again = await http.post(
        f"{center}/v1/requests", json=request_body(82), headers={"X-API-Key": key}
    )
    assert again.status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "completed"),
        ("station_id", "st-liuhe"),
        ("order_id", "00000000-0000-4000-8000-000000000000"),
        ("deadlines", {"accept_by": "2030-01-01T00:00:00Z"}),
        ("integration_id", "someone-else"),
        ("dispatch_no", 7),
    ],
)
async def test_fields_a_caller_may_not_set_are_rejected_by_name(
    stack: RunningStack, http: httpx.AsyncClient, field: str, value: object
) -> None:
    body = request_body(83) | {field: value}
    resp = await post_request(http, stack, body)
    assert resp.status_code == 422
    assert ["body", field] in [d["loc"] for d in resp.json()["errors"]]


async def test_a_station_reader_sees_only_its_own_stations_part_of_a_redispatched_order(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    # An order that really was at both stations: routed to st-chengxiang, received there, then
    # redispatched by an operator to st-liuhe, and received there.
    body = request_body(84)
    body["location"] |= {"township_code": "TS-CX", "community_code": "CX-BEIMEN"}
    created = await post_request(http, stack, body)
    assert created.status_code == 201, created.text
    order_id = created.json()["order_id"]
    audit = stack.urls["audit"]

    def reader(station: str) -> dict[str, str]:
        token = stack.credentials["stations"][station]["audit_token"]
        return {"Authorization": f"Bearer {token}"}

    supervisor = {"Authorization": f"Bearer {stack.supervisor_token}"}
    first, second = "st-chengxiang", "st-liuhe"

    async def trail_has(station: str) -> list[dict[str, Any]] | None:
        resp = await http.get(f"{audit}/v1/orders/{order_id}/trail", headers=supervisor)
        trail: list[dict[str, Any]] = resp.json() if resp.status_code == 200 else []
        received = {(e["event_type"], e["station_id"]) for e in trail}
        return trail if ("order.received", station) in received else None

    await eventually(lambda: trail_has(first), timeout_s=30)
    redispatched = await http.post(
        f"{stack.urls['dispatch_center']}/v1/operator/orders/{order_id}/redispatch",
        json={"station_id": second, "reason": "the family moved"},
        headers={"Authorization": f"Bearer {stack.operator_token}"},
    )
    assert redispatched.status_code == 200, redispatched.text
    full = await eventually(lambda: trail_has(second), timeout_s=30)
    assert {e["station_id"] for e in full} >= {None, first, second}

    for station in (first, second):
        trail = await http.get(f"{audit}/v1/orders/{order_id}/trail", headers=reader(station))
        assert trail.status_code == 200, (station, trail.text)
        entries = trail.json()
        assert entries, station
        assert {e["station_id"] for e in entries} == {station}
        assert {"order.dispatched", "order.received"} <= {e["event_type"] for e in entries}

        timeliness = await http.get(
            f"{audit}/v1/orders/{order_id}/timeliness", headers=reader(station)
        )
        assert timeliness.status_code == 200, (station, timeliness.text)
        dispatches = timeliness.json()["dispatches"]
        assert dispatches, station
        assert {d["station_id"] for d in dispatches} == {station}
    # The first station no longer holds the order: nothing of what the second one does with it.
    left = await http.get(f"{audit}/v1/orders/{order_id}/timeliness", headers=reader(first))
    assert (left.json()["station_id"], left.json()["status"], left.json()["stages"]) == (
        None,
        None,
        {},
    )
    held = await http.get(f"{audit}/v1/orders/{order_id}/timeliness", headers=reader(second))
    assert (held.json()["station_id"], held.json()["status"]) == (second, "dispatched")

    # A station the order never reached sees nothing of it.
    never = reader("st-shaxi")
    for path in (f"/v1/orders/{order_id}/trail", f"/v1/orders/{order_id}/timeliness"):
        resp = await http.get(f"{audit}{path}", headers=never)
        assert resp.status_code == 404, path

    report = await http.get(
        f"{audit}/v1/reports/timeliness", params={"group_by": "station"}, headers=reader(second)
    )
    assert report.status_code == 200
    groups = {g["group"] for g in report.json()["groups"]}
    assert groups, "the order is at st-liuhe now: its report is not empty"
    assert groups == {second}
    verify = await http.get(f"{audit}/v1/audit/verify", headers=reader(first))
    assert verify.status_code == 403


def _token(created: subprocess.CompletedProcess[str], marker: str) -> str:
    assert created.returncode == 0, created.stderr
    return created.stdout.split(marker)[1].split()[0]


async def test_staff_created_on_the_command_line_never_take_over_another_account(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    station = f"st-cli-{uuid.uuid4().hex[:6]}"
    base = stack.urls["station_worker"]

    def staff(*args: str) -> subprocess.CompletedProcess[str]:
        return swdispatch(stack, "staff", *args)

    wang = _token(
        staff("create", "--station", station, "--name", "王芳", "--role", "station_manager"),
        "Bearer token: ",
    )
    li = _token(
        staff("create", "--station", station, "--name", "李娜", "--role", "social_worker"),
        "Bearer token: ",
    )

    async def me(token: str) -> httpx.Response:
        return await http.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"})

    wang_me, li_me = (await me(wang)).json(), (await me(li)).json()
    assert (wang_me["name"], wang_me["role"]) == ("王芳", "station_manager")
    assert (li_me["name"], li_me["role"]) == ("李娜", "social_worker")
    assert wang_me["id"] != li_me["id"]

    # An id that is taken is refused and changes nothing.
    again = staff(
        "create", "--station", station, "--name", "张伟", "--role", "social_worker",
        "--id", wang_me["id"],
    )  # fmt: skip
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert (await me(wang)).json() == wang_me

    # A new token keeps the role and station; the old token stops working.
    new_wang = _token(staff("reissue-token", "--id", wang_me["id"]), "Bearer token: ")
    assert (await me(new_wang)).json() == wang_me
    assert (await me(wang)).status_code == 401
    assert (await me(li)).json() == li_me

    # Re-issuing does not undo a revocation.
    assert staff("revoke", "--id", li_me["id"]).returncode == 0
    assert (await me(li)).status_code == 401
    assert staff("reissue-token", "--id", li_me["id"]).returncode != 0
    assert (await me(li)).status_code == 401


async def test_audit_readers_created_on_the_command_line_never_replace_another(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    url = f"{stack.urls['audit']}/v1/reports/timeliness"

    def readers(*args: str) -> subprocess.CompletedProcess[str]:
        return swdispatch(stack, "audit", "readers", *args)

    reader_id = f"cli-{uuid.uuid4().hex[:6]}"
    create = ("create", "--id", reader_id, "--role", "station_manager", "--station", "st-liuhe")
    first = _token(readers(*create, "--name", "王芳"), "Bearer ")
    repeated = readers("create", "--id", reader_id, "--name", "李娜", "--role", "evaluator")
    assert repeated.returncode != 0
    assert "already exists" in repeated.stderr
    auth = {"Authorization": f"Bearer {first}"}
    assert (await http.get(url, headers=auth)).status_code == 200
    assert (
        await http.get(f"{stack.urls['audit']}/v1/audit/verify", headers=auth)
    ).status_code == 403

    second = _token(readers("reissue-token", "--id", reader_id), "Bearer ")
    assert (await http.get(url, headers=auth)).status_code == 401
    new_auth = {"Authorization": f"Bearer {second}"}
    assert (await http.get(url, headers=new_auth)).status_code == 200
    # Still a station manager: verification stays supervisors-only.
    verify = await http.get(f"{stack.urls['audit']}/v1/audit/verify", headers=new_auth)
    assert verify.status_code == 403


async def test_seeding_the_demo_again_reissues_its_tokens_and_keeps_every_role(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    again = await demo.seed(stack.database_url, stack.local.callback_secret_key)
    base = stack.urls["station_worker"]
    old = stack.credentials["stations"]["st-liuhe"]
    new = again["stations"]["st-liuhe"]
    assert new["social_worker_tokens"], "the seed has social workers"
    pairs = [(old["manager_token"], new["manager_token"], "station_manager")] + [
        (old["social_worker_tokens"][w], token, "social_worker")
        for w, token in new["social_worker_tokens"].items()
    ]
    try:
        for old_token, new_token, role in pairs:
            me = await http.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {new_token}"})
            assert (me.status_code, me.json()["role"]) == (200, role)
            gone = await http.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {old_token}"})
            assert gone.status_code == 401
    finally:
        # The session's other tests use the credentials the stack was seeded with.
        stack.credentials.update(again)
