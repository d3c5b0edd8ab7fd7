"""Intake API for integrations."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from services.dispatch_center import intake
from services.dispatch_center.api.deps import CenterRuntime, CurrentIntegration
from services.dispatch_center.api.schemas import (
    IntakeRequest,
    IntakeResponse,
    RequestView,
    TimelineEntry,
)
from shared.runtime import PoolDep

router = APIRouter(prefix="/v1/requests", tags=["intake"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IntakeResponse,
    responses={
        200: {"model": IntakeResponse, "description": "a repeat of an earlier request"},
        409: {"description": "external_id reused with a different body"},
    },
)
async def submit_request(
    body: IntakeRequest, integration: CurrentIntegration, runtime: CenterRuntime, response: Response
) -> IntakeResponse:
    result = await intake.submit(runtime.pool, runtime.settings, integration, body)
    link = f"/v1/requests/{result.order_id}"
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    response.headers["Location"] = link
    return IntakeResponse(order_id=result.order_id, status=result.status, link=link)


@router.get("/{order_id}", response_model=RequestView, responses={404: {}})
async def get_request(
    order_id: uuid.UUID, integration: CurrentIntegration, pool: PoolDep
) -> RequestView:
    order, timeline = await intake.get_request(pool, integration, order_id)
    return RequestView(
        order_id=order.id,
        deadlines=order.deadlines,
        **order.pick("external_id", "status", "station_id", "category", "urgency", "submitted_at"),
        timeline=[
            TimelineEntry(status=t.status, at=t.at, station_id=t.station_id, reason=t.reason)
            for t in timeline
        ],
    )
