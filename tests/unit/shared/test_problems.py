"""Every error as RFC 9457 problem details (shared/http.py), on an in-process app."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from shared import errors
from shared.http import PROBLEM, answer_errors_as_problems
from shared.paging import decode_cursor, encode_cursor


def _app() -> FastAPI:
    app = FastAPI()
    answer_errors_as_problems(app)

    @app.get("/raise/{kind}")
    async def raise_(kind: str) -> None:
        raise {
            "not_found": errors.NotFound("no such order"),
            "conflict": errors.Conflict("already done", current={"status": "done", "version": 3}),
            "forbidden": errors.Forbidden("managers only"),
            "unauthorized": errors.Unauthorized("invalid key", scheme="ApiKey"),
            "invalid": errors.InvalidField(("body", "reason"), "required", type="missing"),
            "http": HTTPException(429, "slow down", headers={"Retry-After": "7"}),
            "too_many": errors.TooManyRequests("over 600 a minute", retry_after=9),
        }[kind]

    @app.get("/typed")
    async def typed(n: int) -> int:
        return n

    return app


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("not_found", 404),
        ("conflict", 409),
        ("forbidden", 403),
        ("unauthorized", 401),
        ("invalid", 422),
        ("http", 429),
        ("too_many", 429),
    ],
)
def test_each_error_is_a_problem_with_its_status(kind: str, status: int) -> None:
    with TestClient(_app()) as client:
        resp = client.get(f"/raise/{kind}")
    assert resp.status_code == status
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]


def test_a_problem_carries_what_its_error_names() -> None:
    with TestClient(_app()) as client:
        assert client.get("/raise/conflict").json()["current"] == {"status": "done", "version": 3}
        invalid = client.get("/raise/invalid").json()
        assert invalid["errors"] == [
            {"loc": ["body", "reason"], "msg": "required", "type": "missing"}
        ]
        assert client.get("/raise/unauthorized").headers["www-authenticate"] == "ApiKey"
        assert client.get("/raise/http").headers["retry-after"] == "7"
        assert client.get("/raise/too_many").headers["retry-after"] == "9"


def test_a_validation_error_names_its_field_in_the_same_shape() -> None:
    with TestClient(_app()) as client:
        resp = client.get("/typed", params={"n": "seven"})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM
    assert [e["loc"] for e in resp.json()["errors"]] == [["query", "n"]]


def test_the_openapi_documents_every_error_as_a_problem() -> None:
    with TestClient(_app()) as client:
        schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/typed"]["get"]["responses"]
    assert list(responses["422"]["content"]) == [PROBLEM]
    assert "HTTPValidationError" not in schema["components"]["schemas"]


@pytest.mark.parametrize("at", [None, datetime(2026, 12, 2, 8, 30, tzinfo=UTC)])
def test_a_cursor_gives_back_the_key_it_was_made_of(at: datetime | None) -> None:
    item = uuid.uuid4()
    assert decode_cursor(encode_cursor(at, item)) == (at, item)


@pytest.mark.parametrize(
    "cursor", ["", "null", "bm90IGpzb24", encode_cursor(None, uuid.uuid4())[:-3], "\u00e9t\u00e9"]
)
def test_anything_else_is_a_422_at_the_cursor(cursor: str) -> None:
    with pytest.raises(errors.InvalidField) as raised:
        decode_cursor(cursor)
    assert raised.value.loc == ("query", "cursor")
