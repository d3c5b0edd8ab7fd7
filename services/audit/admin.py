"""Reader credentials, for the CLI and the demo seed.

An id that is taken is refused, unless asked to ``reissue``; a new token for an existing
reader keeps their role and station and is refused for a revoked reader.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from services.audit import store
from services.audit.domain import ReaderRole
from shared.auth import new_token, token_hash
from shared.db import Connection


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
        return token
    if reissue:
        return await reissue_reader_token(conn, reader_id, expires_at=expires_at)
    raise AlreadyExists(f"reader {reader_id} exists")


async def reissue_reader_token(
    conn: Connection,
    reader_id: str,
    *,
    overlap: timedelta = timedelta(0),
    expires_at: datetime | None = None,
) -> str:
    """A new token for an active reader, working until ``expires_at``; the old one stops
    working after ``overlap`` (at once without one)."""
    token, hashed = _new_token()
    if not await store.replace_reader_token(conn, reader_id, hashed, overlap, expires_at):
        raise NoSuchReader(f"no active reader {reader_id}")
    return token
