from __future__ import annotations

import uuid

from services.station_worker.auth import StaffMember
from services.station_worker.models import HistoryEntry, StationOrder
from shared.db import Pool
from shared.events import CaseDetails, Deadlines


async def get_order(pool: Pool, staff: StaffMember, order_id: uuid.UUID) -> StationOrder | None:
    """The order as this station knows it; None for another station's order."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM station_orders WHERE order_id = $1 AND station_id = $2",
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
    return StationOrder(
        order_id=row["order_id"],
        station_id=row["station_id"],
        status=row["status"],
        dispatch_no=row["dispatch_no"],
        category=row["category"],
        urgency=row["urgency"],
        beneficiary_group=row["beneficiary_group"],
        community_code=row["community_code"],
        submitted_at=row["submitted_at"],
        received_at=row["received_at"],
        deadlines=Deadlines(
            dispatch_by=row["dispatch_by"],
            accept_by=row["accept_by"],
            assign_by=row["assign_by"],
            complete_by=row["complete_by"],
        ),
        case=CaseDetails.model_validate(row["case_details"]),
        worker_id=row["worker_id"],
        version=row["version"],
        history=[HistoryEntry(**dict(h)) for h in history],
    )
