"""PostgreSQL connection pools. Each service's pool works inside that service's own schema."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.settings import Settings

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# What handlers get: a plain connection, or one borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Errors after which the same work may succeed later: the database is down, restarting or busy.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """Released connections skip asyncpg's reset query (RESET ALL, UNLISTEN *, advisory unlock):
    nothing takes session state on a pooled connection (LISTEN, session locks and SET use
    connections of their own), and that round trip came after every acquire. asyncpg still
    rolls back a transaction left open."""


async def create_pool(settings: Settings, schema: str, **overrides: Any) -> Pool:
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=overrides.get("min_size", settings.db.pool_min_size),
        max_size=overrides.get("max_size", settings.db.pool_max_size),
        command_timeout=settings.db.command_timeout_s,
        server_settings={"search_path": schema, "application_name": f"swdispatch-{schema}"},
        init=_init_connection,
        reset=_keep_session,
    )
    assert pool is not None
    return pool
