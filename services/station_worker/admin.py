"""Staff credentials, for the CLI and the demo seed.

Creating a staff member never touches an existing one: an id that is taken is refused (unless
``reissue`` is asked for). A new token for an existing member is a separate action that keeps
their name, station and role, and is refused for a revoked member (revocation is not undone by
re-issuing).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from services.station_worker import store
from services.station_worker.domain import Role
from shared import topics
from shared.auth import new_token, token_hash
from shared.credentials import COMMAND_LINE, Change, change_of, record_change
from shared.db import Connection
from shared.events import Actor, StaffTokenChanged


class AlreadyExists(Exception):
    pass


class NoSuchStaff(Exception):
    """No staff member with that id, or one whose account was revoked."""


def new_staff_id() -> str:
    return f"stf-{secrets.token_hex(6)}"


async def create_staff(
    conn: Connection,
    station_id: str,
    role: Role,
    name: str,
    staff_id: str,
    *,
    reissue: bool = False,
    expires_at: datetime | None = None,
    by: Actor = COMMAND_LINE,
) -> str:
    """Create a staff member (or, with ``reissue``, give an existing active one a new token,
    keeping their role and station); return the bearer token, shown only now. It works until
    ``expires_at`` (None: until revoked)."""
    token = new_token("swds")
    hashed = token_hash(token)
    if await store.insert_staff(conn, staff_id, name, station_id, role, hashed, expires_at):
        row = {"id": staff_id, "role": role, "station_id": station_id, "expires_at": expires_at}
        await _recorded(conn, row, "created", by)
        return token
    if reissue:
        return await reissue_staff_token(conn, staff_id, expires_at=expires_at, by=by)
    raise AlreadyExists(f"staff {staff_id} exists")


async def _recorded(conn: Connection, row: dict[str, Any], change: Change, by: Actor) -> None:
    payload = change_of(StaffTokenChanged, row, change, [row["station_id"]])
    await record_change(conn, topics.STATION_EVENTS, payload, by)


async def reissue_staff_token(
    conn: Connection,
    staff_id: str,
    *,
    overlap: timedelta = timedelta(0),
    expires_at: datetime | None = None,
    by: Actor = COMMAND_LINE,
) -> str:
    """A new token for an active staff member, working until ``expires_at``; the old one
    stops working after ``overlap`` (at once without one)."""
    token = new_token("swds")
    row = await store.set_staff_token(conn, staff_id, token_hash(token), overlap, expires_at)
    if row is None:
        raise NoSuchStaff(f"no active staff member {staff_id}")
    await _recorded(conn, row, "rotated", by)
    return token


async def revoke_staff(conn: Connection, staff_id: str, by: Actor = COMMAND_LINE) -> bool:
    row = await store.revoke_staff(conn, staff_id)
    if row is not None:
        await _recorded(conn, row, "revoked", by)
    return row is not None


async def create_worker(
    conn: Connection,
    staff_id: str,
    station_id: str,
    skills: Iterable[str],
    capacity: int,
    on_duty: bool = True,
) -> None:
    """Give a social worker on the staff a worker profile (skills, capacity, duty)."""
    await store.upsert_worker(conn, staff_id, station_id, list(skills), capacity, on_duty)
