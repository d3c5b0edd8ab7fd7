"""Broken authentication, wrong-kind credentials, mass assignment and cross-station reads,
across the three services (issue 8). Isolation within each service's own API is also tested
beside that service."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningStack
from tests.helpers import eventually, post_request, request_body

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
    assert ["body", field] in [d["loc"] for d in resp.json()["detail"]]


async def test_a_station_manager_sees_only_their_own_station_in_the_audit(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    body = request_body(84)
    body["location"] |= {"township_code": "TS-CX", "community_code": "CX-BEIMEN"}
    order_id = (await post_request(http, stack, body)).json()["order_id"]
    audit = stack.urls["audit"]
    own = {
        "Authorization": f"Bearer {stack.credentials['stations']['st-chengxiang']['audit_token']}"
    }
    other = {"Authorization": f"Bearer {stack.credentials['stations']['st-liuhe']['audit_token']}"}

    async def trail_visible() -> bool:
        resp = await http.get(f"{audit}/v1/orders/{order_id}/trail", headers=own)
        return resp.status_code == 200

    await eventually(trail_visible)
    for path in (f"/v1/orders/{order_id}/trail", f"/v1/orders/{order_id}/timeliness"):
        resp = await http.get(f"{audit}{path}", headers=other)
        assert resp.status_code == 404, path
    report = await http.get(
        f"{audit}/v1/reports/timeliness", params={"group_by": "station"}, headers=other
    )
    assert report.status_code == 200
    assert {g["group"] for g in report.json()["groups"]} <= {"st-liuhe"}
    verify = await http.get(f"{audit}/v1/audit/verify", headers=other)
    assert verify.status_code == 403
