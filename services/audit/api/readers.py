"""The audit API of its readers: evaluators, supervisors and station managers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime, BaseModel

from services.audit import reports, reviews, trail
from services.audit.api.deps import AuditRuntime, CurrentReader, Evaluator, Supervisor
from services.audit.api.schemas import (
    CloseSupervision,
    EvaluationReport,
    OrderTimeliness,
    ReviewRequest,
    ReviewView,
    SupervisionView,
    TimelinessReport,
    TrailEntry,
)
from services.audit.domain import GroupBy, Verification
from services.audit.verify import verify
from shared.http import Problem
from shared.runtime import PoolDep

router = APIRouter(prefix="/v1", tags=["audit"])

R = TypeVar("R")


def _negotiated(
    request: Request, report: R, to_csv: Callable[[R], str], schema: type[BaseModel]
) -> Response:
    """A report as CSV when the client asks for ``text/csv``, else as JSON."""
    if "text/csv" in request.headers.get("accept", ""):
        return Response(to_csv(report), media_type="text/csv; charset=utf-8")
    body = schema(**vars(report)).model_dump_json(by_alias=True)
    return Response(body, media_type="application/json")


# The period every report and listing takes: orders submitted in [from, to).
PeriodFrom = Annotated[
    AwareDatetime | None,
    Query(alias="from", description="orders submitted at or after (default: to - 30 days)"),
]
PeriodTo = Annotated[
    AwareDatetime | None, Query(description="orders submitted before (default: now)")
]


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


@router.get(
    "/audit/credentials", response_model=list[TrailEntry], responses={403: {"model": Problem}}
)
async def get_credential_changes(_: Evaluator, pool: PoolDep) -> list[TrailEntry]:
    """The deployment's own chain of the trail: every integration key, operator, staff and
    reader token made, rotated or revoked, by whom and when, with its scope (never the
    secret). For evaluators of every station."""
    return [TrailEntry(**r) for r in await trail.credential_changes(pool)]


@router.get("/audit/verify", response_model=Verification, responses={403: {"model": Problem}})
async def verify_trail(_: Evaluator, runtime: AuditRuntime) -> Verification:
    """Check every order's keyed hash chain, the inbox both ways and the checkpoints kept
    outside the database; ``broken`` lists everything that does not hold."""
    settings = runtime.settings
    return await verify(
        runtime.pool, settings.hmac_key, settings.audit_checkpoint_file, kafka=settings.kafka
    )


@router.get(
    "/reports/timeliness",
    response_model=TimelinessReport,
    responses={200: {"content": {"text/csv": {}}}, 422: {"model": Problem}},
)
async def timeliness_report(
    reader: CurrentReader,
    pool: PoolDep,
    request: Request,
    from_: PeriodFrom = None,
    to: PeriodTo = None,
    group_by: GroupBy = GroupBy.STATION,
) -> Response:
    """Per group: order counts, on-time rate and p50/p90 duration per stage, rejection and
    redispatch rates, open backlog and its age. ``Accept: text/csv`` for CSV. A station
    manager sees only their own station."""
    report = await reports.timeliness(pool, reader, from_, to, group_by)
    return _negotiated(request, report, reports.timeliness_csv, TimelinessReport)


@router.get(
    "/reports/evaluation",
    response_model=EvaluationReport,
    responses={
        200: {"content": {"text/csv": {}}},
        404: {"model": Problem},
        422: {"model": Problem},
    },
)
async def evaluation_report(
    reader: CurrentReader,
    runtime: AuditRuntime,
    request: Request,
    from_: PeriodFrom = None,
    to: PeriodTo = None,
    station: Annotated[str | None, Query(description="one station only")] = None,
) -> Response:
    """Per station, each figure charged to the station that held the order when it was made
    (docs/domain.md): on-time acceptance and completion of each stint by the station's own
    deadlines, rejection rate; satisfaction (first visit and every round), resolved and
    send-back rates of the service rounds it completed; orders under supervision, follow-ups,
    review coverage and mean rubric scores; each beside its target
    (``SWD_AUDIT_EVALUATION_TARGETS``) with pass or fail; a rate with nothing to count is
    null. For evaluators, the center's own row: on-time dispatch, waits at the center, the
    return-visit rate. Each figure counts in the period of its own event; a calendar month
    (in ``SWD_AUDIT_TIMEZONE``) that has closed is served from its snapshot (``snapshot``:
    true, ``as_of``: when it was kept). ``Accept: text/csv`` for CSV (the stations). A
    station manager sees their station, a supervisor theirs, an evaluator every one; another
    station is a 404."""
    settings = runtime.settings
    report = await reports.evaluation_report(
        runtime.pool,
        reader,
        from_,
        to,
        station,
        settings.audit_evaluation_targets,
        settings.audit_review_share,
        settings.audit_timezone,
    )
    return _negotiated(request, report, reports.evaluation_csv, EvaluationReport)


@router.post(
    "/reviews",
    status_code=201,
    response_model=ReviewView,
    responses={
        403: {"model": Problem},
        404: {"model": Problem},
        409: {"model": Problem},
        422: {"model": Problem},
    },
)
async def post_review(body: ReviewRequest, reader: Supervisor, runtime: AuditRuntime) -> ReviewView:
    """The supervisor of the order's station scores an order picked for review (1-5 each);
    409 when it was not picked, or is reviewed already. An entry in the order's trail."""
    scores = reviews.Scores(
        body.timeliness, body.professional_quality, body.record_completeness, body.comment
    )
    done = await reviews.review(
        runtime.pool,
        runtime.settings.hmac_key,
        runtime.settings.audit_review_share,
        reader,
        body.order_id,
        scores,
    )
    return ReviewView.of(done)


@router.get(
    "/reviews",
    response_model=list[ReviewView],
    responses={422: {"model": Problem}},
)
async def get_reviews(
    reader: CurrentReader,
    runtime: AuditRuntime,
    from_: PeriodFrom = None,
    to: PeriodTo = None,
    pending: Annotated[bool, Query(description="only those not reviewed yet")] = False,
) -> list[ReviewView]:
    """The orders of the reader's stations picked for review (``SWD_AUDIT_REVIEW_SHARE`` of
    the completed ones, by a fixed function of the order id), with their review once made."""
    found = await reviews.picked(
        runtime.pool,
        reader,
        runtime.settings.audit_review_share,
        from_,
        to,
        pending_only=pending,
    )
    return [ReviewView.of(p) for p in found]


@router.get("/supervisions", response_model=list[SupervisionView])
async def get_supervisions(
    reader: CurrentReader,
    pool: PoolDep,
    include_closed: Annotated[bool, Query(description="closed ones too")] = False,
) -> list[SupervisionView]:
    """Orders under supervision (督办) at the reader's stations, oldest first."""
    rows = await reviews.supervisions(pool, reader, open_only=not include_closed)
    return [SupervisionView(**r) for r in rows]


@router.post(
    "/supervisions/{order_id}/close",
    response_model=SupervisionView,
    responses={
        403: {"model": Problem},
        404: {"model": Problem},
        409: {"model": Problem},
        422: {"model": Problem},
    },
)
async def close_supervision(
    order_id: uuid.UUID, body: CloseSupervision, reader: Supervisor, runtime: AuditRuntime
) -> SupervisionView:
    """The station's supervisor closes the order's supervision with a note (kept off the
    trail; the close is an entry in it). 409 when it is not under supervision."""
    closed = await reviews.close_supervision(
        runtime.pool, runtime.settings.hmac_key, reader, order_id, body.note
    )
    return SupervisionView(**closed)
