"""The station's social workers: their profiles, and whom to suggest for an order."""

from __future__ import annotations

import uuid

from services.station_worker import store
from services.station_worker.api.schemas import SuggestedWorker, Worker, WorkerBody
from services.station_worker.domain import (
    NO_SUCH_ORDER,
    WORKER_FIELD,
    StaffMember,
    rank_workers,
)
from shared.db import Pool
from shared.errors import InvalidField, NotFound


async def list_workers(pool: Pool, station_id: str) -> list[Worker]:
    return [Worker.model_validate(w) for w in await store.list_workers(pool, station_id)]


async def upsert_worker(pool: Pool, station_id: str, body: WorkerBody) -> tuple[Worker, bool]:
    """Create or update the worker profile of a social worker on this station's staff; True
    when it was created."""
    async with pool.acquire() as conn, conn.transaction():
        if not await store.is_social_worker(conn, station_id, body.worker_id):
            raise InvalidField(WORKER_FIELD, "not a social worker on this station's staff")
        skills = [str(s) for s in body.skills]
        created = await store.upsert_worker(
            conn, body.worker_id, station_id, skills, body.capacity, body.on_duty
        )
        worker = await store.worker(conn, body.worker_id)
    assert worker is not None
    return Worker.model_validate(worker), created


async def suggest_workers(
    pool: Pool, staff: StaffMember, order_id: uuid.UUID
) -> list[SuggestedWorker]:
    """On-duty workers with room for one more order: skill match first, then the lightest load."""
    category = await store.order_category(pool, staff.station_id, order_id)
    if category is None:
        raise NotFound(NO_SUCH_ORDER)
    return [
        SuggestedWorker(
            worker_id=w.worker_id,
            name=w.name,
            skill_match=category in w.skills,
            active_orders=w.active_orders,
            capacity=w.capacity,
        )
        for w in rank_workers(await store.list_workers(pool, staff.station_id), category)
    ]
