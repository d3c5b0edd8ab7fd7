"""Readers of the audit: supervisors see every station, a station manager only their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import token_hash
from shared.runtime import PoolDep

bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Reader:
    id: str
    role: Literal["supervisor", "station_manager"]
    station_id: str | None

    def sees_station(self, station_id: str | None) -> bool:
        return self.role == "supervisor" or (
            station_id is not None and station_id == self.station_id
        )


async def current_reader(
    pool: PoolDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Reader:
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    row = await pool.fetchrow(
        "SELECT id, role, station_id FROM readers WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash(credentials.credentials),
    )
    if row is None:
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    return Reader(**dict(row))


CurrentReader = Annotated[Reader, Depends(current_reader)]
