"""Prometheus figures computed from the trail and the projection tables, not counted in this
process: they stay right across restarts and replicas, and an event that arrives twice or
late counts once, under the labels it finally belongs to.

A background job recomputes them every ``audit_metrics_refresh_interval_s``; the collector
serves the latest result on every scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from services.audit.settings import AuditSettings
from services.audit.store import record_open_breaches
from shared.db import Connection
from shared.domain import OrderStatus, Stage
from shared.runtime import Runtime

NONE = "none"  # the station label of what belongs to no station (yet)
OPEN_STATUSES = [s.value for s in OrderStatus if s not in ("completed", "closed", "cancelled")]
# Stage durations from submission: minutes for dispatch, up to weeks for completion.
DURATION_BUCKETS = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    4 * 3600.0,
    8 * 3600.0,
    24 * 3600.0,
    48 * 3600.0,
    72 * 3600.0,
    7 * 86400.0,
    15 * 86400.0,
    30 * 86400.0,
)
STAGE_DONE = {
    Stage.DISPATCH: "dispatched_at",
    Stage.ACCEPT: "accepted_at",
    Stage.ASSIGN: "assigned_at",
    Stage.COMPLETE: "completed_at",
}
OVERDUE = " OR ".join(
    f"({done} IS NULL AND {stage.value}_by < now())" for stage, done in STAGE_DONE.items()
)


class AuditFigures(Collector):
    def __init__(self) -> None:
        self.families: Sequence[Metric] = ()

    def collect(self) -> Iterator[Metric]:
        yield from self.families


FIGURES = AuditFigures()
REGISTRY.register(FIGURES)


async def compute(conn: Connection) -> list[Metric]:
    events = CounterMetricFamily(
        "swd_lifecycle_events",
        "Lifecycle events in the audit trail, by type, order urgency and the event's station",
        labels=["event_type", "urgency", "station"],
    )
    for r in await conn.fetch(
        f"""SELECT t.event_type, coalesce(o.urgency, 'unknown') AS urgency,
                   coalesce(t.station_id, '{NONE}') AS station, count(*) AS n
            FROM trail t LEFT JOIN orders o USING (order_id) GROUP BY 1, 2, 3"""  # noqa: S608
    ):
        events.add_metric([r["event_type"], r["urgency"], r["station"]], r["n"])

    durations = HistogramMetricFamily(
        "swd_stage_duration_seconds",
        "Time from submission until each stage was done, by stage and urgency",
        labels=["stage", "urgency"],
    )
    for stage, done in STAGE_DONE.items():
        rows = await conn.fetch(
            f"""SELECT urgency, width_bucket(d, $1::float8[]) AS bucket, count(*) AS n,
                       sum(d) AS total
                FROM (SELECT urgency,
                             greatest(extract(epoch FROM {done} - submitted_at), 0)::float8 AS d
                      FROM orders WHERE {done} IS NOT NULL AND submitted_at IS NOT NULL
                        AND urgency IS NOT NULL) s
                GROUP BY 1, 2""",  # noqa: S608
            list(DURATION_BUCKETS),
        )
        for urgency in sorted({r["urgency"] for r in rows}):
            counts = [0] * (len(DURATION_BUCKETS) + 1)
            total = 0.0
            for r in rows:
                if r["urgency"] == urgency:
                    counts[r["bucket"]] += r["n"]
                    total += r["total"]
            cumulative, buckets = 0, []
            for le, n in zip([*map(str, DURATION_BUCKETS), "+Inf"], counts, strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            durations.add_metric([stage.value, urgency], buckets, total)

    breaches = CounterMetricFamily(
        "swd_sla_breaches",
        "Stage deadlines breached (counted when first seen), by stage, urgency and station",
        labels=["stage", "urgency", "station"],
    )
    for r in await conn.fetch(
        f"""SELECT stage, coalesce(urgency, 'unknown') AS urgency,
                   coalesce(station_id, '{NONE}') AS station, count(*) AS n
            FROM breaches GROUP BY 1, 2, 3"""  # noqa: S608
    ):
        breaches.add_metric([r["stage"], r["urgency"], r["station"]], r["n"])

    open_orders = GaugeMetricFamily(
        "swd_open_orders", "Orders not completed, closed or cancelled", labels=["station", "status"]
    )
    overdue = GaugeMetricFamily(
        "swd_overdue_open_orders",
        "Open orders with a stage past its deadline and not done",
        labels=["station", "status"],
    )
    oldest = GaugeMetricFamily(
        "swd_oldest_open_order_age_seconds",
        "Age of the oldest open order since submission",
        labels=["station"],
    )
    stations = [
        r["station"]
        for r in await conn.fetch(
            f"SELECT DISTINCT coalesce(station_id, '{NONE}') AS station FROM orders"  # noqa: S608
        )
    ]
    open_counts = {
        (r["station"], r["status"]): (r["n"], r["overdue"])
        for r in await conn.fetch(
            f"""SELECT coalesce(station_id, '{NONE}') AS station, status, count(*) AS n,
                       count(*) FILTER (WHERE {OVERDUE}) AS overdue
                FROM orders WHERE ended_at IS NULL GROUP BY 1, 2"""  # noqa: S608
        )
    }
    ages = {
        r["station"]: r["age"]
        for r in await conn.fetch(
            f"""SELECT coalesce(station_id, '{NONE}') AS station,
                       extract(epoch FROM now() - min(submitted_at))::float8 AS age
                FROM orders WHERE ended_at IS NULL AND submitted_at IS NOT NULL
                GROUP BY 1"""  # noqa: S608
        )
    }
    for station in stations:
        for status in OPEN_STATUSES:
            n, late = open_counts.get((station, status), (0, 0))
            open_orders.add_metric([station, status], n)
            overdue.add_metric([station, status], late)
        oldest.add_metric([station], max(ages.get(station, 0.0), 0.0))
    return [events, durations, breaches, open_orders, overdue, oldest]


async def refresh_figures(runtime: Runtime[AuditSettings]) -> None:
    """Background job: recompute the figures the collector serves."""
    interval = runtime.settings.audit_metrics_refresh_interval_s
    while True:
        async with runtime.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            FIGURES.families = await compute(conn)
        await asyncio.sleep(interval)


async def watch_breaches(runtime: Runtime[AuditSettings]) -> None:
    """Background job: a deadline that passes on an open order counts as breached now, not
    when the order is finally done."""
    interval = runtime.settings.audit_breach_check_interval_s
    while True:
        async with runtime.pool.acquire() as conn:
            await record_open_breaches(conn)
        await asyncio.sleep(interval)
