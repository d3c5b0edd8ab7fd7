"""PostgreSQL connection pools. Each service's pool works inside that service's own schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.settings import Settings

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# What handlers get: a plain connection, or one borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
T = TypeVar("T")

# SQLSTATE classes and codes of conditions that pass: the same work may succeed later, so it is
# retried, never dead-lettered or answered as if the request were wrong.
_TRANSIENT_SQLSTATE_CLASSES = frozenset(
    {
        "08",  # connection exception
        "28",  # invalid authorization: a rotated password or a dropped role, fixed by deployment
        "40",  # transaction rollback: serialization failure, deadlock
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "57",  # operator intervention: statement timeout, shutdown, crash restart, starting up
        "58",  # system error: an I/O error of the server
    }
)
_TRANSIENT_SQLSTATES = frozenset(
    {
        "55P03",  # lock not available (lock_timeout)
        "25006",  # read-only transaction: a standby after a failover
        "42501",  # insufficient privilege: a missing grant to the service's role, not the event
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a condition of the database or the connection to it, not of the work:
    the same work may succeed later."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = exc.sqlstate or ""
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
    # The connection was lost or refused, a call timed out (TimeoutError is an OSError), a
    # cached statement outlived a migration.
    return isinstance(exc, OSError | asyncpg.InterfaceError | asyncpg.InternalClientError)


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """Released connections skip asyncpg's reset query (RESET ALL, UNLISTEN *, advisory unlock):
    nothing takes session state on a pooled connection (LISTEN, session locks and SET use
    connections of their own), and that round trip came after every acquire. asyncpg still
    rolls back a transaction left open."""


def schema_settings(schema: str, purpose: str = "") -> dict[str, str]:
    """The server settings of a session that works in ``schema``: the one way to run in a
    schema (pools, the relay, migrations, commands and tests all connect with these)."""
    name = f"swdispatch-{schema}-{purpose}" if purpose else f"swdispatch-{schema}"
    return {"search_path": schema, "application_name": name}


async def connect(database_url: str, schema: str, **kwargs: Any) -> asyncpg.Connection[Any]:
    """A connection of its own that works in ``schema``; ``server_settings`` in ``kwargs`` are
    added to the schema's."""
    extra = kwargs.pop("server_settings", {})
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        database_url, server_settings=schema_settings(schema) | extra, **kwargs
    )
    await _init_connection(conn)
    return conn


@asynccontextmanager
async def transaction_in(schema: str, database_url: str | None = None) -> AsyncIterator[Connection]:
    """One transaction in ``schema`` on a connection of its own (the configured database when
    ``database_url`` is None)."""
    conn = await connect(database_url or Settings().database_url, schema)
    try:
        async with conn.transaction():
            yield conn
    finally:
        await conn.close()


async def in_schema(
    schema: str, work: Callable[[Connection], Awaitable[T]], database_url: str | None = None
) -> T:
    """Run ``work`` in one transaction inside ``schema``."""
    async with transaction_in(schema, database_url) as conn:
        return await work(conn)


async def create_pool(settings: Settings, schema: str, **overrides: Any) -> Pool:
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=overrides.get("min_size", settings.db.pool_min_size),
        max_size=overrides.get("max_size", settings.db.pool_max_size),
        command_timeout=settings.db.command_timeout_s,
        server_settings=schema_settings(schema),
        init=_init_connection,
        reset=_keep_session,
    )
    assert pool is not None
    return pool
