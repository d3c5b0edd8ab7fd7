"""Reader credentials, for the CLI and the demo seed.

As for station staff: an id that is taken is refused, and a new token for an existing reader
is a separate action that keeps their role and station and is refused for a revoked reader.
"""

from __future__ import annotations

import secrets
from typing import Literal

from shared.auth import new_token, token_hash
from shared.db import Connection


class AlreadyExists(Exception):
    pass


class NoSuchReader(Exception):
    """No reader with that id, or one whose access was revoked."""


def new_reader_id() -> str:
    return f"rdr-{secrets.token_hex(6)}"


async def create_reader(
    conn: Connection,
    reader_id: str,
    name: str,
    role: Literal["supervisor", "station_manager"],
    station_id: str | None = None,
) -> str:
    """Create a reader; return the bearer token, shown only now."""
    token = new_token("swda")
    created = await conn.fetchval(
        """INSERT INTO readers (id, name, role, station_id, token_hash) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO NOTHING RETURNING id""",
        reader_id,
        name,
        role,
        station_id,
        token_hash(token),
    )
    if created is None:
        raise AlreadyExists(f"reader {reader_id} exists")
    return token


async def reissue_reader_token(conn: Connection, reader_id: str) -> str:
    """A new token for an active reader; the old one stops working."""
    token = new_token("swda")
    updated = await conn.fetchval(
        "UPDATE readers SET token_hash = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id",
        reader_id,
        token_hash(token),
    )
    if updated is None:
        raise NoSuchReader(f"no active reader {reader_id}")
    return token
