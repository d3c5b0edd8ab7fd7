"""What operators look at and do: order lists, redispatch, cancel; stations, coverage and
integrations. Each change made on someone's behalf is recorded with the actor and the reason."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from services.dispatch_center import admin, domain, store
from services.dispatch_center.domain import (
    Community,
    Named,
    Operator,
    Order,
    OrderFilter,
    Scope,
    Station,
    TimelineEntry,
)
from services.dispatch_center.settings import CenterSettings
from shared.db import Connection, Pool
from shared.domain import Category
from shared.errors import Conflict, NotFound
from shared.paging import decode_cursor, encode_cursor


async def list_orders(
    pool: Pool, operator: Operator, which: OrderFilter, cursor: str | None, limit: int
) -> tuple[list[Order], str | None]:
    """A page of the operator's orders (in their scope), newest first, and the cursor of the
    next page (None: the last)."""
    after = decode_cursor(cursor) if cursor else (None, None)
    orders = await store.list_orders(pool, which, after, limit + 1, operator.stations)
    page = orders[:limit]
    next_cursor = encode_cursor(page[-1].submitted_at, page[-1].id) if len(orders) > limit else None
    return page, next_cursor


async def get_order(
    pool: Pool, operator: Operator, order_id: uuid.UUID
) -> tuple[Order, list[TimelineEntry]]:
    """The order and its timeline; 404 outside the operator's scope, as for a missing one."""
    async with pool.acquire() as conn:
        order = await store.order(conn, order_id, scope=operator.stations)
        if order is None:
            raise NotFound("no such order")
        return order, await store.timeline(conn, order_id)


async def redispatch(
    pool: Pool,
    settings: CenterSettings,
    operator: Operator,
    order_id: uuid.UUID,
    station_id: str,
    reason: str,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        order = await store.lock(conn, order_id, scope=operator.stations)
        if order is None:
            raise NotFound("no such order")
        active = await store.station_active(conn, station_id)
        change = domain.operator_redispatch_change(
            settings,
            order,
            station_id,
            domain.station_usable(operator, station_id, active),
            reason=reason,
            actor=operator.actor,
            now=datetime.now(UTC),
        )
        await store.write(conn, order, change)


async def cancel(pool: Pool, operator: Operator, order_id: uuid.UUID, reason: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        order = await store.lock(conn, order_id, scope=operator.stations)
        if order is None:
            raise NotFound("no such order")
        change = domain.cancel_change(order, reason, actor=operator.actor, at=datetime.now(UTC))
        await store.write(conn, order, change)


async def list_stations(pool: Pool, operator: Operator) -> list[Station]:
    """The stations in the operator's scope."""
    return await store.stations(pool, operator.stations)


async def put_station(pool: Pool, operator: Operator, station: Station, reason: str) -> Station:
    """Create or change a station; a scoped operator only theirs (404 for any other), and only
    in a township their stations serve (422 on ``township_code``)."""
    if not operator.covers(station.id):
        raise NotFound("no such station")
    async with pool.acquire() as conn, conn.transaction():
        scope = await store.scope_of(conn, operator)
        await _check_named(
            conn, scope, Named(("body", "township_code"), township=station.township_code)
        )
        await store.upsert_station(
            conn, station.id, station.name, station.township_code, station.active
        )
        details = {k: v for k, v in asdict(station).items() if k != "id"}
        await store.record_action(conn, operator.id, "station.put", station.id, reason, details)
    return station


async def coverage(
    pool: Pool, operator: Operator
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Coverage of the townships the operator's stations serve."""
    return await store.coverage(pool, operator.stations)


async def list_integrations(pool: Pool) -> list[dict[str, Any]]:
    return await store.integrations(pool)


async def _check_named(conn: Connection, scope: Scope, *named: Named) -> None:
    """Every value the request names is in the operator's scope (:func:`domain.check_named`)."""
    stations = sorted({s for n in named for s in n.stations})
    domain.check_named(scope, await store.unknown_stations(conn, stations), named)


async def put_community(
    pool: Pool, operator: Operator, community: Community, reason: str
) -> Community:
    """Create or change a community's coverage. A scoped operator: only in a township their
    stations serve (404 for a community elsewhere; 422 moving one to such a township), and
    only with their stations."""
    community.check()
    async with pool.acquire() as conn:
        scope = await store.scope_of(conn, operator)
        was = await store.community_township(conn, community.code)
        if was is not None and not scope.has_township(was):
            raise NotFound("no such community")
        await _check_named(
            conn,
            scope,
            Named(("body", "township_code"), township=community.township_code),
            Named.station(("body", "station_id"), community.station_id),
            Named(("body", "fallbacks"), stations=tuple(community.fallbacks)),
        )
        async with conn.transaction():
            c = community
            await store.upsert_community(
                conn, c.code, c.name, c.township_code, c.station_id, c.fallbacks
            )
            details = {k: v for k, v in asdict(c).items() if k != "code"}
            await store.record_action(conn, operator.id, "community.put", c.code, reason, details)
    return community


async def put_override(
    pool: Pool,
    operator: Operator,
    township_code: str,
    category: Category,
    station_id: str | None,
    reason: str,
) -> None:
    """Set or clear a township's station for a category; a scoped operator only in a township
    their stations serve (404 elsewhere) and only with their stations."""
    async with pool.acquire() as conn:
        scope = await store.scope_of(conn, operator)
        if not scope.has_township(township_code):
            raise NotFound("no such township")
        await _check_named(conn, scope, Named.station(("body", "station_id"), station_id))
        async with conn.transaction():
            await store.set_override(conn, township_code, category, station_id)
            await store.record_action(
                conn,
                operator.id,
                "override.put",
                f"{township_code}/{category}",
                reason,
                {"station_id": station_id},
            )


async def create_integration(
    pool: Pool,
    settings: CenterSettings,
    operator: Operator,
    name: str,
    rate_limit_per_minute: int | None,
    reason: str,
) -> admin.NewIntegration:
    try:
        async with pool.acquire() as conn, conn.transaction():
            created = await admin.create_integration(
                conn,
                name,
                callback_secret_key=settings.callback_fernet_key(),
                rate_limit_per_minute=rate_limit_per_minute,
                by=operator.actor,
            )
            await store.record_action(
                conn,
                operator.id,
                "integration.create",
                created.id,
                reason,
                {"rate_limit_per_minute": rate_limit_per_minute},
            )
    except admin.AlreadyExists:
        raise Conflict("an integration with this name exists") from None
    return created


async def list_operators(pool: Pool) -> list[dict[str, Any]]:
    return await store.operators(pool)


async def revoke_operator(pool: Pool, operator: Operator, operator_id: str, reason: str) -> None:
    """Revoke an operator's token: their next request is 401. Not one's own (someone must be
    left to manage the deployment)."""
    if operator_id == operator.id:
        raise Conflict("you cannot revoke yourself")
    async with pool.acquire() as conn, conn.transaction():
        if not await admin.revoke(conn, "operator", operator_id, operator.actor):
            raise NotFound("no such active operator")
        await store.record_action(conn, operator.id, "operator.revoke", operator_id, reason)


async def revoke_integration(
    pool: Pool, operator: Operator, integration_id: str, reason: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if not await admin.revoke(conn, "integration", integration_id, operator.actor):
            raise NotFound("no such active integration")
        await store.record_action(conn, operator.id, "integration.revoke", integration_id, reason)
