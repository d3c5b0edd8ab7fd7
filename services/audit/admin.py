"""Reader credentials, for the CLI and the demo seed."""

from __future__ import annotations

from typing import Literal

from shared.auth import new_token, token_hash
from shared.db import Connection


async def create_reader(
    conn: Connection,
    reader_id: str,
    name: str,
    role: Literal["supervisor", "station_manager"],
    station_id: str | None = None,
) -> str:
    """Create a reader; return the bearer token, shown only now."""
    token = new_token("swda")
    await conn.execute(
        """INSERT INTO readers (id, name, role, station_id, token_hash) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET token_hash = $5, revoked_at = NULL""",
        reader_id,
        name,
        role,
        station_id,
        token_hash(token),
    )
    return token
