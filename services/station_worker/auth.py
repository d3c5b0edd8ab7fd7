"""Staff authenticate with a bearer token bound to one station."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import token_hash
from shared.db import Pool
from shared.runtime import PoolDep

bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class StaffMember:
    id: str
    name: str
    station_id: str
    role: Literal["station_manager", "social_worker"]
    token_hash: str = field(repr=False)


async def current_staff(
    pool: PoolDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> StaffMember:
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    row = await pool.fetchrow(
        """SELECT id, name, station_id, role, token_hash FROM staff
           WHERE token_hash = $1 AND revoked_at IS NULL""",
        token_hash(credentials.credentials),
    )
    if row is None:
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    return StaffMember(**dict(row))


async def still_valid(pool: Pool, staff: StaffMember) -> bool:
    """Whether the token ``staff`` signed in with still works (not revoked, not re-issued)."""
    return bool(
        await pool.fetchval(
            "SELECT true FROM staff WHERE id = $1 AND token_hash = $2 AND revoked_at IS NULL",
            staff.id,
            staff.token_hash,
        )
    )


CurrentStaff = Annotated[StaffMember, Depends(current_staff)]
