"""HTTP pieces every service uses: /healthz, /readyz, /metrics, request metrics, a body cap, and
the one place errors become responses: RFC 9457 ``application/problem+json``, the same shape
from every service (a 422 lists its fields in ``errors``; a 409 may carry ``current``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import is_transient
from shared.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidField,
    NotFound,
    TooManyRequests,
    Unauthorized,
)

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


PROBLEM = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    """For a 422: each field that is wrong, by its path (``["body", "reason"]``)."""
    current: dict[str, Any] | None = None
    """For a 409: the state of the thing that did not allow the request."""


def problem(
    status: int, detail: str, *, headers: Mapping[str, str] | None = None, **members: Any
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **{k: v for k, v in members.items() if v is not None},
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM)


_STATUS_OF: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    Unauthorized: 401,
    InvalidField: 422,
    TooManyRequests: 429,
}


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    status = next(code for kind, code in _STATUS_OF.items() if isinstance(exc, kind))
    if isinstance(exc, InvalidField):
        return problem(
            422,
            exc.detail,
            errors=[{"loc": list(exc.loc), "msg": exc.detail, "type": exc.type}],
        )
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": exc.scheme}
    elif isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem(status, exc.detail, headers=headers, **exc.extra)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e["loc"]), "msg": str(e["msg"]), "type": str(e["type"])} for e in exc.errors()
    ]
    fields = ", ".join(".".join(map(str, e["loc"])) for e in errors)
    return problem(422, f"invalid: {fields}", errors=errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


def answer_errors_as_problems(app: FastAPI) -> None:
    """Every error answer of ``app`` as problem details, documented as such in its OpenAPI."""
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas.update(schemas["Problem"].pop("$defs", {}))
            ref = {"$ref": "#/components/schemas/Problem"}
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for code, response in operation.get("responses", {}).items():
                        if code[0] in "45":
                            response["content"] = {PROBLEM: {"schema": ref}}
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# What any authenticated endpoint may answer besides its own responses.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "a body that cannot be parsed"},
    401: {"description": "missing or invalid credentials"},
    413: {"description": "request body over the size limit"},
    422: {"description": "a field that is not valid, named in errors"},
    503: {"description": "temporarily unavailable; retry after Retry-After"},
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
    return problem(503, "temporarily unavailable, retry later", headers={"Retry-After": "1"})


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
        return problem(413, f"request body over {self.max_body_bytes} bytes")

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
