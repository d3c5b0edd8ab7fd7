"""Hostile HTTP input on the real stack: control characters in query, path and body fields are
a 422 naming the field; bodies nested thousands deep are a 4xx; neither is ever a 5xx."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import post_request

pytestmark = pytest.mark.integration

CONTROL_CHARACTERS = ["\x00", "\x01", "\x1b", "\x7f", "\x85"]


def _names_field(resp: httpx.Response, loc: list[str]) -> bool:
    return resp.status_code == 422 and any(e["loc"] == loc for e in resp.json()["errors"])


@pytest.mark.parametrize("char", CONTROL_CHARACTERS)
async def test_a_control_character_in_a_query_parameter_is_a_422_naming_it(
    stack: RunningStack, http: httpx.AsyncClient, char: str
) -> None:
    operator = await http.get(
        f"{stack.urls['dispatch_center']}/v1/operator/orders",
        params={"station_id": f"st{char}x"},
        headers={"Authorization": f"Bearer {stack.operator_token}"},
    )
    assert _names_field(operator, ["query", "station_id"]), (operator.status_code, operator.text)
    station = await http.get(
        f"{stack.urls['station_worker']}/v1/stations/st-shaxi/orders",
        params={"worker_id": f"w{char}"},
        headers={"Authorization": f"Bearer {stack.manager_token('st-shaxi')}"},
    )
    assert _names_field(station, ["query", "worker_id"]), (station.status_code, station.text)


async def test_a_nul_in_a_path_parameter_is_a_422_naming_it(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    resp = await http.get(
        f"{stack.urls['station_worker']}/v1/stations/st%00shaxi/orders",
        headers={"Authorization": f"Bearer {stack.manager_token('st-shaxi')}"},
    )
    assert _names_field(resp, ["path", "station_id"]), (resp.status_code, resp.text)


@pytest.mark.parametrize("char", CONTROL_CHARACTERS)
async def test_a_control_character_in_a_body_field_is_a_422_naming_it(
    stack: RunningStack, http: httpx.AsyncClient, char: str
) -> None:
    body = request_body()
    body["location"]["community_code"] = f"sx{char}01"
    resp = await post_request(http, stack, body)
    assert _names_field(resp, ["body", "location", "community_code"]), resp.text

    body = request_body()
    body["reporter"]["name"] = f"Li{char}Na"
    resp = await post_request(http, stack, body)
    assert _names_field(resp, ["body", "reporter", "name"]), resp.text

    # Free text keeps tabs and line breaks but no other control character.
    body = request_body(description=f"line one\r\n\tline{char} two")
    resp = await post_request(http, stack, body)
    assert _names_field(resp, ["body", "description"]), resp.text

    worker = await http.post(
        f"{stack.urls['station_worker']}/v1/stations/st-shaxi/workers",
        json={"worker_id": f"w{char}1", "skills": [], "capacity": 1},
        headers={"Authorization": f"Bearer {stack.manager_token('st-shaxi')}"},
    )
    assert _names_field(worker, ["body", "worker_id"]), (worker.status_code, worker.text)

    station = await http.put(
        f"{stack.urls['dispatch_center']}/v1/operator/stations/st-new",
        json={"name": f"New{char}Station", "township_code": "t1", "reason": "test"},
        headers={"Authorization": f"Bearer {stack.operator_token}"},
    )
    assert _names_field(station, ["body", "name"]), (station.status_code, station.text)


async def test_free_text_keeps_its_line_breaks(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    resp = await post_request(http, stack, request_body(description="line one\r\n\tline two"))
    assert resp.status_code == 201, resp.text


def _nested(depth: int) -> list[bytes]:
    return [
        b"[" * depth + b"]" * depth,
        b'{"a":' * depth + b"1" + b"}" * depth,
        b"[" * depth,  # never closed
        b'{"reason": ' + b"[" * depth + b"]" * depth + b"}",
    ]


@pytest.mark.parametrize("depth", [500, 900, 10_000, 100_000])
async def test_a_body_nested_deep_is_a_4xx_never_a_5xx(
    stack: RunningStack, http: httpx.AsyncClient, depth: int
) -> None:
    center, station = stack.urls["dispatch_center"], stack.urls["station_worker"]
    order = uuid.uuid4()
    targets = [
        ("POST", f"{center}/v1/requests", {"X-API-Key": stack.api_key}),
        (
            "POST",
            f"{center}/v1/operator/orders/{order}/cancel",
            {"Authorization": f"Bearer {stack.operator_token}"},
        ),
        (
            "PUT",
            f"{center}/v1/operator/stations/st-deep",
            {"Authorization": f"Bearer {stack.operator_token}"},
        ),
        (
            "POST",
            f"{station}/v1/orders/{order}/reject",
            {"Authorization": f"Bearer {stack.manager_token('st-shaxi')}"},
        ),
        (
            "POST",
            f"{station}/v1/stations/st-shaxi/workers",
            {"Authorization": f"Bearer {stack.manager_token('st-shaxi')}"},
        ),
    ]
    for method, url, headers in targets:
        for content in _nested(depth):
            resp = await http.request(
                method,
                url,
                content=content,
                headers={**headers, "Content-Type": "application/json"},
                timeout=30,
            )
            assert resp.status_code in (400, 413, 422), (method, url, resp.status_code)
