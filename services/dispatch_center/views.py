"""Intake API for integrations."""

from __future__ import annotations

import uuid
from typing import cast

from fastapi import APIRouter, HTTPException, Response, status

from services.dispatch_center import service
from services.dispatch_center.auth import CurrentIntegration
from services.dispatch_center.models import IntakeRequest, IntakeResponse, RequestView
from services.dispatch_center.settings import CenterSettings
from shared import errors
from shared.runtime import PoolDep, RuntimeDep

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
    body: IntakeRequest, integration: CurrentIntegration, runtime: RuntimeDep, response: Response
) -> IntakeResponse:
    try:
        result = await service.submit(
            runtime.pool, cast(CenterSettings, runtime.settings), integration, body
        )
    except service.InvalidField as exc:
        raise errors.InvalidField(exc.loc, exc.msg, type=exc.kind) from None
    except service.ConflictingRequest:
        raise HTTPException(
            409, "external_id was used before with a different request body"
        ) from None
    link = f"/v1/requests/{result.order_id}"
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    response.headers["Location"] = link
    return IntakeResponse(order_id=result.order_id, status=result.status, link=link)


@router.get("/{order_id}", response_model=RequestView, responses={404: {}})
async def get_request(
    order_id: uuid.UUID, integration: CurrentIntegration, pool: PoolDep
) -> RequestView:
    view = await service.get_request(pool, integration, order_id)
    if view is None:
        raise HTTPException(404, "no such request")
    return view
