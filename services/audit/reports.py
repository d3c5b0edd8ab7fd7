"""Timeliness, from the projection: one order's stages as a reader may see them, and the
report a supervisor assesses stations on (the orders *submitted* in ``[from, to)``; the rules
of its figures are in domain.py)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from services.audit import store
from services.audit.domain import (
    INDICATORS,
    CenterEvaluation,
    GroupBy,
    GroupFigures,
    Reader,
    SeenTimeline,
    StationEvaluation,
    closed_months,
    evaluate_center,
    evaluation,
    figures_for,
    month_of,
    month_period,
    seen_by,
)
from services.audit.settings import AuditSettings
from shared.db import Pool
from shared.domain import Stage
from shared.errors import InvalidField, NotFound

DEFAULT_SPAN = timedelta(days=30)


async def order_timeliness(pool: Pool, reader: Reader, order_id: uuid.UUID) -> SeenTimeline:
    """When each stage was done, against the deadline it carried; every (re)dispatch and
    rejection the reader may see. NotFound when they may see nothing of the order."""
    async with pool.acquire() as conn:
        found = await store.load_timelines(conn, order_id=order_id)
    seen = seen_by(reader, found[0], datetime.now(UTC)) if found else None
    if seen is None:
        raise NotFound("no such order")
    return seen


@dataclass(frozen=True)
class Report:
    from_: datetime
    to: datetime
    group_by: GroupBy
    as_of: datetime
    groups: list[GroupFigures]


async def timeliness(
    pool: Pool,
    reader: Reader,
    from_: datetime | None,
    to: datetime | None,
    group_by: GroupBy,
) -> Report:
    """Per group: order counts, on-time rate and p50/p90 duration per stage, rejection and
    redispatch rates, open backlog and its age (by default of the 30 days up to now). A
    station manager's cover only their own station."""
    now = datetime.now(UTC)
    to = to or now
    from_ = from_ or to - DEFAULT_SPAN
    if from_ >= to:
        raise InvalidField(("query", "from"), "must be before 'to'")
    async with pool.acquire() as conn:
        orders = await store.load_timelines(
            conn, submitted_from=from_, submitted_to=to, stations=reader.scope
        )
    return Report(from_, to, group_by, now, figures_for(reader, orders, group_by, now))


@dataclass(frozen=True)
class Evaluation:
    from_: datetime
    to: datetime
    as_of: datetime
    review_share: float
    stations: list[StationEvaluation]
    center: CenterEvaluation | None
    """The center's own row: for evaluators only (of the orders of their county; of a
    snapshot, for those who see every station)."""
    snapshot: bool = False
    """A closed month's figures as they were kept (``as_of``: when), never recomputed."""


# A closed month's figures, kept as JSON: one row per station, the center's under "".
CENTER_ROW = ""
_STATION = TypeAdapter(StationEvaluation)
_CENTER = TypeAdapter(CenterEvaluation)
EVERY_STATION = Reader("snapshot", "evaluator")


async def snapshot_month(pool: Pool, month: date, settings: AuditSettings, now: datetime) -> bool:
    """Keep the month's evaluation of every station and of the center (the month in
    ``SWD_AUDIT_TIMEZONE``); False when it was kept already (by another replica)."""
    period = month_period(month, settings.audit_timezone)
    targets, share = settings.audit_evaluation_targets, settings.audit_review_share
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        orders = await store.load_timelines(conn, active_in=period)
        stations = evaluation(EVERY_STATION, orders, now, targets, share, None, period)
        center = evaluate_center(orders, now, targets, period)
        rows = [(s.station, _STATION.dump_python(s, mode="json")) for s in stations]
        rows.append((CENTER_ROW, _CENTER.dump_python(center, mode="json")))
        return await store.insert_snapshot(conn, month, rows)


async def take_snapshots(
    pool: Pool, settings: AuditSettings, now: datetime, limit: int = 12
) -> list[date]:
    """Snapshot the oldest closed months not kept yet (``limit`` at most); the months made."""
    async with pool.acquire() as conn:
        first = await store.first_submitted(conn)
        kept = await store.snapshot_months(conn)
    if first is None:
        return []
    after = timedelta(days=settings.audit_snapshot_after_days)
    due = [m for m in closed_months(first, now, settings.audit_timezone, after) if m not in kept]
    made = []
    for month in due[:limit]:
        if await snapshot_month(pool, month, settings, now):
            made.append(month)
    return made


