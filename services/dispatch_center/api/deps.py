"""Who calls the center: integrations (``X-API-Key``, rate-limited) and operators (Bearer).

Keys and tokens are stored only as hashes. The rate limit counts requests per integration in
fixed one-minute windows in PostgreSQL, so it holds across every replica of the center.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader

from services.dispatch_center import domain, store
from services.dispatch_center.domain import Integration, Operator
from services.dispatch_center.settings import CenterSettings
from shared.auth import token_hash
from shared.bearer import bearer_principal
from shared.credentials import accepted
from shared.errors import TooManyRequests, Unauthorized
from shared.runtime import Runtime, current_runtime

CenterRuntime = Annotated[Runtime[CenterSettings], Depends(current_runtime)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def current_integration(
    runtime: CenterRuntime, key: Annotated[str | None, Security(api_key_header)]
) -> Integration:
    if not key:
        raise Unauthorized("missing X-API-Key", scheme="ApiKey")
    now = datetime.now(UTC)
    window = now.replace(second=0, microsecond=0)
    counted = await store.count_request(runtime.pool, token_hash(key), window)
    if counted is None:
        raise Unauthorized("invalid X-API-Key", scheme="ApiKey")
    integration, own_limit, requests, credential = counted
    await accepted(runtime.pool, store.INTEGRATIONS, credential, now)
    limit = domain.over_rate_limit(requests, own_limit, runtime.settings.rate_limit_per_minute)
    if limit is not None:
        retry_after = max(1, math.ceil(60 - (now - window).total_seconds()))
        raise TooManyRequests(
            f"over {limit} requests per minute for this integration", retry_after=retry_after
        )
    return integration


current_operator = bearer_principal(store.OPERATORS, store.OPERATOR_COLUMNS, store.operator_of)


async def acting_operator(operator: Annotated[Operator, Depends(current_operator)]) -> Operator:
    """Operators may act; viewers may only look."""
    return domain.may_act(operator)


async def deployment_operator(
    operator: Annotated[Operator, Depends(current_operator)],
) -> Operator:
    """An operator bound to no stations: the whole deployment's (its integrations)."""
    return domain.may_manage_deployment(operator)


async def deployment_acting_operator(
    operator: Annotated[Operator, Depends(acting_operator)],
) -> Operator:
    return domain.may_manage_deployment(operator)


CurrentIntegration = Annotated[Integration, Depends(current_integration)]
CurrentOperator = Annotated[Operator, Depends(current_operator)]
ActingOperator = Annotated[Operator, Depends(acting_operator)]
DeploymentOperator = Annotated[Operator, Depends(deployment_operator)]
DeploymentActingOperator = Annotated[Operator, Depends(deployment_acting_operator)]
