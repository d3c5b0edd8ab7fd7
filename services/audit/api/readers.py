"""The audit API of its readers: supervisors and station managers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime

from services.audit import reports, trail
from services.audit.api.deps import AuditRuntime, CurrentReader, Evaluator
from services.audit.api.schemas import OrderTimeliness, TimelinessReport, TrailEntry
from services.audit.domain import GroupBy, Verification
from services.audit.verify import verify
from shared.http import Problem
from shared.runtime import PoolDep

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get(
    "/orders/{order_id}/trail",
    response_model=list[TrailEntry],
    responses={404: {"model": Problem}},
)
async def get_trail(order_id: uuid.UUID, reader: CurrentReader, pool: PoolDep) -> list[TrailEntry]:
    """The order's entries: a station's reader sees only that station's events."""
    return [TrailEntry(**r) for r in await trail.trail_for(pool, reader, order_id)]


@router.get(
    "/orders/{order_id}/timeliness",
    response_model=OrderTimeliness,
    responses={404: {"model": Problem}},
)
async def get_order_timeliness(
    order_id: uuid.UUID, reader: CurrentReader, pool: PoolDep
) -> OrderTimeliness:
    """When each stage was done, against the deadline it carried; every (re)dispatch and
    rejection."""
    return OrderTimeliness.of(await reports.order_timeliness(pool, reader, order_id))


@router.get("/audit/verify", response_model=Verification, responses={403: {"model": Problem}})
async def verify_trail(_: Evaluator, runtime: AuditRuntime) -> Verification:
    """Check every order's keyed hash chain, the inbox both ways and the checkpoints kept
    outside the database; ``broken`` lists everything that does not hold."""
    settings = runtime.settings
    return await verify(runtime.pool, settings.hmac_key, settings.audit_checkpoint_file)


@router.get(
    "/reports/timeliness",
    response_model=TimelinessReport,
    responses={200: {"content": {"text/csv": {}}}, 422: {"model": Problem}},
)
async def timeliness_report(
    reader: CurrentReader,
    pool: PoolDep,
    request: Request,
    from_: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="orders submitted at or after (default: to - 30 days)"),
    ] = None,
    to: Annotated[
        AwareDatetime | None, Query(description="orders submitted before (default: now)")
    ] = None,
    group_by: GroupBy = GroupBy.STATION,
) -> Response:
    """Per group: order counts, on-time rate and p50/p90 duration per stage, rejection and
    redispatch rates, open backlog and its age. ``Accept: text/csv`` for CSV. A station
    manager sees only their own station."""
    report = await reports.timeliness(pool, reader, from_, to, group_by)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(reports.to_csv(report), media_type="text/csv; charset=utf-8")
    body = TimelinessReport(**vars(report)).model_dump_json(by_alias=True)
    return Response(body, media_type="application/json")
