"""Reference data and credentials, for the CLI and the demo seed."""

from __future__ import annotations

from shared.auth import new_token, token_hash
from shared.db import Connection


async def upsert_station(conn: Connection, station_id: str, name: str, township_code: str) -> None:
    await conn.execute(
        """INSERT INTO stations (id, name, township_code) VALUES ($1, $2, $3)
           ON CONFLICT (id) DO UPDATE SET name = $2, township_code = $3""",
        station_id,
        name,
        township_code,
    )


async def upsert_community(
    conn: Connection, code: str, name: str, township_code: str, station_id: str | None
) -> None:
    await conn.execute(
        """INSERT INTO communities (code, name, township_code) VALUES ($1, $2, $3)
           ON CONFLICT (code) DO UPDATE SET name = $2, township_code = $3""",
        code,
        name,
        township_code,
    )
    if station_id is None:
        await conn.execute("DELETE FROM coverage WHERE community_code = $1", code)
    else:
        await conn.execute(
            """INSERT INTO coverage (community_code, station_id) VALUES ($1, $2)
               ON CONFLICT (community_code) DO UPDATE SET station_id = $2""",
            code,
            station_id,
        )


async def create_integration(conn: Connection, name: str) -> tuple[str, str]:
    """Create an integration; return (id, key). The key is shown only now."""
    key = new_token("swdi")
    integration_id = name.lower().replace(" ", "-")
    await conn.execute(
        "INSERT INTO integrations (id, name, key_hash) VALUES ($1, $2, $3)",
        integration_id,
        name,
        token_hash(key),
    )
    return integration_id, key
