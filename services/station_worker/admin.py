"""Staff credentials, for the CLI and the demo seed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from shared.auth import new_token, token_hash
from shared.db import Connection


async def create_staff(
    conn: Connection,
    station_id: str,
    role: Literal["station_manager", "social_worker"],
    name: str,
    staff_id: str,
) -> str:
    """Create a staff member; return the bearer token, shown only now."""
    token = new_token("swds")
    await conn.execute(
        """INSERT INTO staff (id, name, station_id, role, token_hash) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET token_hash = $5, revoked_at = NULL""",
        staff_id,
        name,
        station_id,
        role,
        token_hash(token),
    )
    return token


async def create_worker(
    conn: Connection,
    staff_id: str,
    station_id: str,
    skills: Iterable[str],
    capacity: int,
    on_duty: bool = True,
) -> None:
    """Give a social worker on the staff a worker profile (skills, capacity, duty)."""
    await conn.execute(
        """INSERT INTO workers (id, station_id, skills, capacity, on_duty)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET skills = $3, capacity = $4, on_duty = $5,
               updated_at = now()""",
        staff_id,
        station_id,
        sorted(skills),
        capacity,
        on_duty,
    )
