"""Reference data and credentials: stations, coverage, integrations, operators.

Used by the operator API, the CLI and the demo seed. Each change made on someone's behalf is
recorded in ``admin_actions`` with the actor and the reason (``record_action``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet

from services.dispatch_center import domain, store
from services.dispatch_center.store import (
    record_action,
    revoke_integration,
    revoke_operator,
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
    "NoSuchCredential",
    "create_integration",
    "create_operator",
    "record_action",
    "revoke_integration",
    "revoke_operator",
    "rotate_integration_key",
    "rotate_operator_token",
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
    expires_at: datetime | None = None,
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
        expires_at=expires_at,
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
    expires_at: datetime | None = None,
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
        conn,
        operator_id,
        name,
        role,
        token_hash(token),
        scope,
        reissue=reissue,
        expires_at=expires_at,
    ):
        raise AlreadyExists(f"operator {operator_id} exists")
    return operator_id, token


class NoSuchCredential(Exception):
    """No such operator or integration, or a revoked one."""


async def rotate_operator_token(
    conn: Connection,
    operator_id: str,
    *,
    overlap: timedelta = timedelta(0),
    expires_at: datetime | None = None,
) -> str:
    """A new bearer token for an active operator (scope unchanged), working until
    ``expires_at``; the old one works for the ``overlap`` more."""
    token = new_token("swdo")
    if not await store.rotate_credential(
        conn, store.OPERATORS, operator_id, token_hash(token), overlap, expires_at
    ):
        raise NoSuchCredential(f"no active operator {operator_id}")
    return token


async def rotate_integration_key(
    conn: Connection,
    integration_id: str,
    *,
    overlap: timedelta = timedelta(0),
    expires_at: datetime | None = None,
) -> str:
    """A new X-API-Key for an active integration (its callback secret unchanged), working
    until ``expires_at``; the old key works for the ``overlap`` more."""
    key = new_token("swdi")
    if not await store.rotate_credential(
        conn, store.INTEGRATIONS, integration_id, token_hash(key), overlap, expires_at
    ):
        raise NoSuchCredential(f"no active integration {integration_id}")
    return key
