"""Staff credentials, for the CLI and the demo seed.

Creating a staff member never touches an existing one: an id that is taken is refused. A new
token for an existing member is a separate action that keeps their name, station and role, and
is refused for a revoked member (revocation is not undone by re-issuing).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Literal

from shared.auth import new_token, token_hash
from shared.db import Connection


class AlreadyExists(Exception):
    pass


class NoSuchStaff(Exception):
    """No staff member with that id, or one whose account was revoked."""


def new_staff_id() -> str:
    return f"stf-{secrets.token_hex(6)}"


async def create_staff(
    conn: Connection,
    station_id: str,
    role: Literal["station_manager", "social_worker"],
    name: str,
    staff_id: str,
) -> str:
    """Create a staff member; return the bearer token, shown only now."""
    token = new_token("swds")
    created = await conn.fetchval(
        """INSERT INTO staff (id, name, station_id, role, token_hash) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO NOTHING RETURNING id""",
        staff_id,
        name,
        station_id,
        role,
        token_hash(token),
    )
    if created is None:
        raise AlreadyExists(f"staff {staff_id} exists")
    return token


async def reissue_staff_token(conn: Connection, staff_id: str) -> str:
    """A new token for an active staff member; the old one stops working."""
    token = new_token("swds")
    updated = await conn.fetchval(
        """UPDATE staff SET token_hash = $2 WHERE id = $1 AND revoked_at IS NULL
           RETURNING id""",
        staff_id,
        token_hash(token),
    )
    if updated is None:
        raise NoSuchStaff(f"no active staff member {staff_id}")
    return token


async def revoke_staff(conn: Connection, staff_id: str) -> bool:
    status = await conn.execute(
        "UPDATE staff SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", staff_id
    )
    return bool(status == "UPDATE 1")


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
