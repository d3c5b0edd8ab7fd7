"""Follow-up tasks (跟进回访): a completion with ``follow_up_by`` owes the resident a visit by
that day, by the worker who completed it (a manager reassigns the task when that worker is
gone). Each visit is recorded with its summary and the next due day, or none to end the task,
and goes to the center and the audit as ``order.followed_up``, in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.station_worker import store
from services.station_worker.api.schemas import (
    FollowUpItem,
    FollowUpsPage,
    FollowUpTask,
    FollowUpWorkerBody,
    Visit,
    VisitBody,
)
from services.station_worker.domain import (
    NO_SUCH_ORDER,
    Order,
    StaffMember,
    authorize_follow_up,
    check_follow_up_worker,
    check_visit,
    follow_up_overdue,
    require_manager,
    require_open_follow_up,
    require_order,
    today,
)
from shared import outbox, topics
from shared.db import Connection, Pool
from shared.errors import Forbidden, NotFound
from shared.events import Actor, OrderFollowedUp, new_event

FOLLOWED_UP = "followed_up"
FOLLOW_UP_REASSIGNED = "follow_up_reassigned"
"""Their entries in the order's history (status column): the follow-up is not a status."""


async def list_follow_ups(
    pool: Pool,
    staff: StaffMember,
    worker_id: str | None,
    unattended: bool | None,
    overdue: bool | None,
    limit: int,
) -> FollowUpsPage:
    """The station's open follow-up tasks, soonest due first: a manager's all (or one
    worker's, or those whose worker is gone), a social worker's their own."""
    if not staff.is_manager:
        if worker_id not in (None, staff.id):
            raise Forbidden("a social worker sees their own follow-ups only")
        worker_id = staff.id
    now_day = today(datetime.now(UTC))
    rows = await store.follow_ups(pool, staff.station_id, worker_id, unattended, overdue, limit)
    return FollowUpsPage(
        follow_ups=[
            FollowUpItem(
                **dict(r),
                needs_manager=not r["worker_active"],
                overdue=follow_up_overdue(r["due_on"], now_day),
            )
            for r in rows
        ]
    )


async def task_view(
    conn: Connection | Pool, staff: StaffMember, order_id: uuid.UUID, entitled: bool
) -> FollowUpTask | None:
    """The order's latest follow-up task at the staff member's station, its plan and visit
    summaries only when ``entitled`` (to the case details)."""
    row = await store.follow_up_row(conn, staff.station_id, order_id)
    if row is None:
        return None
    visits = await store.visits(conn, staff.station_id, order_id, row["opened_at"])
    return FollowUpTask(
        **{k: v for k, v in dict(row).items() if k != "plan"},
        plan=row["plan"] if entitled else None,
        overdue=row["ended_at"] is None
        and follow_up_overdue(row["due_on"], today(datetime.now(UTC))),
        visits=[
            Visit(**{**dict(v), "summary": v["summary"] if entitled else None}) for v in visits
        ],
    )


async def _locked(conn: Connection, staff: StaffMember, order_id: uuid.UUID) -> Order:
    return require_order(staff, await store.lock_order(conn, staff.station_id, order_id))


async def record_visit(
    pool: Pool, staff: StaffMember, order_id: uuid.UUID, body: VisitBody
) -> FollowUpTask:
    """Record a visit of the order's open follow-up task (its worker or a manager), and set the
    next due day or end the task; ``order.followed_up`` goes out in the same transaction."""
    async with pool.acquire() as conn, conn.transaction():
        order = await _locked(conn, staff, order_id)
        task = require_open_follow_up(
            await store.lock_follow_up(conn, staff.station_id, order_id), order
        )
        authorize_follow_up(staff, task)
        now = datetime.now(UTC)
        check_visit(task, body.visited_on, body.next_follow_up_by, today(now))
        actor = Actor(kind="station_staff", id=staff.id)
        await store.add_visit(
            conn, task, body.visited_on, body.summary, body.next_follow_up_by, actor.text, now
        )
        note = (
            "last follow-up"
            if body.next_follow_up_by is None
            else f"next by {body.next_follow_up_by.isoformat()}"
        )
        await store.add_history(
            conn, order_id, staff.station_id, FOLLOWED_UP, now, actor.text, note
        )
        await outbox.add(
            conn,
            topics.STATION_EVENTS,
            new_event(
                OrderFollowedUp(
                    station_id=staff.station_id,
                    worker_id=task.worker_id,
                    visited_on=body.visited_on,
                    summary=body.summary,
                    next_follow_up_by=body.next_follow_up_by,
                ),
                order_id=order_id,
                actor=actor,
                correlation_id=order.correlation_id,
                occurred_at=now,
            ),
        )
        view = await task_view(conn, staff, order_id, entitled=True)
    if view is None:  # pragma: no cover - the task was locked above
        raise NotFound(NO_SUCH_ORDER)
    return view


async def reassign(
    pool: Pool, staff: StaffMember, order_id: uuid.UUID, body: FollowUpWorkerBody
) -> FollowUpTask:
    """A manager gives the order's open follow-up task to another active social worker of the
    station (the one who had it left, or cannot make the visit)."""
    async with pool.acquire() as conn, conn.transaction():
        order = await _locked(conn, staff, order_id)
        require_manager(staff, "reassign a follow-up")
        task = require_open_follow_up(
            await store.lock_follow_up(conn, staff.station_id, order_id), order
        )
        active = await store.is_social_worker(conn, staff.station_id, body.worker_id)
        check_follow_up_worker(task, body.worker_id, active)
        now = datetime.now(UTC)
        await store.set_follow_up_worker(conn, order_id, body.worker_id)
        actor = Actor(kind="station_staff", id=staff.id)
        await store.add_history(
            conn, order_id, staff.station_id, FOLLOW_UP_REASSIGNED, now, actor.text, body.worker_id
        )
        view = await task_view(conn, staff, order_id, entitled=True)
    if view is None:  # pragma: no cover - the task was locked above
        raise NotFound(NO_SUCH_ORDER)
    return view
