"""Station dashboard API: the queue, the order, the actions, social workers, live updates."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.types import DecoratedCallable

from services.station_worker import actions, follow_ups, queue, store, workers
from services.station_worker.api.deps import (
    Acting,
    CurrentStaff,
    StationManager,
    StationRuntime,
    StationStaff,
    etag,
)
from services.station_worker.api.schemas import (
    AssignBody,
    CompleteBody,
    FollowUpsPage,
    FollowUpTask,
    FollowUpWorkerBody,
    Me,
    QueuePage,
    RejectBody,
    StationOrder,
    SuggestedWorker,
    VisitBody,
    Worker,
    WorkerBody,
)
from services.station_worker.domain import Action, QueueFilter
from services.station_worker.jobs import HUB
from shared.domain import OrderStatus, Urgency
from shared.http import Problem
from shared.runtime import PoolDep

router = APIRouter(prefix="/v1", tags=["dashboard"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid staff token"},
    404: {"model": Problem, "description": "no such thing at the staff member's station"},
}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": Problem, "description": "the staff member's role may not do this"},
    409: {
        "model": Problem,
        "description": "the order's status (or version) does not allow it; `current` has both",
    },
}


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
    filters = QueueFilter(tuple(status_ or ()), tuple(urgency or ()), overdue, worker_id)
    return await queue.list_queue(pool, staff.station_id, filters, limit, cursor)


@router.get("/orders/{order_id}", response_model=StationOrder, responses=ERRORS)
async def get_order(
    order_id: uuid.UUID, staff: CurrentStaff, pool: PoolDep, response: Response
) -> StationOrder:
    order = await queue.order_view(pool, staff, order_id)
    response.headers["ETag"] = etag(order.version)
    return order


def _action(name: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """The route of one action on an order: it answers the changed order, with its ETag."""
    return router.post(
        f"/orders/{{order_id}}/{name}", response_model=StationOrder, responses=ACTION_ERRORS
    )


@_action("accept")
async def accept(act: Acting) -> StationOrder:
    return act.done(await actions.accept(act.pool, act.attempt))


@_action("reject")
async def reject(body: RejectBody, act: Acting) -> StationOrder:
    return act.done(await actions.reject(act.pool, act.attempt, body))


@_action("assign")
async def assign(body: AssignBody, act: Acting) -> StationOrder:
    return act.done(await actions.assign(act.pool, act.attempt, body))


@_action("reassign")
async def reassign(body: AssignBody, act: Acting) -> StationOrder:
    return act.done(await actions.assign(act.pool, act.attempt, body, Action.REASSIGN))


@_action("complete")
async def complete(body: CompleteBody, act: Acting) -> StationOrder:
    return act.done(await actions.complete(act.pool, act.attempt, body))


@_action("start")
async def start(act: Acting) -> StationOrder:
    return act.done(await actions.start(act.pool, act.attempt))


@router.get(
    "/stations/{station_id}/follow-ups",
    response_model=FollowUpsPage,
    responses={**ERRORS, 403: ACTION_ERRORS[403]},
)
async def list_follow_ups(
    staff: StationStaff,
    pool: PoolDep,
    worker_id: Annotated[
        str | None, Query(max_length=200, description="a manager's filter; a worker's own")
    ] = None,
    unattended: Annotated[
        bool | None, Query(description="true: tasks whose worker is gone (a manager decides)")
    ] = None,
    overdue: Annotated[bool | None, Query(description="past the due day")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> FollowUpsPage:
    """The station's open follow-up tasks, soonest due first: a social worker's own, or for a
    manager all of them."""
    return await follow_ups.list_follow_ups(pool, staff, worker_id, unattended, overdue, limit)


@router.post(
    "/orders/{order_id}/follow-ups",
    response_model=FollowUpTask,
    status_code=status.HTTP_201_CREATED,
    responses=ACTION_ERRORS,
)
async def record_follow_up(
    order_id: uuid.UUID, body: VisitBody, staff: CurrentStaff, pool: PoolDep
) -> FollowUpTask:
    """Record a follow-up visit (the task's worker or a manager): the next one is due by
    `next_follow_up_by`, or the task ends (null). Emits `order.followed_up`."""
    return await follow_ups.record_visit(pool, staff, order_id, body)


@router.post(
    "/orders/{order_id}/follow-ups/reassign", response_model=FollowUpTask, responses=ACTION_ERRORS
)
async def reassign_follow_up(
    order_id: uuid.UUID, body: FollowUpWorkerBody, staff: CurrentStaff, pool: PoolDep
) -> FollowUpTask:
    """A manager gives the open follow-up task to another active social worker of the station."""
    return await follow_ups.reassign(pool, staff, order_id, body)


@router.get(
    "/orders/{order_id}/suggested-workers",
    response_model=list[SuggestedWorker],
    responses=ERRORS,
)
async def suggested_workers(
    order_id: uuid.UUID, staff: CurrentStaff, pool: PoolDep
) -> list[SuggestedWorker]:
    return await workers.suggest_workers(pool, staff, order_id)


@router.get("/stations/{station_id}/workers", response_model=list[Worker], responses=ERRORS)
async def list_workers(staff: StationStaff, pool: PoolDep) -> list[Worker]:
    return await workers.list_workers(pool, staff.station_id)


@router.post(
    "/stations/{station_id}/workers",
    response_model=Worker,
    status_code=status.HTTP_201_CREATED,
    responses={**ACTION_ERRORS, 200: {"model": Worker, "description": "updated"}},
)
async def upsert_worker(
    body: WorkerBody, staff: StationManager, pool: PoolDep, response: Response
) -> Worker:
    worker, created = await workers.upsert_worker(pool, staff.station_id, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return worker


@router.get("/stations/{station_id}/stream", response_class=EventSourceResponse, responses=ERRORS)
async def stream(
    staff: StationStaff, pool: PoolDep, runtime: StationRuntime
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `ready` once subscribed, then `order` per queue change
    ({order_id, status, version}; status `withdrawn` when redispatched to another station),
    and `resync` when changes may have been missed (reload the queue). The stream ends within
    `SWD_STATION_STREAM_TOKEN_CHECK_S` of its token being revoked or re-issued."""
    check_every = runtime.settings.station_stream_token_check_s
    with HUB.subscribe(staff.station_id) as changes:
        yield ServerSentEvent(event="ready", data={"station_id": staff.station_id})
        loop = asyncio.get_running_loop()
        next_check = loop.time() + check_every
        while True:
            change: dict[str, Any] | None = None
            with contextlib.suppress(TimeoutError):
                change = await asyncio.wait_for(changes.get(), max(0, next_check - loop.time()))
            if loop.time() >= next_check:
                if not await store.still_valid(pool, staff):
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
