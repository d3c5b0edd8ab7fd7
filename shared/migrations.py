"""Versioned SQL migrations, one schema per service.

A service's migrations are the shared ones (outbox, inbox) followed by its own
``migrations/NNNN_name.sql`` files. Each file runs once, in its own transaction, inside the
service's schema; an advisory lock keeps two starting replicas from migrating at once.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import asyncpg

SHARED_MIGRATIONS = Path(str(resources.files("shared") / "sql"))


def migration_files(service_dir: Path) -> list[tuple[str, str]]:
    """(version, sql) pairs in the order they apply."""
    files = sorted(SHARED_MIGRATIONS.glob("*.sql")) + sorted(service_dir.glob("*.sql"))
    prefix = {SHARED_MIGRATIONS: "shared", service_dir: "service"}
    return [(f"{prefix[f.parent]}/{f.stem}", f.read_text()) for f in files]


async def migrate(database_url: str, schema: str, service_dir: Path) -> list[str]:
    """Apply what is missing; return the versions applied now."""
    conn = await asyncpg.connect(database_url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext('swdispatch.migrate'))")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
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
    finally:
        await conn.close()
    return applied_now
