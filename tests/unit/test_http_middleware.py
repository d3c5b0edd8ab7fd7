"""Request metrics and the body cap (shared/http.py), on an in-process app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.http import REQUESTS, install_middleware


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
