"""The station's queue and what its staff do with an order.

Every read and write is scoped to the staff member's own station: another station's order,
worker or stream is "not found" (404), never "forbidden", so its existence does not leak.
An action locks the order's row, checks the role, the status and the expected version, then
changes the order, records its history and writes its event to the outbox in one transaction:
of two staff acting at once, exactly one wins and the other gets 409.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import HTTPException

from services.station_worker.auth import StaffMember
from services.station_worker.models import (
    ACTIVE_STATUSES,
    OPEN_STATUSES,
    AssignBody,
    CompleteBody,
    HistoryEntry,
    QueueItem,
    QueuePage,
    RejectBody,
    StationOrder,
    SuggestedWorker,
    Worker,
    WorkerBody,
)
from shared import outbox, topics
from shared.db import Connection, Pool
from shared.domain import Category, OrderStatus, Urgency
from shared.events import (
    Actor,
    CaseDetails,
    Deadlines,
    EventPayload,
    OrderAccepted,
    OrderAssigned,
    OrderCompleted,
    OrderRejected,
    OrderStarted,
    new_event,
)

NOT_FOUND = "no such order"


def not_found(what: str = NOT_FOUND) -> HTTPException:
    return HTTPException(404, what)


def invalid_field(loc: Sequence[str], msg: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field."""
    return HTTPException(422, [{"loc": list(loc), "msg": msg, "type": "value_error"}])


def require_station(staff: StaffMember, station_id: str, what: str) -> None:
    if staff.station_id != station_id:
        raise not_found(what)


def require_manager(staff: StaffMember, action: str) -> None:
    if staff.role != "station_manager":
        raise HTTPException(403, f"only a station manager may {action}")


# ---------------------------------------------------------------------------------- reading

_QUEUE_COLUMNS = """order_id, station_id, status, dispatch_no, category, urgency, beneficiary_group,
    community_code, submitted_at, received_at, dispatch_by, accept_by, assign_by, complete_by,
    NULLIF(due_at, 'infinity') AS due_at, due_at < now() AS overdue, worker_id, version"""


def _queue_item(row: asyncpg.Record) -> dict[str, Any]:
    return {
        **{k: row[k] for k in QueueItem.model_fields if k not in ("deadlines",)},
        "deadlines": Deadlines(
            dispatch_by=row["dispatch_by"],
            accept_by=row["accept_by"],
            assign_by=row["assign_by"],
            complete_by=row["complete_by"],
        ),
    }


@dataclass(frozen=True)
class QueueFilter:
    statuses: Sequence[OrderStatus]
    urgencies: Sequence[Urgency]
    overdue: bool | None
    worker_id: str | None


