"""Station dashboard API: the queue, the order, the actions, social workers, live updates."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, Query, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.station_worker import service
from services.station_worker.auth import CurrentStaff, StaffMember, still_valid
from services.station_worker.models import (
    AssignBody,
    CompleteBody,
    Me,
    QueuePage,
    RejectBody,
    StationOrder,
    SuggestedWorker,
    Worker,
    WorkerBody,
)
from services.station_worker.settings import StationSettings
from services.station_worker.stream import HUB
from shared.domain import OrderStatus, Urgency
from shared.runtime import PoolDep, RuntimeDep

router = APIRouter(prefix="/v1", tags=["dashboard"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid staff token"},
    404: {"description": "no such thing at the staff member's station"},
}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "the staff member's role may not do this"},
    409: {"description": "the order's status (or version) does not allow it; body has both"},
}


async def own_station(station_id: str, staff: CurrentStaff) -> StaffMember:
    """The staff member, when ``station_id`` is their own station; 404 otherwise."""
    service.require_station(staff, station_id, "no such station")
    return staff


StationStaff = Annotated[StaffMember, Depends(own_station)]


async def expected_version(
    if_match: Annotated[
        str | None,
        Header(description='the order\'s version as its ETag (`"3"`): 409 if it changed since'),
    ] = None,
) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise service.invalid_field(["header", "if-match"], 'expected an ETag like "3"')
    return int(value)


ExpectedVersion = Annotated[int | None, Depends(expected_version)]


def _with_etag(order: StationOrder, response: Response) -> StationOrder:
    response.headers["ETag"] = service.etag(order.version)
    return order


@router.get("/me", response_model=Me, responses=ERRORS)
async def me(staff: CurrentStaff) -> Me:
    return Me(id=staff.id, name=staff.name, station_id=staff.station_id, role=staff.role)


@router.get("/stations/{station_id}/orders", response_model=QueuePage, responses=ERRORS)
async def list_orders(
    staff: StationStaff,
    pool: PoolDep,
    status_: Annotated[
        list[OrderStatus] | None,
        Query(alias="status", description="default: the open statuses"),
    ] = None,
    urgency: Annotated[list[Urgency] | None, Query()] = None,
    overdue: Annotated[bool | None, Query(description="past the current stage's deadline")] = None,
    worker_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> QueuePage:
    filters = service.QueueFilter(
        statuses=status_ or [], urgencies=urgency or [], overdue=overdue, worker_id=worker_id
    )
    return await service.list_queue(pool, staff.station_id, filters, limit, cursor)


@router.get("/orders/{order_id}", response_model=StationOrder, responses=ERRORS)
async def get_order(
    order_id: uuid.UUID, staff: CurrentStaff, pool: PoolDep, response: Response
) -> StationOrder:
    order = await service.get_order(pool, staff, order_id)
    if order is None:
        raise service.not_found()
    return _with_etag(order, response)


@router.post("/orders/{order_id}/accept", response_model=StationOrder, responses=ACTION_ERRORS)
async def accept(
    order_id: uuid.UUID,
    staff: CurrentStaff,
    pool: PoolDep,
    version: ExpectedVersion,
    response: Response,
) -> StationOrder:
    return _with_etag(await service.accept(pool, staff, order_id, version), response)


@router.post("/orders/{order_id}/reject", response_model=StationOrder, responses=ACTION_ERRORS)
async def reject(
    order_id: uuid.UUID,
    body: RejectBody,
    staff: CurrentStaff,
    pool: PoolDep,
    version: ExpectedVersion,
    response: Response,
) -> StationOrder:
    return _with_etag(await service.reject(pool, staff, order_id, version, body), response)


@router.post("/orders/{order_id}/assign", response_model=StationOrder, responses=ACTION_ERRORS)
async def assign(
    order_id: uuid.UUID,
    body: AssignBody,
    staff: CurrentStaff,
    pool: PoolDep,
    version: ExpectedVersion,
    response: Response,
) -> StationOrder:
    return _with_etag(await service.assign(pool, staff, order_id, version, body), response)


@router.post("/orders/{order_id}/reassign", response_model=StationOrder, responses=ACTION_ERRORS)
async def reassign(
    order_id: uuid.UUID,
    body: AssignBody,
    staff: CurrentStaff,
    pool: PoolDep,
    version: ExpectedVersion,
    response: Response,
) -> StationOrder:
    order = await service.assign(pool, staff, order_id, version, body, service.REASSIGN)
    return _with_etag(order, response)


@router.post("/orders/{order_id}/start", response_model=StationOrder, responses=ACTION_ERRORS)
async def start(
    order_id: uuid.UUID,
    staff: CurrentStaff,
    pool: PoolDep,
    version: ExpectedVersion,
    response: Response,
) -> StationOrder:
    return _with_etag(await service.start(pool, staff, order_id, version), response)


@router.post("/orders/{order_id}/complete", response_model=StationOrder, responses=ACTION_ERRORS)
async def complete(
    order_id: uuid.UUID,
    body: CompleteBody,
    staff: CurrentStaff,
    pool: PoolDep,
    version: ExpectedVersion,
    response: Response,
) -> StationOrder:
    return _with_etag(await service.complete(pool, staff, order_id, version, body), response)


@router.get(
    "/orders/{order_id}/suggested-workers",
    response_model=list[SuggestedWorker],
    responses=ERRORS,
)
async def suggested_workers(
    order_id: uuid.UUID, staff: CurrentStaff, pool: PoolDep
) -> list[SuggestedWorker]:
    return await service.suggest_workers(pool, staff, order_id)


@router.get("/stations/{station_id}/workers", response_model=list[Worker], responses=ERRORS)
async def list_workers(staff: StationStaff, pool: PoolDep) -> list[Worker]:
    return await service.list_workers(pool, staff.station_id)


@router.post(
    "/stations/{station_id}/workers",
    response_model=Worker,
    status_code=status.HTTP_201_CREATED,
    responses={**ACTION_ERRORS, 200: {"model": Worker, "description": "updated"}},
)
async def upsert_worker(
    body: WorkerBody, staff: StationStaff, pool: PoolDep, response: Response
) -> Worker:
    service.require_manager(staff, "manage social workers")
    worker, created = await service.upsert_worker(pool, staff.station_id, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return worker


@router.get("/stations/{station_id}/stream", response_class=EventSourceResponse, responses=ERRORS)
async def stream(
    staff: StationStaff, pool: PoolDep, runtime: RuntimeDep
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `ready` once subscribed, then `order` per queue change
    ({order_id, status, version}; status `withdrawn` when redispatched to another station),
    and `resync` when changes may have been missed (reload the queue). The stream ends within
    `SWD_STATION_STREAM_TOKEN_CHECK_S` of its token being revoked or re-issued."""
    check_every = cast(StationSettings, runtime.settings).station_stream_token_check_s
    with HUB.subscribe(staff.station_id) as changes:
        yield ServerSentEvent(event="ready", data={"station_id": staff.station_id})
        loop = asyncio.get_running_loop()
        next_check = loop.time() + check_every
        while True:
            change: dict[str, Any] | None = None
            with contextlib.suppress(TimeoutError):
                change = await asyncio.wait_for(changes.get(), max(0, next_check - loop.time()))
            if loop.time() >= next_check:
                if not await still_valid(pool, staff):
                    return
                next_check = loop.time() + check_every
            if change is None:
                continue
            if change.get("resync"):
                yield ServerSentEvent(event="resync", data={})
            else:
                yield ServerSentEvent(
                    event="order",
                    data={k: change[k] for k in ("order_id", "status", "version")},
                )
