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
