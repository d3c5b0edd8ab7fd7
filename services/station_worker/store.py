"""All of the station's SQL: orders and their history, workers, staff, erasure."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from services.station_worker.domain import (
    ACTIVE_STATUSES,
    FollowUp,
    Order,
    QueueFilter,
    Role,
    StaffMember,
    Worker,
    kept_statuses,
)
from shared.credentials import CredentialTable
from shared.db import Connection, Pool
from shared.domain import Category, OrderStatus
from shared.events import OrderDispatched
from shared.sql import Params

# ------------------------------------------------------------------------------------- staff

STAFF = CredentialTable("staff")
STAFF_COLUMNS = "id, name, station_id, role, token_hash"


def staff_member(row: Mapping[str, Any]) -> StaffMember:
    return StaffMember(**row)


async def still_valid(pool: Pool, staff: StaffMember) -> bool:
    """Whether the token ``staff`` signed in with still works (not revoked, not expired, not
    re-issued, or re-issued with an overlap not yet over)."""
    return bool(
        await pool.fetchval(
            """SELECT true FROM staff WHERE id = $1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > now())
                   AND (token_hash = $2 OR (previous_hash = $2 AND previous_expires_at > now()))""",
            staff.id,
            staff.token_hash,
        )
    )


async def insert_staff(
    conn: Connection,
    staff_id: str,
    name: str,
    station_id: str,
    role: Role,
    token_hash: str,
    expires_at: datetime | None = None,
) -> bool:
    """False when the id is taken (nothing changes then)."""
    return bool(
        await conn.fetchval(
            """INSERT INTO staff (id, name, station_id, role, token_hash, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING true""",
            staff_id,
            name,
            station_id,
            role,
            token_hash,
            expires_at,
        )
    )


async def set_staff_token(
    conn: Connection,
    staff_id: str,
    token_hash: str,
    overlap: timedelta = timedelta(0),
    expires_at: datetime | None = None,
) -> dict[str, Any] | None:
    """The staff member's row; None when there is no active staff member ``staff_id``."""
    row = await conn.fetchrow(STAFF.rotation(), staff_id, token_hash, overlap, expires_at)
    return None if row is None else dict(row)


async def revoke_staff(conn: Connection, staff_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(STAFF.revocation(), staff_id)
    return None if row is None else dict(row)


async def is_social_worker(conn: Connection, station_id: str, staff_id: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT true FROM staff WHERE id = $1 AND station_id = $2
                   AND role = 'social_worker' AND revoked_at IS NULL""",
            staff_id,
            station_id,
        )
    )


# ----------------------------------------------------------------------------------- workers

_WORKER_COLUMNS = """w.id AS worker_id, s.name, w.skills, w.capacity, w.on_duty,
    (SELECT count(*) FROM station_orders o
     WHERE o.station_id = w.station_id AND o.worker_id = w.id
       AND o.status = ANY($2::text[])) AS active_orders"""


def _worker(row: asyncpg.Record) -> Worker:
    return Worker(**{**dict(row), "skills": tuple(Category(s) for s in row["skills"])})


async def list_workers(conn: Connection | Pool, station_id: str) -> list[Worker]:
    rows = await conn.fetch(
        f"SELECT {_WORKER_COLUMNS} FROM workers w JOIN staff s ON s.id = w.id"  # noqa: S608
        " WHERE w.station_id = $1 ORDER BY w.id",
        station_id,
        list(ACTIVE_STATUSES),
    )
    return [_worker(r) for r in rows]


async def worker(conn: Connection, worker_id: str) -> Worker | None:
    row = await conn.fetchrow(
        f"SELECT {_WORKER_COLUMNS} FROM workers w JOIN staff s ON s.id = w.id"  # noqa: S608
        " WHERE w.id = $1",
        worker_id,
        list(ACTIVE_STATUSES),
    )
    return None if row is None else _worker(row)


async def lock_worker(conn: Connection, station_id: str, worker_id: str) -> Worker | None:
    """The station's worker, locked: that serializes assignments to them. Their load is
    counted after the lock, in a statement of its own, so it sees the assignments committed
    while this one waited."""
    locked = await conn.fetchval(
        "SELECT true FROM workers WHERE id = $1 AND station_id = $2 FOR UPDATE",
        worker_id,
        station_id,
    )
    return await worker(conn, worker_id) if locked else None


async def upsert_worker(
    conn: Connection,
    worker_id: str,
    station_id: str,
    skills: Sequence[str],
    capacity: int,
    on_duty: bool,
) -> bool:
    """Create or update a worker profile; True when it was created."""
    return bool(
        await conn.fetchval(
            """INSERT INTO workers (id, station_id, skills, capacity, on_duty)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (id) DO UPDATE SET skills = $3, capacity = $4, on_duty = $5,
                   updated_at = now()
               RETURNING xmax = 0""",
            worker_id,
            station_id,
            sorted(skills),
            capacity,
            on_duty,
        )
    )


# -------------------------------------------------------------------------------- the queue

_QUEUE_COLUMNS = """order_id, station_id, status, dispatch_no, category, urgency, beneficiary_group,
    community_code, submitted_at, received_at, dispatch_by, accept_by, assign_by, complete_by,
    NULLIF(due_at, 'infinity') AS due_at, due_at < now() AS overdue, worker_id, version, redo,
    (SELECT jsonb_build_object('worker_id', f.worker_id, 'due_on', f.due_on,
         'worker_active', EXISTS (SELECT 1 FROM staff s WHERE s.id = f.worker_id
                                      AND s.station_id = f.station_id AND s.revoked_at IS NULL))
     FROM follow_ups f WHERE f.order_id = station_orders.order_id
         AND f.station_id = station_orders.station_id AND f.ended_at IS NULL) AS follow_up"""


async def queue(
    pool: Pool,
    station_id: str,
    filters: QueueFilter,
    limit: int,
    after: tuple[datetime | None, uuid.UUID] | None,
) -> list[asyncpg.Record]:
    """The station's orders, nearest deadline first, from after ``after`` (due_at, order_id;
    a due_at of None is the end of the open ones)."""
    p = Params(station_id, [str(s) for s in filters.shown_statuses])
    where = ["station_id = $1", "status = ANY($2::text[])"]
    if filters.urgencies:
        where.append(f"urgency = ANY({p([str(u) for u in filters.urgencies])}::text[])")
    if filters.overdue is not None:
        where.append("due_at < now()" if filters.overdue else "due_at >= now()")
    if filters.worker_id is not None:
        where.append(f"worker_id = {p(filters.worker_id)}")
    if after is not None:
        due, after_id = after
        if due is None:
            where.append(f"due_at = 'infinity' AND order_id > {p(after_id)}")
        else:
            where.append(f"(due_at, order_id) > ({p(due)}, {p(after_id)})")
    return await pool.fetch(
        f"SELECT {_QUEUE_COLUMNS} FROM station_orders WHERE {' AND '.join(where)}"  # noqa: S608
        f" ORDER BY due_at, order_id LIMIT {p(limit)}",
        *p.values,
    )


async def order_row(
    conn: Connection | Pool, station_id: str, order_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_QUEUE_COLUMNS}, case_details, case_erased_at FROM station_orders"  # noqa: S608
        " WHERE order_id = $1 AND station_id = $2",
        order_id,
        station_id,
    )


async def history(
    conn: Connection | Pool, station_id: str, order_id: uuid.UUID
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT status, at, actor, note FROM order_history
           WHERE order_id = $1 AND station_id = $2 ORDER BY id""",
        order_id,
        station_id,
    )


async def order_category(pool: Pool, station_id: str, order_id: uuid.UUID) -> Category | None:
    category = await pool.fetchval(
        "SELECT category FROM station_orders WHERE order_id = $1 AND station_id = $2",
        order_id,
        station_id,
    )
    return None if category is None else Category(category)


# --------------------------------------------------------------------------- changing orders


async def lock_order(conn: Connection, station_id: str, order_id: uuid.UUID) -> Order | None:
    """The station's order, locked until the transaction ends."""
    row = await conn.fetchrow(
        """SELECT order_id, station_id, status, version, dispatch_no, category, worker_id,
               correlation_id
           FROM station_orders WHERE order_id = $1 AND station_id = $2 FOR UPDATE""",
        order_id,
        station_id,
    )
    if row is None:
        return None
    return Order(
        **{**dict(row), "status": OrderStatus(row["status"]), "category": Category(row["category"])}
    )


async def move_order(
    conn: Connection, order_id: uuid.UUID, status: OrderStatus, worker_id: str | None, at: datetime
) -> None:
    """The order's new status (and worker, unless None); its version goes up by one."""
    await conn.execute(
        """UPDATE station_orders SET status = $2, worker_id = COALESCE($3, worker_id),
               version = version + 1, updated_at = $4
           WHERE order_id = $1""",
        order_id,
        status,
        worker_id,
        at,
    )


async def add_history(
    conn: Connection,
    order_id: uuid.UUID,
    station_id: str,
    status: OrderStatus | str,
    at: datetime,
    actor: str,
    note: str | None,
) -> None:
    """An entry of the order's history: a status it moved to, or a follow-up step."""
    await conn.execute(
        """INSERT INTO order_history (order_id, station_id, status, at, actor, note)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        order_id,
        station_id,
        status,
        at,
        actor,
        note,
    )


async def queue_dispatch(
    conn: Connection,
    order_id: uuid.UUID,
    p: OrderDispatched,
    status: OrderStatus,
    received_at: datetime,
    correlation_id: str | None,
) -> bool:
    """Queue the dispatched order, or replace an earlier dispatch of it (also at another
    station) unless it ended (a redo also replaces a completed one, with its fresh deadlines);
    False when nothing changed."""
    return bool(
        await conn.fetchval(
            """INSERT INTO station_orders (order_id, station_id, status, dispatch_no, category,
                   urgency, beneficiary_group, township_code, community_code, submitted_at,
                   dispatch_by, accept_by, assign_by, complete_by, case_details, received_at,
                   correlation_id, redo)
               VALUES ($1, $2, $17, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                       $16, $19)
               ON CONFLICT (order_id) DO UPDATE SET
                   station_id = EXCLUDED.station_id, status = EXCLUDED.status,
                   dispatch_no = EXCLUDED.dispatch_no, worker_id = NULL,
                   correlation_id = EXCLUDED.correlation_id,
                   version = station_orders.version + 1, received_at = EXCLUDED.received_at,
                   redo = COALESCE(EXCLUDED.redo, station_orders.redo),
                   dispatch_by = CASE WHEN EXCLUDED.redo IS NULL THEN station_orders.dispatch_by
                                      ELSE EXCLUDED.dispatch_by END,
                   accept_by = CASE WHEN EXCLUDED.redo IS NULL THEN station_orders.accept_by
                                    ELSE EXCLUDED.accept_by END,
                   assign_by = CASE WHEN EXCLUDED.redo IS NULL THEN station_orders.assign_by
                                    ELSE EXCLUDED.assign_by END,
                   complete_by = CASE WHEN EXCLUDED.redo IS NULL THEN station_orders.complete_by
                                      ELSE EXCLUDED.complete_by END,
                   updated_at = now()
               WHERE station_orders.dispatch_no < EXCLUDED.dispatch_no
                   AND station_orders.status <> ALL($18::text[])
               RETURNING true""",
            order_id,
            p.station_id,
            p.dispatch_no,
            p.category,
            p.urgency,
            p.beneficiary_group,
            p.location.township_code,
            p.location.community_code,
            p.submitted_at,
            p.deadlines.dispatch_by,
            p.deadlines.accept_by,
            p.deadlines.assign_by,
            p.deadlines.complete_by,
            p.case.model_dump(mode="json"),
            received_at,
            correlation_id,
            status,
            list(kept_statuses(p.redo is not None)),
            None if p.redo is None else p.redo.model_dump(mode="json"),
        )
    )


async def holds_dispatch(
    conn: Connection, order_id: uuid.UUID, station_id: str, dispatch_no: int
) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM station_orders"
            " WHERE order_id = $1 AND station_id = $2 AND dispatch_no = $3",
            order_id,
            station_id,
            dispatch_no,
        )
    )


async def end_order(
    conn: Connection, order_id: uuid.UUID, status: OrderStatus, after: Sequence[OrderStatus]
) -> str | None:
    """The order ends in ``status`` when it is in one of ``after``; its station, or None when
    it was not."""
    station_id: str | None = await conn.fetchval(
        """UPDATE station_orders SET status = $3, version = version + 1, ended_at = now(),
               updated_at = now()
           WHERE order_id = $1 AND status = ANY($2::text[])
           RETURNING station_id""",
        order_id,
        list(after),
        status,
    )
    return station_id


async def erase_expired(pool: Pool, retention: timedelta, batch: int) -> int:
    """Erase the case details of up to ``batch`` orders that ended more than ``retention``
    ago; return how many."""
    async with pool.acquire() as conn, conn.transaction():
        erased = await conn.fetch(
            """UPDATE station_orders SET case_details = NULL, case_erased_at = now()
               WHERE order_id IN (
                   SELECT o.order_id FROM station_orders o
                   WHERE o.case_details IS NOT NULL AND o.ended_at < now() - $1::interval
                       AND NOT EXISTS (SELECT 1 FROM follow_ups f
                                       WHERE f.order_id = o.order_id AND f.ended_at IS NULL)
                   LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING order_id""",
            retention,
            batch,
        )
        ids = [r["order_id"] for r in erased]
        if ids:
            await conn.execute(
                "UPDATE follow_ups SET plan = NULL WHERE order_id = ANY($1::uuid[])", ids
            )
            await conn.execute(
                "UPDATE follow_up_visits SET summary = NULL WHERE order_id = ANY($1::uuid[])", ids
            )
    return len(ids)


# -------------------------------------------------------------------------------- follow-ups

_FOLLOW_UP_COLUMNS = """order_id, station_id, worker_id, due_on, completed_on,
    ended_at IS NULL AS is_open, version"""


async def open_follow_up(
    conn: Connection,
    order_id: uuid.UUID,
    station_id: str,
    worker_id: str,
    due_on: date,
    plan: str | None,
    at: datetime,
) -> None:
    """The order's follow-up task, opened by its completion (replacing an ended one)."""
    await conn.execute(
        """INSERT INTO follow_ups (order_id, station_id, worker_id, due_on, completed_on, plan,
               opened_at)
           VALUES ($1, $2, $3, $4, ($6 AT TIME ZONE 'UTC')::date, $5, $6)
           ON CONFLICT (order_id) DO UPDATE SET station_id = $2, worker_id = $3, due_on = $4,
               completed_on = ($6 AT TIME ZONE 'UTC')::date, plan = $5, opened_at = $6,
               ended_at = NULL, end_reason = NULL, version = follow_ups.version + 1""",
        order_id,
        station_id,
        worker_id,
        due_on,
        plan,
        at,
    )


async def supersede_follow_up(conn: Connection, order_id: uuid.UUID, at: datetime) -> bool:
    """End the order's open follow-up task because a redo reopened the order; True if any."""
    status = await conn.execute(
        """UPDATE follow_ups SET ended_at = $2, end_reason = 'superseded',
               version = version + 1
           WHERE order_id = $1 AND ended_at IS NULL""",
        order_id,
        at,
    )
    return bool(status == "UPDATE 1")


async def lock_follow_up(conn: Connection, station_id: str, order_id: uuid.UUID) -> FollowUp | None:
    row = await conn.fetchrow(
        f"SELECT {_FOLLOW_UP_COLUMNS} FROM follow_ups"  # noqa: S608
        " WHERE order_id = $1 AND station_id = $2 FOR UPDATE",
        order_id,
        station_id,
    )
    return None if row is None else FollowUp(**dict(row))


async def add_visit(
    conn: Connection,
    task: FollowUp,
    visited_on: date,
    summary: str,
    next_by: date | None,
    actor: str,
    at: datetime,
) -> None:
    """Record a visit; the task is due next by ``next_by``, or ends (None)."""
    await conn.execute(
        """INSERT INTO follow_up_visits (order_id, station_id, worker_id, visited_on, summary,
               next_follow_up_by, actor, at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        task.order_id,
        task.station_id,
        task.worker_id,
        visited_on,
        summary,
        next_by,
        actor,
        at,
    )
    await conn.execute(
        """UPDATE follow_ups SET due_on = COALESCE($2, due_on),
               ended_at = CASE WHEN $2::date IS NULL THEN $3::timestamptz END,
               end_reason = CASE WHEN $2::date IS NULL THEN 'done' END,
               version = version + 1
           WHERE order_id = $1""",
        task.order_id,
        next_by,
        at,
    )


async def set_follow_up_worker(conn: Connection, order_id: uuid.UUID, worker_id: str) -> None:
    await conn.execute(
        "UPDATE follow_ups SET worker_id = $2, version = version + 1 WHERE order_id = $1",
        order_id,
        worker_id,
    )


_TODAY = "(now() AT TIME ZONE 'UTC')::date"


async def follow_ups(
    pool: Pool,
    station_id: str,
    worker_id: str | None,
    unattended: bool | None,
    overdue: bool | None,
    limit: int,
) -> list[asyncpg.Record]:
    """The station's open follow-up tasks, soonest due first."""
    p = Params(station_id)
    where = ["f.station_id = $1", "f.ended_at IS NULL"]
    if worker_id is not None:
        where.append(f"f.worker_id = {p(worker_id)}")
    if unattended is not None:
        where.append(("NOT " if unattended else "") + "COALESCE(s.active, false)")
    if overdue is not None:
        where.append(f"f.due_on {'<' if overdue else '>='} {_TODAY}")
    return await pool.fetch(
        f"""SELECT f.order_id, f.worker_id, f.due_on, f.opened_at, f.version,
                   COALESCE(s.active, false) AS worker_active, o.status, o.category, o.urgency,
                   o.community_code, o.dispatch_no,
                   (SELECT count(*) FROM follow_up_visits v
                    WHERE v.order_id = f.order_id AND v.at >= f.opened_at) AS visits
            FROM follow_ups f JOIN station_orders o ON o.order_id = f.order_id
            LEFT JOIN (SELECT id, revoked_at IS NULL AS active FROM staff) s
                ON s.id = f.worker_id
            WHERE {" AND ".join(where)}
            ORDER BY f.due_on, f.order_id LIMIT {p(limit)}""",  # noqa: S608
        *p.values,
    )


async def follow_up_row(
    conn: Connection | Pool, station_id: str, order_id: uuid.UUID
) -> asyncpg.Record | None:
    """The order's latest follow-up task at the station (open or ended)."""
    return await conn.fetchrow(
        """SELECT f.order_id, f.worker_id, f.due_on, f.completed_on, f.plan, f.opened_at,
                  f.ended_at, f.end_reason, f.version,
                  EXISTS (SELECT 1 FROM staff s WHERE s.id = f.worker_id
                              AND s.station_id = f.station_id AND s.revoked_at IS NULL)
                      AS worker_active
           FROM follow_ups f WHERE f.order_id = $1 AND f.station_id = $2""",
        order_id,
        station_id,
    )


async def visits(
    conn: Connection | Pool, station_id: str, order_id: uuid.UUID, since: datetime
) -> list[asyncpg.Record]:
    """The visits of the follow-up task opened at ``since``."""
    return await conn.fetch(
        """SELECT visited_on, summary, next_follow_up_by, worker_id, actor, at
           FROM follow_up_visits WHERE order_id = $1 AND station_id = $2 AND at >= $3
           ORDER BY id""",
        order_id,
        station_id,
        since,
    )


async def overdue_follow_ups(pool: Pool) -> dict[str, int]:
    """Open follow-up tasks past their due day, by station (0 for a station with staff and
    none)."""
    rows = await pool.fetch(
        f"""SELECT st.station_id, count(f.order_id) AS overdue
            FROM (SELECT station_id FROM staff UNION SELECT station_id FROM follow_ups) st
            LEFT JOIN follow_ups f ON f.station_id = st.station_id AND f.ended_at IS NULL
                AND f.due_on < {_TODAY}
            GROUP BY st.station_id"""  # noqa: S608
    )
    return {r["station_id"]: r["overdue"] for r in rows}
