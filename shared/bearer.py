"""The one bearer-token lookup: a principal is the unrevoked row whose token hash matches (or
whose previous hash does, within a rotation's overlap), unexpired. Each service names its
credential table and columns (in its store) and how a row becomes its principal (in its
``api/deps.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import token_hash
from shared.credentials import CredentialTable, accepted, own_columns
from shared.errors import Unauthorized
from shared.runtime import PoolDep

P = TypeVar("P")

bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def bearer_principal(
    table: CredentialTable, columns: str, principal: Callable[[dict[str, Any]], P]
) -> Callable[[asyncpg.Pool, HTTPAuthorizationCredentials | None], Awaitable[P]]:
    """A dependency giving the principal of the request's bearer token (``columns`` of its
    row in ``table``); 401 with no token, an unknown or revoked one, or an expired one."""
    query = table.lookup(columns)

    async def dependency(pool: PoolDep, credentials: Credentials) -> P:
        if credentials is None:
            raise Unauthorized("missing bearer token")
        found = await pool.fetchrow(query, token_hash(credentials.credentials))
        if found is None:
            raise Unauthorized("invalid bearer token")
        row = dict(found)
        await accepted(pool, table, row, datetime.now(UTC))
        return principal(own_columns(row))

    return dependency