async def _kept(
    pool: Pool, reader: Reader, period: tuple[datetime, datetime], zone: str, station: str | None
) -> tuple[datetime, list[StationEvaluation], CenterEvaluation | None] | None:
    """The snapshot of the month ``period`` is, as the reader may see it; None: none kept."""
    month = month_of(period, zone)
    if month is None:
        return None
    async with pool.acquire() as conn:
        kept = await store.snapshot(conn, month)
    if kept is None:
        return None
    made_at, rows = kept
    stations = [
        _STATION.validate_python(figures)
        for name, figures in sorted(rows.items())
        if name != CENTER_ROW and reader.sees_station(name) and station in (None, name)
    ]
    center = None
    if reader.sees_everything and station is None and CENTER_ROW in rows:
        center = _CENTER.validate_python(rows[CENTER_ROW])
    return made_at, stations, center


async def evaluation_report(
    pool: Pool,
    reader: Reader,
    from_: datetime | None,
    to: datetime | None,
    station: str | None,
    targets: dict[str, float],
    review_share: float,
    zone: str = "Asia/Shanghai",
) -> Evaluation:
    """Each station's indicators beside their targets, of what happened in ``[from, to)`` (by
    default the 30 days up to now): each figure counts in the period of its own event (the
    rules are in domain.py). A closed month (in ``zone``) that was kept is read from its
    snapshot. A reader asking for a station they do not see gets NotFound."""
    now = datetime.now(UTC)
    to = to or now
    from_ = from_ or to - DEFAULT_SPAN
    if from_ >= to:
        raise InvalidField(("query", "from"), "must be before 'to'")
    if station is not None and not reader.sees_station(station):
        raise NotFound("no such station")
    scope = reader.scope if station is None else {station}
    period = (from_, to)
    if (kept := await _kept(pool, reader, period, zone, station)) is not None:
        made_at, kept_stations, kept_center = kept
        return Evaluation(
            from_, to, made_at, review_share, kept_stations, kept_center, snapshot=True
        )
    async with pool.acquire() as conn:
        orders = await store.load_timelines(conn, stations=scope, active_in=period)
    stations = evaluation(reader, orders, now, targets, review_share, station, period)
    center = None
    if reader.is_evaluator and station is None:
        center = evaluate_center(orders, now, targets, period)
    return Evaluation(from_, to, now, review_share, stations, center)


_COUNT_COLUMNS = (
    "orders",
    "stints",
    "rejections",
    "completed",
    "accepts_on_time",
    "accepts_late",
    "completions_on_time",
    "completions_late",
    "with_feedback",
    "satisfied",
    "resolved",
    "first_visits",
    "first_visits_satisfied",
    "send_backs",
    "supervision_opened",
    "under_supervision",
    "follow_ups_due",
    "follow_ups_done_on_time",
    "follow_ups_done_late",
    "follow_ups_overdue",
    "picked_for_review",
    "reviewed",
)


def evaluation_csv(report: Evaluation) -> str:
    """One row per station: the counts, then each indicator's value, target and pass."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "station",
            *_COUNT_COLUMNS,
            *(f"{name}{part}" for name in INDICATORS for part in ("", "_target", "_pass")),
        ]
    )
    for s in report.stations:
        indicators = [
            cell
            for name in INDICATORS
            for cell in (
                s.indicators[name].value,
                s.indicators[name].target,
                s.indicators[name].passed,
            )
        ]
        writer.writerow(
            _cells([s.station, *(getattr(s, name) for name in _COUNT_COLUMNS), *indicators])
        )
    return out.getvalue()


_STAGE_COLUMNS = ("on_time_rate", "breached", "p50_seconds", "p90_seconds")
_GROUP_COLUMNS = (
    "dispatches",
    "rejections",
    "rejection_rate",
    "redispatched_orders",
    "redispatch_rate",
    "open_backlog",
    "oldest_open_age_seconds",
)


def timeliness_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            report.group_by.value,
            "orders",
            "completed",
            "cancelled",
            *(f"{stage.value}_{name}" for stage in Stage for name in _STAGE_COLUMNS),
            *_GROUP_COLUMNS,
        ]
    )
    for g in report.groups:
        writer.writerow(
            _cells(
                [
                    g.group,
                    g.orders,
                    g.completed,
                    g.cancelled,
                    *(getattr(g.stages[stage], name) for stage in Stage for name in _STAGE_COLUMNS),
                    *(getattr(g, name) for name in _GROUP_COLUMNS),
                ]
            )
        )
    return out.getvalue()


def _cells(values: Iterable[Any]) -> list[str]:
    return [_cell(v) for v in values]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "pass" if v else "fail"
    return str(round(v, 6)) if isinstance(v, float) else str(v)