def encode_cursor(due_at: datetime | None, order_id: uuid.UUID) -> str:
    raw = json.dumps([due_at.isoformat() if due_at else None, str(order_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | None, uuid.UUID]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        due, order_id = raw
        due_at = datetime.fromisoformat(due) if due else None
        if due_at is not None and due_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return due_at, uuid.UUID(order_id)
    except (ValueError, TypeError, binascii.Error):
        raise invalid_field(["query", "cursor"], "not a cursor this API returned") from None


async def list_queue(
    pool: Pool, station_id: str, filters: QueueFilter, limit: int, cursor: str | None
) -> QueuePage:
    """The station's orders, nearest deadline first (keyset pagination on due_at, order_id)."""
    where = ["station_id = $1", "status = ANY($2::text[])"]
    args: list[Any] = [station_id, [str(s) for s in filters.statuses or OPEN_STATUSES]]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.urgencies:
        where.append(f"urgency = ANY({arg([str(u) for u in filters.urgencies])}::text[])")
    if filters.overdue is not None:
        where.append("due_at < now()" if filters.overdue else "due_at >= now()")
    if filters.worker_id is not None:
        where.append(f"worker_id = {arg(filters.worker_id)}")
    if cursor is not None:
        due, after_id = decode_cursor(cursor)
        if due is None:
            where.append(f"due_at = 'infinity' AND order_id > {arg(after_id)}")
        else:
            where.append(f"(due_at, order_id) > ({arg(due)}, {arg(after_id)})")
    rows = await pool.fetch(
        f"SELECT {_QUEUE_COLUMNS} FROM station_orders WHERE {' AND '.join(where)}"  # noqa: S608
        f" ORDER BY due_at, order_id LIMIT {arg(limit + 1)}",
        *args,
    )
    items = [QueueItem(**_queue_item(r)) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(last.due_at, last.order_id)
    return QueuePage(orders=items, next_cursor=next_cursor)


async def get_order(pool: Pool, staff: StaffMember, order_id: uuid.UUID) -> StationOrder | None:
    """The order as this station knows it; None for another station's order."""
    async with pool.acquire() as conn:
        return await _load_order(conn, staff, order_id)


def sees_case(staff: StaffMember, worker_id: str | None) -> bool:
    """Case details are for the station's managers and the order's assigned worker only."""
    return staff.role == "station_manager" or (worker_id is not None and staff.id == worker_id)


async def _load_order(
    conn: Connection, staff: StaffMember, order_id: uuid.UUID
) -> StationOrder | None:
    row = await conn.fetchrow(
        f"SELECT {_QUEUE_COLUMNS}, case_details, case_erased_at FROM station_orders"  # noqa: S608
        " WHERE order_id = $1 AND station_id = $2",
        order_id,
        staff.station_id,
    )
    if row is None:
        return None
    history = await conn.fetch(
        """SELECT status, at, actor, note FROM order_history
           WHERE order_id = $1 AND station_id = $2 ORDER BY id""",
        order_id,
        staff.station_id,
    )
    entitled = sees_case(staff, row["worker_id"])
    return StationOrder(
        **_queue_item(row),
        case=(
            CaseDetails.model_validate(row["case_details"])
            if entitled and row["case_details"] is not None
            else None
        ),
        case_withheld=not entitled,
        case_erased_at=row["case_erased_at"],
        history=[HistoryEntry(**dict(h)) for h in history],
    )


# ---------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Transition:
    action: str
    allowed_from: tuple[OrderStatus, ...]
    to: OrderStatus


ACCEPT = Transition("accept", (OrderStatus.DISPATCHED,), OrderStatus.ACCEPTED)
REJECT = Transition("reject", (OrderStatus.DISPATCHED,), OrderStatus.REJECTED)
ASSIGN = Transition("assign", (OrderStatus.ACCEPTED,), OrderStatus.ASSIGNED)
# A reassigned order waits for its new worker to start it.
REASSIGN = Transition("reassign", ACTIVE_STATUSES, OrderStatus.ASSIGNED)
START = Transition("start", (OrderStatus.ASSIGNED,), OrderStatus.IN_SERVICE)
COMPLETE = Transition("complete", (OrderStatus.IN_SERVICE,), OrderStatus.COMPLETED)


@dataclass(frozen=True)
class Locked:
    """The order's row as the action found it, locked until the transaction ends."""

    status: OrderStatus
    version: int
    dispatch_no: int
    worker_id: str | None
    correlation_id: str | None


Authorize = Callable[[StaffMember, Locked], None]
MakeEvent = Callable[[Locked], EventPayload]


async def act(
    pool: Pool,
    staff: StaffMember,
    order_id: uuid.UUID,
    expected_version: int | None,
    transition: Transition,
    *,
    authorize: Authorize,
    event: MakeEvent,
    worker_id: str | None = None,
    note: str | None = None,
) -> StationOrder:
    """Apply ``transition`` to the order for ``staff``, or raise the HTTP error that says why.

    ``worker_id`` (assign, reassign) is checked against the station's workers; it stays as it
    was when None.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT status, version, dispatch_no, worker_id, correlation_id
               FROM station_orders WHERE order_id = $1 AND station_id = $2 FOR UPDATE""",
            order_id,
            staff.station_id,
        )
        if row is None:
            raise not_found()
        order = Locked(**dict(row))
        authorize(staff, order)
        if order.status not in transition.allowed_from:
            raise _conflict(f"cannot {transition.action} an order that is {order.status}", order)
        if expected_version is not None and expected_version != order.version:
            raise _conflict(
                f"the order changed (version {order.version}, not {expected_version})", order
            )
        if worker_id is not None:
            await _check_assignable(conn, staff.station_id, worker_id, order)
        now = datetime.now(UTC)
        await conn.execute(
            """UPDATE station_orders SET status = $2, worker_id = COALESCE($3, worker_id),
                   version = version + 1, updated_at = $4
               WHERE order_id = $1""",
            order_id,
            transition.to,
            worker_id,
            now,
        )
        await conn.execute(
            """INSERT INTO order_history (order_id, station_id, status, at, actor, note)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            order_id,
            staff.station_id,
            transition.to,
            now,
            staff.id,
            note,
        )
        await outbox.add(
            conn,
            topics.STATION_EVENTS,
            new_event(
                event(order),
                order_id=order_id,
                actor=Actor(kind="station_staff", id=staff.id),
                correlation_id=order.correlation_id,
                occurred_at=now,
            ),
        )
        changed = await _load_order(conn, staff, order_id)
    assert changed is not None
    return changed


def _conflict(message: str, order: Locked) -> HTTPException:
    return HTTPException(
        409,
        {"message": message, "status": order.status, "version": order.version},
        headers={"ETag": etag(order.version)},
    )


def etag(version: int) -> str:
    return f'"{version}"'


async def _check_assignable(
    conn: Connection, station_id: str, worker_id: str, order: Locked
) -> None:
    if worker_id == order.worker_id:
        raise invalid_field(["body", "worker_id"], "the order is already assigned to this worker")
    # Locking the worker serializes assignments to them; the count runs after the lock, in a
    # statement of its own, so it sees the assignments committed while this one waited.
    worker = await conn.fetchrow(
        "SELECT on_duty, capacity FROM workers WHERE id = $1 AND station_id = $2 FOR UPDATE",
        worker_id,
        station_id,
    )
    if worker is None:
        raise invalid_field(["body", "worker_id"], "no such social worker at this station")
    if not worker["on_duty"]:
        raise invalid_field(["body", "worker_id"], "the social worker is not on duty")
    active = await conn.fetchval(
        """SELECT count(*) FROM station_orders
           WHERE station_id = $1 AND worker_id = $2 AND status = ANY($3::text[])""",
        station_id,
        worker_id,
        list(ACTIVE_STATUSES),
    )
    if active >= worker["capacity"]:
        raise invalid_field(
            ["body", "worker_id"],
            f"the social worker already carries {active} of {worker['capacity']} orders",
        )


# The rules for who may do what, beyond belonging to the order's station.


def any_staff(staff: StaffMember, order: Locked) -> None:
    """Accept and reject: the station manager or the duty social worker (docs/domain.md)."""


def manager_only(action: str) -> Authorize:
    def check(staff: StaffMember, order: Locked) -> None:
        require_manager(staff, action)

    return check


def assigned_worker_or_manager(action: str) -> Authorize:
    def check(staff: StaffMember, order: Locked) -> None:
        if staff.role != "station_manager" and staff.id != order.worker_id:
            raise HTTPException(403, f"only the assigned social worker or a manager may {action}")

    return check


async def accept(
    pool: Pool, staff: StaffMember, order_id: uuid.UUID, v: int | None
) -> StationOrder:
    return await act(
        pool,
        staff,
        order_id,
        v,
        ACCEPT,
        authorize=any_staff,
        event=lambda _: OrderAccepted(station_id=staff.station_id),
    )


async def reject(
    pool: Pool, staff: StaffMember, order_id: uuid.UUID, v: int | None, body: RejectBody
) -> StationOrder:
    return await act(
        pool,
        staff,
        order_id,
        v,
        REJECT,
        authorize=any_staff,
        event=lambda o: OrderRejected(
            station_id=staff.station_id,
            dispatch_no=o.dispatch_no,
            reason_code=body.reason_code,
            note=body.note,
        ),
        note=body.reason_code,
    )


async def assign(
    pool: Pool,
    staff: StaffMember,
    order_id: uuid.UUID,
    v: int | None,
    body: AssignBody,
    transition: Transition = ASSIGN,
) -> StationOrder:
    return await act(
        pool,
        staff,
        order_id,
        v,
        transition,
        authorize=manager_only(transition.action),
        event=lambda o: OrderAssigned(station_id=staff.station_id, worker_id=body.worker_id),
        worker_id=body.worker_id,
        note=body.worker_id,
    )


async def start(pool: Pool, staff: StaffMember, order_id: uuid.UUID, v: int | None) -> StationOrder:
    return await act(
        pool,
        staff,
        order_id,
        v,
        START,
        authorize=assigned_worker_or_manager("start the service"),
        event=lambda o: OrderStarted(station_id=staff.station_id, worker_id=o.worker_id or ""),
    )


async def complete(
    pool: Pool, staff: StaffMember, order_id: uuid.UUID, v: int | None, body: CompleteBody
) -> StationOrder:
    return await act(
        pool,
        staff,
        order_id,
        v,
        COMPLETE,
        authorize=assigned_worker_or_manager("complete the service"),
        event=lambda o: OrderCompleted(
            station_id=staff.station_id,
            worker_id=o.worker_id or "",
            outcome=body.outcome,
            service_minutes=body.service_minutes,
            follow_up_needed=body.follow_up_needed,
            summary=body.summary,
        ),
        note=body.outcome,
    )


# ---------------------------------------------------------------------------------- workers

_WORKER_COLUMNS = """w.id AS worker_id, s.name, w.skills, w.capacity, w.on_duty,
    (SELECT count(*) FROM station_orders o
     WHERE o.station_id = w.station_id AND o.worker_id = w.id
       AND o.status = ANY($2::text[])) AS active_orders"""


async def list_workers(pool: Pool, station_id: str) -> list[Worker]:
    rows = await pool.fetch(
        f"SELECT {_WORKER_COLUMNS} FROM workers w JOIN staff s ON s.id = w.id"  # noqa: S608
        " WHERE w.station_id = $1 ORDER BY w.id",
        station_id,
        list(ACTIVE_STATUSES),
    )
    return [Worker(**dict(r)) for r in rows]


async def upsert_worker(pool: Pool, station_id: str, body: WorkerBody) -> tuple[Worker, bool]:
    """Create or update the worker profile of a social worker on this station's staff."""
    async with pool.acquire() as conn, conn.transaction():
        is_staff = await conn.fetchval(
            """SELECT true FROM staff WHERE id = $1 AND station_id = $2
                   AND role = 'social_worker' AND revoked_at IS NULL""",
            body.worker_id,
            station_id,
        )
        if not is_staff:
            raise invalid_field(
                ["body", "worker_id"], "not a social worker on this station's staff"
            )
        created = await conn.fetchval(
            """INSERT INTO workers (id, station_id, skills, capacity, on_duty)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (id) DO UPDATE SET skills = $3, capacity = $4, on_duty = $5,
                   updated_at = now()
               RETURNING xmax = 0""",
            body.worker_id,
            station_id,
            [str(s) for s in body.skills],
            body.capacity,
            body.on_duty,
        )
        row = await conn.fetchrow(
            f"SELECT {_WORKER_COLUMNS} FROM workers w JOIN staff s ON s.id = w.id"  # noqa: S608
            " WHERE w.id = $1",
            body.worker_id,
            list(ACTIVE_STATUSES),
        )
    assert row is not None
    return Worker(**dict(row)), bool(created)


async def suggest_workers(
    pool: Pool, staff: StaffMember, order_id: uuid.UUID
) -> list[SuggestedWorker]:
    """On-duty workers with room for one more order: skill match first, then the lightest load."""
    category = await pool.fetchval(
        "SELECT category FROM station_orders WHERE order_id = $1 AND station_id = $2",
        order_id,
        staff.station_id,
    )
    if category is None:
        raise not_found()
    workers = [w for w in await list_workers(pool, staff.station_id) if w.on_duty]
    ranked = sorted(
        (w for w in workers if w.active_orders < w.capacity),
        key=lambda w: (Category(category) not in w.skills, w.active_orders, w.worker_id),
    )
    return [
        SuggestedWorker(
            worker_id=w.worker_id,
            name=w.name,
            skill_match=Category(category) in w.skills,
            active_orders=w.active_orders,
            capacity=w.capacity,
        )
        for w in ranked
    ]
