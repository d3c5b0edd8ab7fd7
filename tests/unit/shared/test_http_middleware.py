"""Request metrics and the body cap (shared/http.py), on an in-process app."""

from __future__ import annotations

import asyncpg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.http import REQUESTS, answer_transient_errors_503, install_middleware


def _app() -> FastAPI:
    app = FastAPI()
    install_middleware(app, service="unit-http", max_body_bytes=100)

    @app.post("/items/{item_id}")
    async def create(item_id: int, body: dict[str, str]) -> dict[str, int]:
        return {"id": item_id, "fields": len(body)}

    return app


def _count(route: str, status: str) -> float:
    value = REQUESTS.labels("unit-http", "POST", route, status)._value.get()
    return float(value)


def test_requests_are_counted_by_route_template_and_status() -> None:
    before = _count("/items/{item_id}", "200")
    with TestClient(_app()) as client:
        for i in range(3):
            assert client.post(f"/items/{i}", json={"a": "b"}).json() == {"id": i, "fields": 1}
    assert _count("/items/{item_id}", "200") == before + 3


def test_bodies_over_the_cap_are_413_with_or_without_a_length() -> None:
    with TestClient(_app()) as client:
        declared = client.post("/items/1", json={"a": "x" * 200})
        assert declared.status_code == 413

        def chunks() -> object:
            yield b'{"a": "'
            yield b"x" * 200
            yield b'"}'

        streamed = client.post("/items/1", content=chunks())  # type: ignore[arg-type]
        assert streamed.status_code == 413
        small = client.post(
            "/items/1",
            content=iter([b'{"a":', b' "b"}']),  # type: ignore[arg-type]
            headers={"content-type": "application/json"},
        )
        assert small.status_code == 200, small.text


def _failing_app(error: BaseException) -> FastAPI:
    app = FastAPI()
    answer_transient_errors_503(app)
    install_middleware(app, service="unit-http", max_body_bytes=100)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    return app


def _postgres_error(sqlstate: str) -> BaseException:
    return asyncpg.PostgresError.new({"C": sqlstate, "M": "from the test"})


@pytest.mark.parametrize(
    "error",
    [
        _postgres_error("57P02"),  # crash restart
        _postgres_error("53100"),  # disk full
        _postgres_error("25006"),  # read-only after a failover
        _postgres_error("57014"),  # statement timeout
        _postgres_error("55P03"),  # lock timeout
        _postgres_error("40001"),
        ConnectionRefusedError(),
        asyncpg.InterfaceError("connection is closed"),
    ],
)
def test_a_passing_database_condition_is_503_with_retry_after(error: BaseException) -> None:
    with TestClient(_failing_app(error), raise_server_exceptions=False) as client:
        resp = client.get("/fails")
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "error", [_postgres_error("23505"), _postgres_error("42703"), asyncpg.DataError("bad")]
)
def test_other_database_errors_stay_500(error: BaseException) -> None:
    with TestClient(_failing_app(error), raise_server_exceptions=False) as client:
        resp = client.get("/fails")
    assert resp.status_code == 500
