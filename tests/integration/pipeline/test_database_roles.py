"""Each service connects as its own role: rows of its own schema only, no DDL, no triggers off;
the audit's role cannot change or remove trail entries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from swdispatch.stack import SERVICES
from tests.conftest import RunningStack

pytestmark = pytest.mark.integration


@pytest.fixture
async def as_role(stack: RunningStack) -> AsyncIterator[dict[str, asyncpg.Connection]]:
    conns = {s: await asyncpg.connect(stack.local.service_database_url(s)) for s in SERVICES}
    yield conns
    for conn in conns.values():
        await conn.close()


async def test_every_service_runs_as_its_own_role(stack: RunningStack) -> None:
    for service in SERVICES:
        url = stack.local.service_database_url(service)
        assert f"swd_{service}:" in url
        # The process was given that URL, not the owner's.
        assert url != stack.database_url


async def test_a_service_role_reads_and_writes_its_own_schema_only(
    as_role: dict[str, asyncpg.Connection],
) -> None:
    for service, conn in as_role.items():
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        async with conn.transaction():
            await conn.execute(f"SELECT count(*) FROM {service}.outbox")  # noqa: S608
            await conn.execute(f"DELETE FROM {service}.inbox WHERE false")  # noqa: S608
        for other in SERVICES:
            if other == service:
                continue
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(f"SELECT count(*) FROM {other}.inbox")  # noqa: S608
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"DELETE FROM {other}.outbox")  # noqa: S608
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"ALTER TABLE {service}.outbox DISABLE TRIGGER ALL")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"CREATE TABLE {service}.extra (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"DELETE FROM {service}.schema_migrations")  # noqa: S608
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")


async def test_the_audit_role_cannot_change_remove_or_unguard_the_trail(
    as_role: dict[str, asyncpg.Connection],
) -> None:
    audit = as_role["audit"]
    assert await audit.fetchval("SELECT count(*) >= 0 FROM audit.trail")
    for statement in (
        "UPDATE audit.trail SET hash = hash",
        "DELETE FROM audit.trail",
        "TRUNCATE audit.trail",
        "ALTER TABLE audit.trail DISABLE TRIGGER trail_append_only",
        "ALTER TABLE audit.trail DISABLE TRIGGER ALL",
        "DROP TRIGGER trail_append_only ON audit.trail",
        "DROP TABLE audit.trail",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit.execute(statement)
    # It may still add entries (its consumer does): INSERT stays granted.
    assert await audit.fetchval(
        "SELECT has_table_privilege('audit.trail', 'INSERT')"
        " AND NOT has_table_privilege('audit.trail', 'UPDATE')"
        " AND NOT has_table_privilege('audit.trail', 'DELETE')"
    )
