"""The timeliness report a supervisor assesses stations on, computed from the projection.

- The report covers the orders *submitted* in ``[from, to)``.
- A stage is on time when done by its deadline; it is breached when done late, or not done
  when its deadline passed (the order still open, or ended later). Stages still pending, or
  skipped by an order that ended before their deadline, count in neither.
- Durations are from submission until the stage was done; p50 and p90 interpolate linearly
  between the two nearest values (as PostgreSQL's ``percentile_cont``).
- Rejection rate: rejected dispatches / dispatches. Grouped by station, a dispatch counts for
  the station it went to, so a station that rejects an order is charged with it even after the
  order moved on; by any other grouping it counts for the order's group.
- Redispatch rate: orders dispatched more than once / orders dispatched at all.
- Open backlog: the orders of the group not completed, closed or cancelled, and the age of the
  oldest one since submission, as of the time of the report.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.audit.projection import Timeline
from shared.domain import Stage

UNASSIGNED = "none"


class GroupBy(StrEnum):
    STATION = "station"
    CATEGORY = "category"
    URGENCY = "urgency"
    WORKER = "worker"


class StageFigures(BaseModel):
    done: int
    on_time: int
    breached: int
    on_time_rate: float | None
    p50_seconds: float | None
    p90_seconds: float | None


class GroupFigures(BaseModel):
    group: str
    orders: int
    completed: int
    cancelled: int
    stages: dict[Stage, StageFigures]
    dispatches: int
    rejections: int
    rejection_rate: float | None
    redispatched_orders: int
    redispatch_rate: float | None
    open_backlog: int
    oldest_open_age_seconds: float | None


class TimelinessReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    group_by: GroupBy
    as_of: datetime
    groups: list[GroupFigures]


@dataclass(frozen=True)
class DispatchRow:
    order_id: str
    station_id: str
    rejected: bool


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def group_of(order: Timeline, group_by: GroupBy) -> str:
    value = {
        GroupBy.STATION: order.station_id,
        GroupBy.CATEGORY: order.category,
        GroupBy.URGENCY: order.urgency,
        GroupBy.WORKER: order.worker_id,
    }[group_by]
    return value or UNASSIGNED


def _stage_figures(orders: Sequence[Timeline], stage: Stage, now: datetime) -> StageFigures:
    outcomes = [o.stage_outcome(stage, now) for o in orders]
    durations = [
        (done - o.submitted_at).total_seconds()
        for o in orders
        if (done := o.done_at(stage)) is not None and o.submitted_at is not None
    ]
    on_time, breached = outcomes.count("met"), outcomes.count("breached")
    return StageFigures(
        done=len(durations),
        on_time=on_time,
        breached=breached,
        on_time_rate=_rate(on_time, on_time + breached),
        p50_seconds=percentile(durations, 0.5),
        p90_seconds=percentile(durations, 0.9),
    )


def build(
    orders: Iterable[Timeline],
    dispatches: Iterable[DispatchRow],
    group_by: GroupBy,
    now: datetime,
) -> list[GroupFigures]:
    by_group: dict[str, list[Timeline]] = defaultdict(list)
    group_of_order: dict[str, str] = {}
    for order in orders:
        by_group[group_of(order, group_by)].append(order)
        group_of_order[order.order_id] = group_of(order, group_by)
    dispatches_by_group: dict[str, list[DispatchRow]] = defaultdict(list)
    for d in dispatches:
        key: str | None = (
            d.station_id if group_by is GroupBy.STATION else group_of_order.get(d.order_id)
        )
        if key is not None:
            dispatches_by_group[key].append(d)

    groups = []
    for name in sorted(by_group.keys() | dispatches_by_group.keys()):
        members = by_group.get(name, [])
        sent = dispatches_by_group.get(name, [])
        rejected = sum(d.rejected for d in sent)
        dispatched = [o for o in members if o.dispatches]
        redispatched = sum(1 for o in dispatched if o.redispatches)
        still_open = [o for o in members if o.ended_at is None]
        ages = [(now - o.submitted_at).total_seconds() for o in still_open if o.submitted_at]
        groups.append(
            GroupFigures(
                group=name,
                orders=len(members),
                completed=sum(1 for o in members if o.completed_at is not None),
                cancelled=sum(1 for o in members if o.status == "cancelled"),
                stages={stage: _stage_figures(members, stage, now) for stage in Stage},
                dispatches=len(sent),
                rejections=rejected,
                rejection_rate=_rate(rejected, len(sent)),
                redispatched_orders=redispatched,
                redispatch_rate=_rate(redispatched, len(dispatched)),
                open_backlog=len(still_open),
                oldest_open_age_seconds=max(ages) if ages else None,
            )
        )
    return groups


def to_csv(report: TimelinessReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    stage_columns = [
        f"{stage.value}_{name}"
        for stage in Stage
        for name in ("on_time_rate", "breached", "p50_seconds", "p90_seconds")
    ]
    writer.writerow(
        [
            report.group_by.value,
            "orders",
            "completed",
            "cancelled",
            *stage_columns,
            "dispatches",
            "rejections",
            "rejection_rate",
            "redispatched_orders",
            "redispatch_rate",
            "open_backlog",
            "oldest_open_age_seconds",
        ]
    )
    for g in report.groups:
        stages: Mapping[Stage, StageFigures] = g.stages
        writer.writerow(
            _cells(
                [
                    g.group,
                    g.orders,
                    g.completed,
                    g.cancelled,
                    *(
                        value
                        for stage in Stage
                        for value in (
                            stages[stage].on_time_rate,
                            stages[stage].breached,
                            stages[stage].p50_seconds,
                            stages[stage].p90_seconds,
                        )
                    ),
                    g.dispatches,
                    g.rejections,
                    g.rejection_rate,
                    g.redispatched_orders,
                    g.redispatch_rate,
                    g.open_backlog,
                    g.oldest_open_age_seconds,
                ]
            )
        )
    return out.getvalue()


def _cells(values: Iterable[Any]) -> list[str]:
    return [
        "" if v is None else str(round(v, 6)) if isinstance(v, float) else str(v) for v in values
    ]
