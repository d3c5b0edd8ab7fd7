"""Operator API: watch and fix orders; manage stations, coverage and integrations."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from services.dispatch_center import domain, feedback, operations
from services.dispatch_center.api.deps import (
    ActingOperator,
    CenterRuntime,
    CurrentOperator,
    DeploymentActingOperator,
    DeploymentOperator,
)
from services.dispatch_center.api.schemas import (
    CommunityBody,
    CommunityView,
    CoverageView,
    IntegrationBody,
    IntegrationCreated,
    IntegrationView,
    OperatorTimelineEntry,
    OperatorView,
    OrderDetail,
    OrderPage,
    OrderSummary,
    OverrideBody,
    OverrideView,
    ReasonBody,
    RedispatchBody,
    ReturnVisitBody,
    SendBackBody,
    StationBody,
    StationView,
)
from services.dispatch_center.domain import Community, OrderFilter, Station
from shared.db import Pool
from shared.domain import Category, OrderStatus, Urgency
from shared.http import Problem
from shared.runtime import PoolDep

router = APIRouter(
    prefix="/v1/operator",
    tags=["operator"],
    responses={403: {"model": Problem, "description": "a viewer may only read"}},
)

CodePath = Annotated[str, Path(min_length=1, max_length=64)]


def _summary(order: domain.Order, now: datetime) -> OrderSummary:
    return OrderSummary(**_summary_fields(order, now))


# OrderSummary's fields that are the order's own.
_SUMMARY_FIELDS = tuple(
    name for name in OrderSummary.model_fields if name not in ("order_id", "deadlines", "overdue")
)


def _summary_fields(order: domain.Order, now: datetime) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "deadlines": order.deadlines,
        "overdue": order.overdue(now),
        **order.pick(*_SUMMARY_FIELDS),
    }


@router.get("/orders", response_model=OrderPage)
async def list_orders(
    operator: CurrentOperator,
    pool: PoolDep,
    status: OrderStatus | None = None,
    station_id: str | None = None,
    urgency: Urgency | None = None,
    overdue: bool | None = None,
    unroutable: Annotated[bool | None, Query(description="true: status unroutable")] = None,
    awaiting_operator: bool | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> OrderPage:
    which = OrderFilter(
        domain.listed_status(status, unroutable), station_id, urgency, overdue, awaiting_operator
    )
    orders, next_cursor = await operations.list_orders(pool, operator, which, cursor, limit)
    now = datetime.now(UTC)
    return OrderPage(items=[_summary(o, now) for o in orders], next_cursor=next_cursor)


async def _detail(pool: Pool, operator: domain.Operator, order_id: uuid.UUID) -> OrderDetail:
    order, timeline = await operations.get_order(pool, operator, order_id)
    return OrderDetail(
        **_summary_fields(order, datetime.now(UTC)),
        tried_stations=list(order.tried_stations),
        timeline=[
            OperatorTimelineEntry(
                status=t.status, at=t.at, station_id=t.station_id, reason=t.reason, actor=t.actor
            )
            for t in timeline
        ],
    )


@router.get("/orders/{order_id}", response_model=OrderDetail, responses={404: {}})
async def get_order(order_id: uuid.UUID, operator: CurrentOperator, pool: PoolDep) -> OrderDetail:
    """The order and its timeline; 404 for an order outside the operator's scope."""
    return await _detail(pool, operator, order_id)


@router.post(
    "/orders/{order_id}/redispatch",
    response_model=OrderDetail,
    responses={404: {}, 409: {}, 422: {}},
)
async def redispatch(
    order_id: uuid.UUID, body: RedispatchBody, operator: ActingOperator, runtime: CenterRuntime
) -> OrderDetail:
    await operations.redispatch(
        runtime.pool, runtime.settings, operator, order_id, body.station_id, body.reason
    )
    return await _detail(runtime.pool, operator, order_id)


@router.post("/orders/{order_id}/cancel", response_model=OrderDetail, responses={404: {}, 409: {}})
async def cancel(
    order_id: uuid.UUID, body: ReasonBody, operator: ActingOperator, pool: PoolDep
) -> OrderDetail:
    await operations.cancel(pool, operator, order_id, body.reason)
    return await _detail(pool, operator, order_id)


@router.post(
    "/orders/{order_id}/return-visit",
    response_model=OrderDetail,
    responses={404: {}, 409: {}, 422: {}},
)
async def return_visit(
    order_id: uuid.UUID, body: ReturnVisitBody, operator: ActingOperator, pool: PoolDep
) -> OrderDetail:
    """The operator's return visit or call (回访): reached, its answers count as the order's
    feedback; not reached, it is recorded and changes nothing."""
    visit = domain.return_visit(body.reached, body.resolved, body.satisfaction, body.comment)
    await feedback.return_visit(pool, operator, order_id, visit)
    return await _detail(pool, operator, order_id)


