"""HTTP pieces every service uses: /healthz, /readyz, /metrics, request metrics, a body cap."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import is_transient

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "swd_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "swd_http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

ReadinessCheck = Callable[[], Awaitable[list[str]]]


class ErrorDetail(BaseModel):
    detail: str


# What any authenticated endpoint may answer besides its own responses.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "a body that cannot be parsed"},
    401: {"model": ErrorDetail, "description": "missing or invalid credentials"},
    413: {"model": ErrorDetail, "description": "request body over the size limit"},
    503: {"model": ErrorDetail, "description": "temporarily unavailable; retry after Retry-After"},
}


def ops_router(readiness: ReadinessCheck) -> APIRouter:
    """``readiness`` returns what is not ready yet (e.g. ``["consumers"]``), empty when ready.
    /healthz answers as soon as the process serves."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "not ready, with what it waits for"}})
    async def readyz() -> JSONResponse:
        waiting_for = await readiness()
        if not waiting_for:
            return JSONResponse({"ready": True, "waiting_for": []})
        return JSONResponse({"ready": False, "waiting_for": waiting_for}, status_code=503)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def answer_transient_errors_503(app: FastAPI) -> None:
    """A request that failed on a condition of the database that passes (:func:`is_transient`)
    is answered 503 with Retry-After; any other error stays a 500."""
    for error in (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
    ):
        app.add_exception_handler(error, _temporarily_unavailable)


async def _temporarily_unavailable(request: Request, exc: Exception) -> Response:
    """The database is down, restarting or busy: the caller should retry, nothing was done."""
    if not is_transient(exc):
        raise exc
    log.warning("%s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(
        {"detail": "temporarily unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_middleware(app: FastAPI, *, service: str, max_body_bytes: int) -> None:
    app.add_middleware(MeasureAndCap, service=service, max_body_bytes=max_body_bytes)


class MeasureAndCap:
    """Request metrics and the body cap, as plain ASGI middleware (Starlette's
    ``BaseHTTPMiddleware`` costs a task and a memory stream per request)."""

    def __init__(self, app: ASGIApp, *, service: str, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            declared = Headers(scope=scope).get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await self._too_large()(scope, receive, send_and_note_status)
            elif declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
                buffered = await self._read_capped(receive)
                if buffered is None:
                    await self._too_large()(scope, receive, send_and_note_status)
                else:
                    await self.app(scope, _replay(buffered, receive), send_and_note_status)
            else:
                await self.app(scope, receive, send_and_note_status)
        finally:
            route = scope.get("route")
            template = str(getattr(route, "path", "unmatched"))
            if template != "/metrics":
                REQUESTS.labels(self.service, scope["method"], template, str(status)).inc()
                REQUEST_SECONDS.labels(self.service, scope["method"], template).observe(
                    time.perf_counter() - started
                )

    def _too_large(self) -> JSONResponse:
        return JSONResponse(
            {"detail": f"request body over {self.max_body_bytes} bytes"}, status_code=413
        )

    async def _read_capped(self, receive: Receive) -> list[Message] | None:
        """A body without Content-Length, read up to the cap; None when it is over."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
