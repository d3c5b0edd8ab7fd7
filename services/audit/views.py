"""Audit API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from services.audit.auth import CurrentReader
from shared.runtime import PoolDep

router = APIRouter(prefix="/v1", tags=["audit"])


class TrailEntry(BaseModel):
    seq: int
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    station_id: str | None
    event: dict[str, Any]
    prev_hash: str
    hash: str


@router.get("/orders/{order_id}/trail", response_model=list[TrailEntry], responses={404: {}})
async def get_trail(order_id: uuid.UUID, reader: CurrentReader, pool: PoolDep) -> list[TrailEntry]:
    rows = await pool.fetch(
        """SELECT seq, event_id, event_type, occurred_at, recorded_at, station_id, event,
                  prev_hash, hash
           FROM trail WHERE order_id = $1 ORDER BY occurred_at, seq""",
        order_id,
    )
    if not rows or not any(reader.sees_station(r["station_id"]) for r in rows):
        raise HTTPException(404, "no such order")
    return [TrailEntry(**dict(r)) for r in rows]
