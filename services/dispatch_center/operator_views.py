"""Operator API: watch and fix orders; manage stations, coverage and integrations."""

from __future__ import annotations

import uuid
from typing import Annotated, cast

import asyncpg
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from services.dispatch_center import admin, operations
from services.dispatch_center.auth import ActingOperator, CurrentOperator
from services.dispatch_center.models import (
    CommunityBody,
    CommunityView,
    CoverageView,
    IntegrationBody,
    IntegrationCreated,
    IntegrationView,
    OrderDetail,
    OrderPage,
    OverrideBody,
    OverrideView,
    ReasonBody,
    RedispatchBody,
    StationBody,
    StationView,
)
from services.dispatch_center.settings import CenterSettings
from shared.domain import Category, OrderStatus, Urgency
from shared.http import Problem, problem
from shared.runtime import PoolDep, RuntimeDep

router = APIRouter(
    prefix="/v1/operator",
    tags=["operator"],
    responses={403: {"model": Problem, "description": "a viewer may only read"}},
)

CodePath = Annotated[str, Path(min_length=1, max_length=64)]


def _invalid(loc: list[str], msg: str, kind: str) -> JSONResponse:
    return problem(422, msg, errors=[{"loc": loc, "msg": msg, "type": kind}])


@router.get("/orders", response_model=OrderPage)
async def list_orders(
    _: CurrentOperator,
    pool: PoolDep,
    status: OrderStatus | None = None,
    station_id: str | None = None,
    urgency: Urgency | None = None,
    overdue: bool | None = None,
    unroutable: Annotated[bool | None, Query(description="true: status unroutable")] = None,
    awaiting_operator: bool | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> OrderPage | JSONResponse:
    if unroutable is not None:
        if status is not None and (status is OrderStatus.UNROUTABLE) != unroutable:
            return _invalid(["query", "unroutable"], "contradicts status", "conflicting_filter")
        if unroutable:
            status = OrderStatus.UNROUTABLE
        elif status is None:
            return _invalid(
                ["query", "unroutable"], "only unroutable=true filters", "unsupported_filter"
            )
    try:
        items, next_cursor = await operations.list_orders(
            pool,
            status=status,
            station_id=station_id,
            urgency=urgency,
            overdue=overdue,
            awaiting_operator=awaiting_operator,
            cursor=cursor,
            limit=limit,
        )
    except operations.BadCursor:
        return _invalid(["query", "cursor"], "not a cursor this API gave out", "invalid_cursor")
    return OrderPage(items=items, next_cursor=next_cursor)


@router.get("/orders/{order_id}", response_model=OrderDetail, responses={404: {}})
async def get_order(order_id: uuid.UUID, _: CurrentOperator, pool: PoolDep) -> OrderDetail:
    detail = await operations.get_order(pool, order_id)
    if detail is None:
        raise HTTPException(404, "no such order")
    return detail


@router.post(
    "/orders/{order_id}/redispatch",
    response_model=OrderDetail,
    responses={404: {}, 409: {}, 422: {}},
)
async def redispatch(
    order_id: uuid.UUID, body: RedispatchBody, operator: ActingOperator, runtime: RuntimeDep
) -> OrderDetail | JSONResponse:
    try:
        await operations.redispatch(
            runtime.pool,
            cast(CenterSettings, runtime.settings),
            operator,
            order_id,
            body.station_id,
            body.reason,
        )
    except operations.NotFound:
        raise HTTPException(404, "no such order") from None
    except operations.Refused as exc:
        raise HTTPException(409, str(exc)) from None
    except operations.UnknownStation:
        return _invalid(["body", "station_id"], "no active station with this id", "unknown_station")
    return await get_order(order_id, operator, runtime.pool)


@router.post("/orders/{order_id}/cancel", response_model=OrderDetail, responses={404: {}, 409: {}})
async def cancel(
    order_id: uuid.UUID, body: ReasonBody, operator: ActingOperator, pool: PoolDep
) -> OrderDetail:
    try:
        await operations.cancel(pool, operator, order_id, body.reason)
    except operations.NotFound:
        raise HTTPException(404, "no such order") from None
    except operations.Refused as exc:
        raise HTTPException(409, str(exc)) from None
    return await get_order(order_id, operator, pool)


@router.get("/stations", response_model=list[StationView])
async def list_stations(_: CurrentOperator, pool: PoolDep) -> list[StationView]:
    rows = await pool.fetch("SELECT id, name, township_code, active FROM stations ORDER BY id")
    return [StationView(**dict(r)) for r in rows]


@router.put("/stations/{station_id}", response_model=StationView)
async def put_station(
    station_id: CodePath, body: StationBody, operator: ActingOperator, pool: PoolDep
) -> StationView:
    async with pool.acquire() as conn, conn.transaction():
        await admin.upsert_station(conn, station_id, body.name, body.township_code, body.active)
        await admin.record_action(
            conn,
            operator.id,
            "station.put",
            station_id,
            body.reason,
            body.model_dump(exclude={"reason"}),
        )
    return StationView(
        id=station_id, name=body.name, township_code=body.township_code, active=body.active
    )


@router.get("/coverage", response_model=CoverageView)
async def get_coverage(_: CurrentOperator, pool: PoolDep) -> CoverageView:
    async with pool.acquire() as conn:
        communities = await conn.fetch(
            """SELECT c.code, c.name, c.township_code, cov.station_id,
                   coalesce(array_agg(f.station_id ORDER BY f.position)
                            FILTER (WHERE f.station_id IS NOT NULL), '{}') AS fallbacks
               FROM communities c
               LEFT JOIN coverage cov ON cov.community_code = c.code
               LEFT JOIN coverage_fallbacks f ON f.community_code = c.code
               GROUP BY c.code, c.name, c.township_code, cov.station_id
               ORDER BY c.code"""
        )
        overrides = await conn.fetch(
            "SELECT township_code, category, station_id FROM coverage_overrides"
            " ORDER BY township_code, category"
        )
    return CoverageView(
        communities=[CommunityView(**dict(r)) for r in communities],
        overrides=[OverrideView(**dict(r)) for r in overrides],
    )


async def _unknown_stations(pool: PoolDep, station_ids: list[str]) -> list[str]:
    known = {
        r["id"] for r in await pool.fetch("SELECT id FROM stations WHERE id = ANY($1)", station_ids)
    }
    return [s for s in station_ids if s not in known]


@router.put("/communities/{code}", response_model=CommunityView, responses={422: {}})
async def put_community(
    code: CodePath, body: CommunityBody, operator: ActingOperator, pool: PoolDep
) -> CommunityView | JSONResponse:
    if body.station_id is not None and body.station_id in body.fallbacks:
        return _invalid(["body", "fallbacks"], "lists the covering station", "duplicate_station")
    if len(set(body.fallbacks)) != len(body.fallbacks):
        return _invalid(["body", "fallbacks"], "lists a station twice", "duplicate_station")
    if body.station_id is not None and await _unknown_stations(pool, [body.station_id]):
        return _invalid(["body", "station_id"], "no station with this id", "unknown_station")
    if unknown := await _unknown_stations(pool, body.fallbacks):
        return _invalid(["body", "fallbacks"], f"unknown stations: {unknown}", "unknown_station")
    async with pool.acquire() as conn, conn.transaction():
        await admin.upsert_community(
            conn, code, body.name, body.township_code, body.station_id, body.fallbacks
        )
        await admin.record_action(
            conn,
            operator.id,
            "community.put",
            code,
            body.reason,
            body.model_dump(exclude={"reason"}),
        )
    return CommunityView(
        code=code,
        name=body.name,
        township_code=body.township_code,
        station_id=body.station_id,
        fallbacks=body.fallbacks,
    )


@router.put(
    "/overrides/{township_code}/{category}", response_model=OverrideView | None, responses={422: {}}
)
async def put_override(
    township_code: CodePath,
    category: Category,
    body: OverrideBody,
    operator: ActingOperator,
    pool: PoolDep,
) -> OverrideView | JSONResponse | None:
    if body.station_id is not None and await _unknown_stations(pool, [body.station_id]):
        return _invalid(["body", "station_id"], "no station with this id", "unknown_station")
    async with pool.acquire() as conn, conn.transaction():
        await admin.set_override(conn, township_code, category, body.station_id)
        await admin.record_action(
            conn,
            operator.id,
            "override.put",
            f"{township_code}/{category}",
            body.reason,
            {"station_id": body.station_id},
        )
    if body.station_id is None:
        return None
    return OverrideView(township_code=township_code, category=category, station_id=body.station_id)


@router.get("/integrations", response_model=list[IntegrationView])
async def list_integrations(_: CurrentOperator, pool: PoolDep) -> list[IntegrationView]:
    rows = await pool.fetch(
        "SELECT id, name, rate_limit_per_minute, created_at, revoked_at FROM integrations"
        " ORDER BY id"
    )
    return [IntegrationView(**dict(r)) for r in rows]


@router.post("/integrations", status_code=201, response_model=IntegrationCreated)
async def create_integration(
    body: IntegrationBody, operator: ActingOperator, runtime: RuntimeDep
) -> IntegrationCreated:
    settings = cast(CenterSettings, runtime.settings)
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            created = await admin.create_integration(
                conn,
                body.name,
                callback_secret_key=settings.callback_fernet_key(),
                rate_limit_per_minute=body.rate_limit_per_minute,
            )
            await admin.record_action(
                conn,
                operator.id,
                "integration.create",
                created.id,
                body.reason,
                {"rate_limit_per_minute": body.rate_limit_per_minute},
            )
    except (asyncpg.UniqueViolationError, admin.AlreadyExists):
        raise HTTPException(409, "an integration with this name exists") from None
    return IntegrationCreated(
        id=created.id, api_key=created.key, callback_secret=created.callback_secret
    )


@router.post("/integrations/{integration_id}/revoke", status_code=204, responses={404: {}})
async def revoke_integration(
    integration_id: CodePath, body: ReasonBody, operator: ActingOperator, pool: PoolDep
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if not await admin.revoke_integration(conn, integration_id):
            raise HTTPException(404, "no such active integration")
        await admin.record_action(
            conn, operator.id, "integration.revoke", integration_id, body.reason
        )
