"""The one bearer-token lookup: a principal is the row whose token hash matches, unrevoked.
Each service names its query (in its store) and how a row becomes its principal (in its
``api/deps.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import token_hash
from shared.errors import Unauthorized
from shared.runtime import PoolDep

P = TypeVar("P")

bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def bearer_principal(
    query: str, principal: Callable[[asyncpg.Record], P]
) -> Callable[[asyncpg.Pool, HTTPAuthorizationCredentials | None], Awaitable[P]]:
    """A dependency giving the principal of the request's bearer token: ``query`` selects the
    unrevoked row whose token hash is ``$1``; 401 with no token or an unknown one."""

    async def dependency(pool: PoolDep, credentials: Credentials) -> P:
        if credentials is None:
            raise Unauthorized("missing bearer token")
        row = await pool.fetchrow(query, token_hash(credentials.credentials))
        if row is None:
            raise Unauthorized("invalid bearer token")
        return principal(row)

    return dependency
