"""HTTP pieces every service uses: /healthz, /readyz, /metrics, request metrics, a body cap."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic import BaseModel
from starlette.routing import Match

REQUESTS = Counter(
    "swd_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "swd_http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

ReadinessCheck = Callable[[], Awaitable[str | None]]


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
    """``readiness`` returns None when ready, else what is not ready yet."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
    async def readyz() -> JSONResponse:
        problem = await readiness()
        if problem is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not_ready", "reason": problem}, status_code=503)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def _route_template(app: FastAPI, request: Request) -> str:
    """The matched route's path template, so label values stay bounded."""
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"


def install_middleware(app: FastAPI, *, service: str, max_body_bytes: int) -> None:
    @app.middleware("http")
    async def measure_and_cap(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        route = _route_template(app, request)
        started = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            response: Response = JSONResponse(
                {"detail": f"request body over {max_body_bytes} bytes"}, status_code=413
            )
        elif (
            declared is None
            and request.method in ("POST", "PUT", "PATCH")
            and len(await request.body()) > max_body_bytes
        ):
            response = JSONResponse(
                {"detail": f"request body over {max_body_bytes} bytes"}, status_code=413
            )
        else:
            response = await call_next(request)
        if route != "/metrics":
            REQUESTS.labels(service, request.method, route, str(response.status_code)).inc()
            REQUEST_SECONDS.labels(service, request.method, route).observe(
                time.perf_counter() - started
            )
        return response
