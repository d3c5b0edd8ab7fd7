"""Versioned SQL migrations, one schema per service, run as the database owner.

A service's migrations are the shared ones (outbox, inbox) followed by its own
``migrations/NNNN_name.sql`` files. Each file runs once, in its own transaction, inside the
service's schema; an advisory lock keeps two starting replicas from migrating at once.

Each service then connects as its own role (:func:`runtime_role`), which may only read and
change the rows of its own schema's tables: it owns nothing, so it can neither alter a table
nor switch a trigger off, and it cannot see the other services' schemas.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import asyncpg

from shared.db import connect

SHARED_MIGRATIONS = Path(str(resources.files("shared") / "sql"))

# Tables whose rows a service may add but never change or remove.
APPEND_ONLY_TABLES: dict[str, tuple[str, ...]] = {"audit": ("trail",)}


def runtime_role(schema: str) -> str:
    """The database role a service connects as."""
    return f"swd_{schema}"


def service_migrations(service: str) -> Path:
    """The directory of ``service``'s own migrations: ``services/<service>/migrations``."""
    return Path(str(resources.files(f"services.{service}") / "migrations"))


def migration_files(service_dir: Path) -> list[tuple[str, str]]:
    """(version, sql) pairs in the order they apply."""
    files = sorted(SHARED_MIGRATIONS.glob("*.sql")) + sorted(service_dir.glob("*.sql"))
    prefix = {SHARED_MIGRATIONS: "shared", service_dir: "service"}
    return [(f"{prefix[f.parent]}/{f.stem}", f.read_text()) for f in files]


async def migrate(
    database_url: str, schema: str, service_dir: Path, role_password: str | None = None
) -> list[str]:
    """Apply what is missing, then (re)grant the service's runtime role; return the versions
    applied now. ``database_url`` is the owner's; ``role_password`` (when given) becomes the
    runtime role's password."""
    conn = await connect(database_url, schema)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext('swdispatch.migrate'))")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files(service_dir):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
        async with conn.transaction():
            await _grant_runtime_role(conn, schema, role_password)
    finally:
        await conn.close()
    return applied_now


async def _grant_runtime_role(
    conn: asyncpg.Connection[asyncpg.Record], schema: str, password: str | None
) -> None:
    role = runtime_role(schema)
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        await conn.execute(f'CREATE ROLE "{role}"')
    await conn.execute(
        f'ALTER ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
        " NOBYPASSRLS NOINHERIT"
    )
    if password is not None:
        alter = "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)"
        await conn.execute(await conn.fetchval(alter, role, password))
    tables = f'ALL TABLES IN SCHEMA "{schema}"'
    for statement in (
        f'REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC',
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
        f'REVOKE ALL ON {tables} FROM "{role}"',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO "{role}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"',
        f'REVOKE INSERT, UPDATE, DELETE ON "{schema}".schema_migrations FROM "{role}"',
        *(
            f'REVOKE UPDATE, DELETE ON "{schema}"."{table}" FROM "{role}"'
            for table in APPEND_ONLY_TABLES.get(schema, ())
        ),
    ):
        await conn.execute(statement)
