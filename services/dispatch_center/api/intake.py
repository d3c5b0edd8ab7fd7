"""Intake API for integrations."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from services.dispatch_center import feedback, intake
from services.dispatch_center.api.deps import CenterRuntime, CurrentIntegration
from services.dispatch_center.api.schemas import (
    FeedbackBody,
    IntakeRequest,
    IntakeResponse,
    RequestView,
    TimelineEntry,
)
from services.dispatch_center.domain import Feedback
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
    return await _view(pool, integration, order_id)


@router.post(
    "/{order_id}/feedback",
    response_model=RequestView,
    responses={
        404: {"description": "no such order of this integration"},
        409: {"description": "the order is not awaiting feedback, or its feedback was given"},
    },
)
async def give_feedback(
    order_id: uuid.UUID, body: FeedbackBody, integration: CurrentIntegration, pool: PoolDep
) -> RequestView:
    """The return visit's answer (回访): resolved and not dissatisfied closes the order;
    otherwise an operator may send it back for redo. The first answer counts."""
    answer = Feedback("integration", True, body.resolved, body.satisfaction, body.comment)
    await feedback.integration_feedback(pool, integration, order_id, answer)
    return await _view(pool, integration, order_id)


async def _view(pool: PoolDep, integration: CurrentIntegration, order_id: uuid.UUID) -> RequestView:
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
