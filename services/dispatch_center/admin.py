"""Reference data and credentials: stations, coverage, integrations, operators.

Used by the operator API, the CLI and the demo seed. Each change made on someone's behalf is
recorded in ``admin_actions`` with the actor and the reason (``record_action``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.fernet import Fernet

from services.dispatch_center import domain, store
from services.dispatch_center.store import (
    record_action,
    revoke_integration,
    set_override,
    upsert_community,
    upsert_station,
)
from shared.auth import new_token, token_hash
from shared.db import Connection
from shared.errors import InvalidField

__all__ = [
    "AlreadyExists",
    "NewIntegration",
    "create_integration",
    "create_operator",
    "record_action",
    "revoke_integration",
    "set_override",
    "upsert_community",
    "upsert_station",
]


@dataclass(frozen=True)
class NewIntegration:
    id: str
    key: str
    """For ``X-API-Key``; shown only now."""
    callback_secret: str
    """Signs status callbacks; shown only now."""


class AlreadyExists(Exception):
    """A name that is taken; nothing was changed."""


def _id_of(name: str) -> str:
    return name.lower().replace(" ", "-")


async def create_integration(
    conn: Connection,
    name: str,
    *,
    reissue: bool = False,
    callback_secret_key: str,
    rate_limit_per_minute: int | None = None,
) -> NewIntegration:
    """Create an integration; its key and callback secret are shown only now. The secret is
    stored encrypted with ``callback_secret_key`` (the center's SWD_CALLBACK_SECRET_KEY).

    With ``reissue``, an existing integration of that name gets a new key and secret instead
    (the demo seed does that on every start).
    """
    key = new_token("swdi")
    secret = secrets.token_hex(32)
    integration_id = _id_of(name)
    encrypted = Fernet(callback_secret_key).encrypt(secret.encode()).decode()
    if not await store.put_integration(
        conn,
        integration_id,
        name,
        token_hash(key),
        rate_limit_per_minute,
        encrypted,
        reissue=reissue,
    ):
        raise AlreadyExists(f"integration {integration_id} exists")
    return NewIntegration(id=integration_id, key=key, callback_secret=secret)


async def create_operator(
    conn: Connection,
    name: str,
    role: str = "operator",
    *,
    stations: Iterable[str] | None = None,
    reissue: bool = False,
) -> tuple[str, str]:
    """Create an operator (or, with ``reissue``, give an existing one a new token and this
    scope); return (id, bearer token). The token is shown only now.

    ``stations`` binds the operator to those stations (a county's, say): they see and act on
    those stations' orders and figures only. None: every station. Unknown stations are
    refused (:class:`~shared.errors.InvalidField` on ``stations``).
    """
    scope = domain.station_scope(stations)
    if scope is not None and (unknown := await store.unknown_stations(conn, list(scope))):
        raise InvalidField(("stations",), f"unknown stations: {unknown}", type="unknown_station")
    token = new_token("swdo")
    operator_id = _id_of(name)
    if not await store.put_operator(
        conn, operator_id, name, role, token_hash(token), scope, reissue=reissue
    ):
        raise AlreadyExists(f"operator {operator_id} exists")
    return operator_id, token
