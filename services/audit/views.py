"""Audit API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import AwareDatetime, BaseModel

from services.audit import reports
from services.audit.auth import CurrentReader, Reader
from services.audit.projection import Timeline
from services.audit.reports import DispatchRow, GroupBy, TimelinessReport
from services.audit.settings import AuditSettings
from services.audit.store import load_timelines
from services.audit.verify import Verification, verify
from shared.domain import Stage
from shared.errors import InvalidField
from shared.runtime import PoolDep, RuntimeDep

REPORT_DEFAULT_SPAN = timedelta(days=30)

router = APIRouter(prefix="/v1", tags=["audit"])


class TrailEntry(BaseModel):
    seq: int
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    station_id: str | None
    event: dict[str, Any]
    prev_hash: str
    hash: str


@router.get("/orders/{order_id}/trail", response_model=list[TrailEntry], responses={404: {}})
async def get_trail(order_id: uuid.UUID, reader: CurrentReader, pool: PoolDep) -> list[TrailEntry]:
    rows = await pool.fetch(
        """SELECT seq, event_id, event_type, occurred_at, recorded_at, station_id, event,
                  prev_hash, hash
           FROM trail WHERE order_id = $1 ORDER BY occurred_at, seq""",
        order_id,
    )
    # A station's reader sees only that station's events, not those of the center or of any
    # other station the order was (re)dispatched to.
    visible = [r for r in rows if reader.sees_station(r["station_id"])]
    if not visible:
        raise HTTPException(404, "no such order")
    return [TrailEntry(**dict(r)) for r in visible]


class StageView(BaseModel):
    deadline: datetime | None
    done_at: datetime | None
    outcome: str


class DispatchView(BaseModel):
    dispatch_no: int
    station_id: str
    dispatched_at: datetime
    reason: str | None
    received_at: datetime | None
    rejected_at: datetime | None
    reject_reason_code: str | None


class OrderTimeliness(BaseModel):
    order_id: uuid.UUID
    status: str | None
    station_id: str | None
    worker_id: str | None
    category: str | None
    urgency: str | None
    submitted_at: datetime | None
    dispatched_at: datetime | None
    received_at: datetime | None
    accepted_at: datetime | None
    assigned_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    ended_at: datetime | None
    stages: dict[Stage, StageView]
    dispatches: list[DispatchView]
    redispatches: int
    rejections: int
    escalations: int


def _visible(reader: Reader, t: Timeline) -> bool:
    return reader.sees_station(t.station_id) or any(
        reader.sees_station(d.station_id) for d in t.dispatches
    )


@router.get("/orders/{order_id}/timeliness", response_model=OrderTimeliness, responses={404: {}})
async def get_order_timeliness(
    order_id: uuid.UUID, reader: CurrentReader, pool: PoolDep
) -> OrderTimeliness:
    """When each stage was done, against the deadline it carried; every (re)dispatch and
    rejection."""
    async with pool.acquire() as conn:
        found = await load_timelines(conn, order_id=order_id)
    if not found or not _visible(reader, found[0]):
        raise HTTPException(404, "no such order")
    t = found[0]
    now = datetime.now(UTC)
    own_dispatches = [
        DispatchView(**vars(d)) for d in t.dispatches if reader.sees_station(d.station_id)
    ]
    view = OrderTimeliness(
        **{name: getattr(t, name) for name in OrderTimeliness.model_fields if hasattr(t, name)}
        | {
            "stages": {
                stage: StageView(
                    deadline=t.deadlines.get(stage),
                    done_at=t.done_at(stage),
                    outcome=t.stage_outcome(stage, now),
                )
                for stage in Stage
            },
            "dispatches": own_dispatches,
        }
    )
    if reader.sees_station(t.station_id):
        return view
    # The order is at another station now: a station's reader sees only its own dispatches,
    # nothing of what the other station did with the order.
    return view.model_copy(
        update=dict.fromkeys(_AT_THE_CURRENT_STATION)
        | {
            "stages": {},
            "rejections": sum(d.rejected_at is not None for d in own_dispatches),
        }
    )


_AT_THE_CURRENT_STATION = (
    "status",
    "station_id",
    "worker_id",
    "dispatched_at",
    "received_at",
    "accepted_at",
    "assigned_at",
    "started_at",
    "completed_at",
    "ended_at",
)


@router.get("/audit/verify", response_model=Verification, responses={403: {}})
async def verify_trail(reader: CurrentReader, runtime: RuntimeDep) -> Verification:
    """Check every order's keyed hash chain, the inbox both ways and the checkpoints kept
    outside the database; ``broken`` lists everything that does not hold."""
    if reader.role != "supervisor":
        raise HTTPException(403, "verification covers every station: supervisors only")
    settings = cast(AuditSettings, runtime.settings)
    return await verify(runtime.pool, settings.hmac_key, settings.audit_checkpoint_file)


@router.get(
    "/reports/timeliness",
    response_model=TimelinessReport,
    responses={200: {"content": {"text/csv": {}}}, 422: {}},
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
    now = datetime.now(UTC)
    to = to or now
    from_ = from_ or to - REPORT_DEFAULT_SPAN
    if from_ >= to:
        raise InvalidField(("query", "from"), "must be before 'to'")
    own = None if reader.role == "supervisor" else reader.station_id
    async with pool.acquire() as conn:
        orders = await load_timelines(conn, submitted_from=from_, submitted_to=to, station_id=own)
    report = TimelinessReport(
        from_=from_,
        to=to,
        group_by=group_by,
        as_of=now,
        groups=reports.build(
            [o for o in orders if own is None or o.station_id == own],
            [
                DispatchRow(o.order_id, d.station_id, d.rejected_at is not None)
                for o in orders
                for d in o.dispatches
                if own is None or d.station_id == own
            ],
            group_by,
            now,
        ),
    )
    if "text/csv" in request.headers.get("accept", ""):
        return Response(reports.to_csv(report), media_type="text/csv; charset=utf-8")
    return Response(report.model_dump_json(by_alias=True), media_type="application/json")
