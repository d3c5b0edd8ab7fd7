"""Reader credentials, for the CLI and the demo seed.

An id that is taken is refused, unless asked to ``reissue``; a new token for an existing
reader keeps their role and station and is refused for a revoked reader.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from services.audit import store
from services.audit.domain import ReaderRole
from shared import topics
from shared.auth import new_token, token_hash
from shared.credentials import COMMAND_LINE, Change, change_of, record_change
from shared.db import Connection
from shared.events import Actor, ReaderTokenChanged


class AlreadyExists(Exception):
    pass


class NoSuchReader(Exception):
    """No reader with that id, or one whose access was revoked."""


def new_reader_id() -> str:
    return f"rdr-{secrets.token_hex(6)}"


def _new_token() -> tuple[str, str]:
    token = new_token("swda")
    return token, token_hash(token)


async def create_reader(
    conn: Connection,
    reader_id: str,
    name: str,
    role: ReaderRole,
    station_id: str | None = None,
    *,
    stations: Sequence[str] = (),
    reissue: bool = False,
    expires_at: datetime | None = None,
    by: Actor = COMMAND_LINE,
) -> str:
    """Create a reader (or, with ``reissue``, give an existing one a new token); return the
    bearer token, shown only now. A station manager has one ``station_id``, a supervisor
    the ``stations`` they supervise, an evaluator the stations of their county, or none (every
    station)."""
    if (role == "station_manager") != (station_id is not None):
        raise ValueError("a station is given for a station manager, and only for one")
    if (role == "supervisor" and not stations) or (role == "station_manager" and stations):
        raise ValueError("stations are given for a supervisor (or a county's evaluator) only")
    token, hashed = _new_token()
    reader = (reader_id, name, role, station_id, stations)
    if await store.insert_reader(conn, reader, hashed, expires_at):
        row = {
            "id": reader_id,
            "role": role,
            "station_id": station_id,
            "stations": list(stations),
            "expires_at": expires_at,
        }
        await _recorded(conn, row, "created", by)
        return token
    if reissue:
        return await reissue_reader_token(conn, reader_id, expires_at=expires_at, by=by)
    raise AlreadyExists(f"reader {reader_id} exists")


async def _recorded(conn: Connection, row: dict[str, Any], change: Change, by: Actor) -> None:
    scope = [row["station_id"]] if row["station_id"] else row["stations"] or None
    payload = change_of(ReaderTokenChanged, row, change, scope)
    await record_change(conn, topics.AUDIT_EVENTS, payload, by)


async def revoke_reader(conn: Connection, reader_id: str, by: Actor = COMMAND_LINE) -> bool:
    row = await store.revoke_reader(conn, reader_id)
    if row is not None:
        await _recorded(conn, row, "revoked", by)
    return row is not None


async def reissue_reader_token(
    conn: Connection,
    reader_id: str,
    *,
    overlap: timedelta = timedelta(0),
    expires_at: datetime | None = None,
    by: Actor = COMMAND_LINE,
) -> str:
    """A new token for an active reader, working until ``expires_at``; the old one stops
    working after ``overlap`` (at once without one)."""
    token, hashed = _new_token()
    row = await store.replace_reader_token(conn, reader_id, hashed, overlap, expires_at)
    if row is None:
        raise NoSuchReader(f"no active reader {reader_id}")
    await _recorded(conn, row, "rotated", by)
    return token
