"""Who calls the center: integrations (``X-API-Key``, rate-limited) and operators (Bearer).

Keys and tokens are stored only as hashes. The rate limit counts requests per integration in
fixed one-minute windows in PostgreSQL, so it holds across every replica of the center.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.dispatch_center.settings import CenterSettings
from shared.auth import token_hash
from shared.events import Actor
from shared.runtime import PoolDep, RuntimeDep

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Integration:
    id: str
    name: str


@dataclass(frozen=True)
class Operator:
    id: str
    name: str
    role: str

    @property
    def actor(self) -> Actor:
        return Actor(kind="operator", id=self.id)


# The integration with this key ($1), its request counted in the current window ($2); no row
# (and nothing counted) for an unknown or revoked key.
COUNTED_INTEGRATION = """
    WITH integration AS (
        SELECT id, name, rate_limit_per_minute FROM integrations
        WHERE key_hash = $1 AND revoked_at IS NULL),
    counted AS (
        INSERT INTO rate_limit_windows (integration_id, window_start, requests)
        SELECT id, $2, 1 FROM integration
        ON CONFLICT (integration_id, window_start)
        DO UPDATE SET requests = rate_limit_windows.requests + 1
        RETURNING requests)
    SELECT id, name, rate_limit_per_minute, requests FROM integration, counted"""


async def current_integration(
    runtime: RuntimeDep, key: Annotated[str | None, Security(api_key_header)]
) -> Integration:
    if not key:
        raise HTTPException(401, "missing X-API-Key", headers={"WWW-Authenticate": "ApiKey"})
    now = datetime.now(UTC)
    window = now.replace(second=0, microsecond=0)
    row = await runtime.pool.fetchrow(COUNTED_INTEGRATION, token_hash(key), window)
    if row is None:
        raise HTTPException(401, "invalid X-API-Key", headers={"WWW-Authenticate": "ApiKey"})
    settings = cast(CenterSettings, runtime.settings)
    limit = row["rate_limit_per_minute"] or settings.rate_limit_per_minute
    if row["requests"] > limit:
        retry_after = max(1, math.ceil(60 - (now - window).total_seconds()))
        raise HTTPException(
            429,
            f"over {limit} requests per minute for this integration",
            headers={"Retry-After": str(retry_after)},
        )
    return Integration(id=row["id"], name=row["name"])


CurrentIntegration = Annotated[Integration, Depends(current_integration)]


async def current_operator(
    pool: PoolDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Operator:
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    row = await pool.fetchrow(
        "SELECT id, name, role FROM operators WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash(credentials.credentials),
    )
    if row is None:
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    return Operator(id=row["id"], name=row["name"], role=row["role"])


async def acting_operator(operator: Annotated[Operator, Depends(current_operator)]) -> Operator:
    """Operators may act; viewers may only look."""
    if operator.role != "operator":
        raise HTTPException(403, "this operator may only read")
    return operator


CurrentOperator = Annotated[Operator, Depends(current_operator)]
ActingOperator = Annotated[Operator, Depends(acting_operator)]
