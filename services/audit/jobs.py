"""The audit's background jobs: the breach watch, the Prometheus figures, the checkpoints.

The figures are computed from the trail and the projection tables, not counted in this
process: they stay right across restarts and replicas, and an event that arrives twice or
late counts once, under the labels it finally belongs to. A job recomputes them every
``audit_metrics_refresh_interval_s``; the collector serves the latest result on every scrape.

A checkpoint of the whole trail (domain.Checkpoint) is appended every
``SWD_AUDIT_CHECKPOINT_INTERVAL_S`` to ``SWD_AUDIT_CHECKPOINT_FILE``, which the database's
writers cannot reach. Its ``max_seq`` is a horizon taken while no append is in progress
(appends hold store.hold_off_checkpoints), so no entry at or below it can commit afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from services.audit import store
from services.audit.domain import ENDED, GENESIS, Checkpoint, Row, fold
from services.audit.reports import take_snapshots
from services.audit.settings import AuditSettings
from shared.db import Connection, Pool
from shared.domain import OrderStatus, Stage
from shared.runtime import Runtime

log = logging.getLogger(__name__)

OPEN_STATUSES = [s.value for s in OrderStatus if s not in ENDED]
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


class AuditFigures(Collector):
    def __init__(self) -> None:
        self.families: Sequence[Metric] = ()

    def collect(self) -> Iterator[Metric]:
        yield from self.families


FIGURES = AuditFigures()
REGISTRY.register(FIGURES)


# Counters of what the store counts: name, help, labels, the rows with the labels and ``n``.
COUNTERS: tuple[tuple[str, str, list[str], Callable[[Connection], Awaitable[list[Row]]]], ...] = (
    (
        "swd_lifecycle_events",
        "Lifecycle events in the audit trail, by type, order urgency and the event's station",
        ["event_type", "urgency", "station"],
        store.event_counts,
    ),
    (
        "swd_sla_breaches",
        "Stage deadlines breached (counted when first seen), by stage, urgency and station; "
        "a redo's accept and complete count too, and a follow-up not made by its due day "
        "(stage follow_up)",
        ["stage", "urgency", "station"],
        store.breach_counts,
    ),
)


def _counted(name: str, documentation: str, labels: list[str], rows: list[Row]) -> Metric:
    """A counter of rows that carry its labels and their count ``n``."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for r in rows:
        family.add_metric([r[label] for label in labels], r["n"])
    return family


def satisfaction_families(rows: Sequence[Row], target: float) -> list[Metric]:
    """swd_satisfaction_rate{station} (stations with an answer in the window only: no answer
    is no rate), swd_return_visits_answered{station} and swd_satisfaction_target."""
    rate = GaugeMetricFamily(
        "swd_satisfaction_rate",
        "Satisfied or very satisfied / answered, at the latest return visit of the orders "
        "answered in SWD_AUDIT_SATISFACTION_WINDOW_DAYS, by station",
        labels=["station"],
    )
    answered = GaugeMetricFamily(
        "swd_return_visits_answered",
        "Orders whose latest answered return visit is in the satisfaction window, by station",
        labels=["station"],
    )
    for r in rows:
        rate.add_metric([r["station"]], r["satisfied"] / r["answered"])
        answered.add_metric([r["station"]], r["answered"])
    goal = GaugeMetricFamily(
        "swd_satisfaction_target",
        "The satisfaction rate a station should reach (SWD_AUDIT_EVALUATION_TARGETS)",
        value=target,
    )
    return [rate, answered, goal]


async def compute(conn: Connection, settings: AuditSettings) -> list[Metric]:
    events, breaches = [
        _counted(name, documentation, labels, await rows(conn))
        for name, documentation, labels, rows in COUNTERS
    ]
    durations = HistogramMetricFamily(
        "swd_stage_duration_seconds",
        "Time from submission until each stage was done, by stage and urgency",
        labels=["stage", "urgency"],
    )
    for stage in Stage:
        rows = await store.stage_durations(conn, stage, DURATION_BUCKETS)
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
    counts_by = await store.open_counts(conn)
    ages = await store.oldest_open_ages(conn)
    for station in await store.stations(conn):
        for status in OPEN_STATUSES:
            n, late = counts_by.get((station, status), (0, 0))
            open_orders.add_metric([station, status], n)
            overdue.add_metric([station, status], late)
        oldest.add_metric([station], max(ages.get(station, 0.0), 0.0))
    satisfaction = satisfaction_families(
        await store.satisfaction_by_station(conn, settings.audit_satisfaction_window_days * 86400),
        settings.audit_evaluation_targets["satisfaction_rate"],
    )
    return [events, durations, breaches, open_orders, overdue, oldest, *satisfaction]


async def refresh_figures(runtime: Runtime[AuditSettings]) -> None:
    """Background job: recompute the figures the collector serves."""
    interval = runtime.settings.audit_metrics_refresh_interval_s
    while True:
        async with runtime.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            FIGURES.families = await compute(conn, runtime.settings)
        await asyncio.sleep(interval)


async def watch_breaches(runtime: Runtime[AuditSettings]) -> None:
    """Background job: a deadline that passes on an open order counts as breached now, not
    when the order is finally done."""
    interval = runtime.settings.audit_breach_check_interval_s
    while True:
        async with runtime.pool.acquire() as conn:
            await store.record_open_breaches(conn)
        await asyncio.sleep(interval)


async def write_checkpoint(pool: Pool, key: bytes, path: Path) -> Checkpoint | None:
    """Extend the last checkpoint in ``path`` to the trail's horizon now and append it; None
    (and nothing written) when the trail has fewer entries than that checkpoint covered."""
    last = await asyncio.to_thread(store.last_checkpoint, path, key)
    async with pool.acquire() as conn:
        horizon = await store.checkpoint_horizon(conn)
        start = last or Checkpoint(at=datetime.now(UTC), max_seq=0, entries=0, digest=GENESIS)
        if horizon < start.max_seq:
            log.error("the trail ends below the last checkpoint: run swdispatch audit verify")
            return None
        digest, entries = start.digest, start.entries
        async with conn.transaction(isolation="repeatable_read"):
            async for row in store.hashes(conn, start.max_seq, horizon):
                digest = fold(digest, row["seq"], row["hash"])
                entries += 1
    checkpoint = Checkpoint(
        at=datetime.now(UTC), max_seq=horizon, entries=entries, digest=digest
    ).signed(key)
    await asyncio.to_thread(store.append_checkpoint, path, checkpoint)
    return checkpoint


async def keep_checkpointing(runtime: Runtime[AuditSettings]) -> None:
    """Background job: a checkpoint every ``SWD_AUDIT_CHECKPOINT_INTERVAL_S``."""
    settings = runtime.settings
    while True:
        await write_checkpoint(runtime.pool, settings.hmac_key, settings.audit_checkpoint_file)
        await asyncio.sleep(settings.audit_checkpoint_interval_s)


async def keep_snapshots(runtime: Runtime[AuditSettings]) -> None:
    """Background job: keep each closed month's evaluation (reports.take_snapshots)."""
    while True:
        for month in await take_snapshots(runtime.pool, runtime.settings, datetime.now(UTC)):
            log.info("kept the evaluation of %s as a snapshot", month.strftime("%Y-%m"))
        await asyncio.sleep(runtime.settings.audit_snapshot_interval_s)


ALL = [watch_breaches, refresh_figures, keep_checkpointing, keep_snapshots]
