"""The projection tables: recompute an order from its trail, record breaches, rebuild all."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from services.audit.projection import Dispatch, Timeline, project
from shared.db import Connection, Pool
from shared.domain import OrderStatus, Stage
from shared.locks import LockNamespace


async def refresh_orders(conn: Connection, order_ids: Collection[uuid.UUID]) -> None:
    """Recompute the orders' projections from their whole trails and record any breach they
    show, a few statements for all of them.

    Call with the orders' trail locks held (the consumer holds them while appending)."""
    trails: dict[uuid.UUID, list[dict[str, Any]]] = {order_id: [] for order_id in order_ids}
    for row in await conn.fetch(
        "SELECT order_id, event FROM trail WHERE order_id = ANY($1::uuid[]) ORDER BY seq",
        list(trails),
    ):
        trails[row["order_id"]].append(row["event"])
    timelines = {order_id: project(str(order_id), events) for order_id, events in trails.items()}
    await _save(conn, timelines)
    now = datetime.now(UTC)
    await conn.executemany(
        """INSERT INTO breaches (order_id, stage, station_id, urgency, deadline)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        [
            (order_id, stage.value, t.station_id, t.urgency, t.deadlines[stage])
            for order_id, t in timelines.items()
            for stage in Stage
            if t.stage_outcome(stage, now) == "breached"
        ],
    )


async def record_open_breaches(conn: Connection) -> int:
    """Record the breach of every stage whose deadline has passed on an open order while the
    stage is still not done; return how many are new."""
    status = await conn.execute(
        """INSERT INTO breaches (order_id, stage, station_id, urgency, deadline)
           SELECT o.order_id, s.stage, o.station_id, o.urgency, s.deadline
           FROM orders o CROSS JOIN LATERAL (VALUES
                ('dispatch', o.dispatch_by, o.dispatched_at),
                ('accept', o.accept_by, o.accepted_at),
                ('assign', o.assign_by, o.assigned_at),
                ('complete', o.complete_by, o.completed_at)) AS s(stage, deadline, done_at)
           WHERE o.ended_at IS NULL AND s.done_at IS NULL AND s.deadline < now()
           ON CONFLICT DO NOTHING"""
    )
    return int(status.split()[-1])


async def _save(conn: Connection, timelines: dict[uuid.UUID, Timeline]) -> None:
    await conn.execute("DELETE FROM orders WHERE order_id = ANY($1::uuid[])", list(timelines))
    await conn.executemany(
        """INSERT INTO orders (order_id, status, station_id, worker_id, category, urgency,
               submitted_at, dispatched_at, received_at, accepted_at, assigned_at, started_at,
               completed_at, ended_at, dispatch_by, accept_by, assign_by, complete_by,
               dispatches, rejections, escalations, events)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
               $18, $19, $20, $21, $22)""",
        [
            (
                order_id,
                t.status,
                t.station_id,
                t.worker_id,
                t.category,
                t.urgency,
                t.submitted_at,
                t.dispatched_at,
                t.received_at,
                t.accepted_at,
                t.assigned_at,
                t.started_at,
                t.completed_at,
                t.ended_at,
                t.deadlines.get(Stage.DISPATCH),
                t.deadlines.get(Stage.ACCEPT),
                t.deadlines.get(Stage.ASSIGN),
                t.deadlines.get(Stage.COMPLETE),
                len(t.dispatches),
                t.rejections,
                t.escalations,
                t.events,
            )
            for order_id, t in timelines.items()
        ],
    )
    await conn.executemany(
        """INSERT INTO dispatches (order_id, dispatch_no, station_id, dispatched_at, reason,
               received_at, rejected_at, reject_reason_code)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        [
            (
                order_id,
                x.dispatch_no,
                x.station_id,
                x.dispatched_at,
                x.reason,
                x.received_at,
                x.rejected_at,
                x.reject_reason_code,
            )
            for order_id, t in timelines.items()
            for x in t.dispatches
        ],
    )


async def rebuild(pool: Pool) -> int:
    """Recompute every order's projection from the trail, one order per transaction so the
    consumer can go on; return how many orders.

    Breaches already recorded stay (they are the record of when each was first seen);
    breaches the log shows but that were never recorded are added."""
    order_ids = [r["order_id"] for r in await pool.fetch("SELECT DISTINCT order_id FROM trail")]
    for order_id in order_ids:
        async with pool.acquire() as conn, conn.transaction():
            await lock_orders(conn, [order_id])
            await refresh_orders(conn, [order_id])
    return len(order_ids)


async def lock_orders(conn: Connection, order_ids: list[uuid.UUID]) -> None:
    """One writer per order at a time, until the transaction ends. Sorted ids keep two writers
    that lock overlapping sets from deadlocking."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock($2, hashtext(id::text))
           FROM (SELECT unnest($1::uuid[]) AS id ORDER BY 1) AS ids""",
        order_ids,
        LockNamespace.AUDIT_ORDER,
    )


async def load_timelines(
    conn: Connection,
    *,
    order_id: uuid.UUID | None = None,
    submitted_from: datetime | None = None,
    submitted_to: datetime | None = None,
    station_id: str | None = None,
) -> list[Timeline]:
    """Projected orders: one, or those submitted in ``[submitted_from, submitted_to)``; with
    ``station_id``, only the orders that station holds or was ever sent."""
    rows = await conn.fetch(
        """SELECT * FROM orders o
           WHERE ($1::uuid IS NULL OR o.order_id = $1)
             AND ($2::timestamptz IS NULL OR o.submitted_at >= $2)
             AND ($3::timestamptz IS NULL OR o.submitted_at < $3)
             AND ($4::text IS NULL OR o.station_id = $4 OR EXISTS (
                 SELECT 1 FROM dispatches d WHERE d.order_id = o.order_id AND d.station_id = $4))
           ORDER BY o.submitted_at, o.order_id""",
        order_id,
        submitted_from,
        submitted_to,
        station_id,
    )
    sent: dict[uuid.UUID, list[Dispatch]] = {}
    for d in await conn.fetch(
        "SELECT * FROM dispatches WHERE order_id = ANY($1::uuid[]) ORDER BY dispatch_no",
        [r["order_id"] for r in rows],
    ):
        sent.setdefault(d["order_id"], []).append(
            Dispatch(
                dispatch_no=d["dispatch_no"],
                station_id=d["station_id"],
                dispatched_at=d["dispatched_at"],
                reason=d["reason"],
                received_at=d["received_at"],
                rejected_at=d["rejected_at"],
                reject_reason_code=d["reject_reason_code"],
            )
        )
    return [
        Timeline(
            order_id=str(r["order_id"]),
            status=OrderStatus(r["status"]) if r["status"] else None,
            station_id=r["station_id"],
            worker_id=r["worker_id"],
            category=r["category"],
            urgency=r["urgency"],
            submitted_at=r["submitted_at"],
            dispatched_at=r["dispatched_at"],
            received_at=r["received_at"],
            accepted_at=r["accepted_at"],
            assigned_at=r["assigned_at"],
            started_at=r["started_at"],
            completed_at=r["completed_at"],
            ended_at=r["ended_at"],
            deadlines={stage: r[f"{stage.value}_by"] for stage in Stage if r[f"{stage.value}_by"]},
            dispatches=tuple(sent.get(r["order_id"], ())),
            rejections=r["rejections"],
            escalations=r["escalations"],
            events=r["events"],
        )
        for r in rows
    ]
