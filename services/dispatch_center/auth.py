"""Integrations authenticate with their own key in ``X-API-Key``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader

from shared.auth import token_hash
from shared.runtime import PoolDep

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True)
class Integration:
    id: str
    name: str


async def current_integration(
    pool: PoolDep, key: Annotated[str | None, Security(api_key_header)]
) -> Integration:
    if not key:
        raise HTTPException(401, "missing X-API-Key", headers={"WWW-Authenticate": "ApiKey"})
    row = await pool.fetchrow(
        "SELECT id, name FROM integrations WHERE key_hash = $1 AND revoked_at IS NULL",
        token_hash(key),
    )
    if row is None:
        raise HTTPException(401, "invalid X-API-Key", headers={"WWW-Authenticate": "ApiKey"})
    return Integration(id=row["id"], name=row["name"])


CurrentIntegration = Annotated[Integration, Depends(current_integration)]