@router.post(
    "/orders/{order_id}/send-back",
    response_model=OrderDetail,
    responses={404: {}, 409: {}, 422: {}},
)
async def send_back(
    order_id: uuid.UUID, body: SendBackBody, operator: ActingOperator, runtime: CenterRuntime
) -> OrderDetail:
    """Send an order back for redo (发回重办) after a negative return visit: to the station
    that served it or the one named, with fresh accept, assign and complete deadlines."""
    await feedback.send_back(
        runtime.pool, runtime.settings, operator, order_id, body.reason, body.station_id
    )
    return await _detail(runtime.pool, operator, order_id)


@router.get("/stations", response_model=list[StationView])
async def list_stations(operator: CurrentOperator, pool: PoolDep) -> list[StationView]:
    """The stations in the operator's scope."""
    return [StationView(**asdict(s)) for s in await operations.list_stations(pool, operator)]


@router.put("/stations/{station_id}", response_model=StationView, responses={404: {}})
async def put_station(
    station_id: CodePath, body: StationBody, operator: ActingOperator, pool: PoolDep
) -> StationView:
    station = Station(id=station_id, **body.model_dump(exclude={"reason"}))
    return StationView(**asdict(await operations.put_station(pool, operator, station, body.reason)))


@router.get("/coverage", response_model=CoverageView)
async def get_coverage(operator: CurrentOperator, pool: PoolDep) -> CoverageView:
    """Coverage of the townships the operator's stations serve."""
    communities, overrides = await operations.coverage(pool, operator)
    return CoverageView(
        communities=[CommunityView(**c) for c in communities],
        overrides=[OverrideView(**o) for o in overrides],
    )


@router.put("/communities/{code}", response_model=CommunityView, responses={404: {}, 422: {}})
async def put_community(
    code: CodePath, body: CommunityBody, operator: ActingOperator, pool: PoolDep
) -> CommunityView:
    community = await operations.put_community(
        pool, operator, Community(code=code, **body.model_dump(exclude={"reason"})), body.reason
    )
    return CommunityView(**asdict(community))


@router.put(
    "/overrides/{township_code}/{category}",
    response_model=OverrideView | None,
    responses={404: {}, 422: {}},
)
async def put_override(
    township_code: CodePath,
    category: Category,
    body: OverrideBody,
    operator: ActingOperator,
    pool: PoolDep,
) -> OverrideView | None:
    await operations.put_override(
        pool, operator, township_code, category, body.station_id, body.reason
    )
    if body.station_id is None:
        return None
    return OverrideView(township_code=township_code, category=category, station_id=body.station_id)


@router.get("/operators", response_model=list[OperatorView])
async def list_operators(_: DeploymentOperator, pool: PoolDep) -> list[OperatorView]:
    """Every operator and viewer, revoked ones too: for operators bound to no stations."""
    return [OperatorView(**o) for o in await operations.list_operators(pool)]


@router.post("/operators/{operator_id}/revoke", status_code=204, responses={404: {}, 409: {}})
async def revoke_operator(
    operator_id: CodePath, body: ReasonBody, operator: DeploymentActingOperator, pool: PoolDep
) -> None:
    """Revoke an operator or viewer: their next request is 401 (not one's own: 409)."""
    await operations.revoke_operator(pool, operator, operator_id, body.reason)


@router.get("/integrations", response_model=list[IntegrationView])
async def list_integrations(_: DeploymentOperator, pool: PoolDep) -> list[IntegrationView]:
    """The deployment's integrations: for operators bound to no stations (403 otherwise)."""
    return [IntegrationView(**i) for i in await operations.list_integrations(pool)]


@router.post("/integrations", status_code=201, response_model=IntegrationCreated)
async def create_integration(
    body: IntegrationBody, operator: DeploymentActingOperator, runtime: CenterRuntime
) -> IntegrationCreated:
    created = await operations.create_integration(
        runtime.pool,
        runtime.settings,
        operator,
        body.name,
        body.rate_limit_per_minute,
        body.reason,
    )
    return IntegrationCreated(
        id=created.id, api_key=created.key, callback_secret=created.callback_secret
    )


@router.post("/integrations/{integration_id}/revoke", status_code=204, responses={404: {}})
async def revoke_integration(
    integration_id: CodePath, body: ReasonBody, operator: DeploymentActingOperator, pool: PoolDep
) -> None:
    await operations.revoke_integration(pool, operator, integration_id, body.reason)
