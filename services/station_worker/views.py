"""Station dashboard API."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException

from services.station_worker import service
from services.station_worker.auth import CurrentStaff
from services.station_worker.models import StationOrder
from shared.runtime import PoolDep

router = APIRouter(prefix="/v1", tags=["dashboard"])


@router.get("/orders/{order_id}", response_model=StationOrder, responses={404: {}})
async def get_order(order_id: uuid.UUID, staff: CurrentStaff, pool: PoolDep) -> StationOrder:
    order = await service.get_order(pool, staff, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    return order
