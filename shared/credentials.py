"""Every credential the same way (operators', staff's and readers' bearer tokens, integration
keys): stored as a hash, with an optional expiry and the time of its last use; a rotation keeps
the previous hash working until its overlap ends, so a client can switch without an outage.

Each credential table has ``id``, the hash column, ``revoked_at``, ``expires_at``,
``last_used_at``, ``previous_hash`` and ``previous_expires_at`` (the services' migrations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from shared import outbox
from shared.db import Connection, Pool
from shared.errors import Unauthorized
from shared.events import DEPLOYMENT_ID, Actor, CredentialChanged, new_event

# The last use is written at most this often per credential (not a write per request).
LAST_USE_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class CredentialTable:
    table: str
    hash_column: str = "token_hash"
    scheme: str = "Bearer"
    """WWW-Authenticate's, on a 401."""

    def lookup(self, columns: str) -> str:
        """SQL: ``columns`` of the unrevoked row whose current hash is ``$1``, or whose
        previous one is, within its overlap; with what :func:`accepted` needs."""
        return (
            f"SELECT {columns}, id AS credential_id, expires_at AS credential_expires_at,"  # noqa: S608
            " last_used_at AS credential_last_used_at"
            f" FROM {self.table} WHERE revoked_at IS NULL AND ({self.hash_column} = $1"
            " OR (previous_hash = $1 AND previous_expires_at > now()))"
        )

    def rotation(self) -> str:
        """SQL: give the unrevoked row ``$1`` the hash ``$2`` and expiry ``$4``; its current
        hash keeps working for the overlap ``$3`` (none: it stops now)."""
        return (
            f"UPDATE {self.table} SET"  # noqa: S608
            f" previous_hash = CASE WHEN $3::interval > interval '0' THEN {self.hash_column} END,"
            " previous_expires_at = CASE WHEN $3::interval > interval '0' THEN now() + $3 END,"
            f" {self.hash_column} = $2, expires_at = $4"
            " WHERE id = $1 AND revoked_at IS NULL RETURNING *"
        )

    def revocation(self) -> str:
        """SQL: revoke the unrevoked row ``$1``."""
        return (
            f"UPDATE {self.table} SET revoked_at = now()"  # noqa: S608
            " WHERE id = $1 AND revoked_at IS NULL RETURNING *"
        )


EXTRA = ("credential_id", "credential_expires_at", "credential_last_used_at")


def own_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row without what :meth:`CredentialTable.lookup` adds."""
    return {k: v for k, v in dict(row).items() if k not in EXTRA}


async def accepted(
    pool: Pool | Connection, table: CredentialTable, row: Mapping[str, Any], now: datetime
) -> None:
    """Refuse an expired credential (401 saying so); note its use."""
    expires_at: datetime | None = row["credential_expires_at"]
    if expires_at is not None and expires_at <= now:
        raise Unauthorized(
            f"this credential expired at {expires_at.isoformat()}; ask for a new one",
            scheme=table.scheme,
        )
    last: datetime | None = row["credential_last_used_at"]
    if last is None or now - last >= LAST_USE_RESOLUTION:
        await pool.execute(
            f"UPDATE {table.table} SET last_used_at = $2 WHERE id = $1",  # noqa: S608
            row["credential_id"],
            now,
        )


def expiry(now: datetime, lifetime_days: float | None) -> datetime | None:
    """When a credential made now expires: after the lifetime; None without one."""
    return None if lifetime_days is None else now + timedelta(days=lifetime_days)


Change = Literal["created", "rotated", "revoked"]


def change_of(
    event: type[CredentialChanged],
    row: Mapping[str, Any],
    change: Change,
    stations: list[str] | None,
) -> CredentialChanged:
    """The event of a change to the credential ``row`` (its id, role and expiry; after a
    rotation, when the previous one stops working), with its scope ``stations``."""
    return event(
        credential_id=row["id"],
        change=change,
        role=row.get("role"),
        stations=stations,
        expires_at=row.get("expires_at"),
        previous_works_until=row.get("previous_expires_at") if change == "rotated" else None,
    )


# Who changes a credential on the command line (the machine's administrator).
COMMAND_LINE = Actor(kind="system", id="command-line")


async def record_change(
    conn: Connection, topic: str, payload: CredentialChanged, by: Actor
) -> None:
    """The change as an event of the deployment's chain in the audit trail, through the
    service's outbox, in the transaction that makes it."""
    await outbox.add(conn, topic, new_event(payload, order_id=DEPLOYMENT_ID, actor=by))
