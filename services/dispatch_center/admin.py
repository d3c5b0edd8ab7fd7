"""Reference data and credentials: stations, coverage, integrations, operators.

Used by the operator API, the CLI and the demo seed. Each change made on someone's behalf is
recorded in ``admin_actions`` with the actor and the reason (``record_action``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography.fernet import Fernet

from services.dispatch_center import domain, store
from services.dispatch_center.store import (
    record_action,
    set_override,
    upsert_community,
    upsert_station,
)
from shared import topics
from shared.auth import new_token, token_hash
from shared.credentials import COMMAND_LINE, Change, change_of, record_change
from shared.db import Connection
from shared.errors import InvalidField
from shared.events import (
    Actor,
    CredentialChanged,
    IntegrationKeyChanged,
    OperatorTokenChanged,
)

__all__ = [
    "AlreadyExists",
    "NewIntegration",
    "NoSuchCredential",
    "create_integration",
    "create_operator",
    "record_action",
    "revoke",
    "rotate",
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
    by: Actor = COMMAND_LINE,
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
    inserted = await store.put_integration(
        conn,
        integration_id,
        name,
        token_hash(key),
        rate_limit_per_minute,
        encrypted,
        reissue=reissue,
        expires_at=expires_at,
    )
    if inserted is None:
        raise AlreadyExists(f"integration {integration_id} exists")
    row = {"id": integration_id, "expires_at": expires_at}
    await _record(conn, "integration", row, "created" if inserted else "rotated", by)
    return NewIntegration(id=integration_id, key=key, callback_secret=secret)


async def create_operator(
    conn: Connection,
    name: str,
    role: str = "operator",
    *,
    stations: Iterable[str] | None = None,
    reissue: bool = False,
    expires_at: datetime | None = None,
    by: Actor = COMMAND_LINE,
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
    inserted = await store.put_operator(
        conn,
        operator_id,
        name,
        role,
        token_hash(token),
        scope,
        reissue=reissue,
        expires_at=expires_at,
    )
    if inserted is None:
        raise AlreadyExists(f"operator {operator_id} exists")
    row = {"id": operator_id, "role": role, "stations": scope, "expires_at": expires_at}
    await _record(conn, "operator", row, "created" if inserted else "rotated", by)
    return operator_id, token


class NoSuchCredential(Exception):
    """No such operator or integration, or a revoked one."""


Kind = Literal["operator", "integration"]
_TABLES = {"operator": store.OPERATORS, "integration": store.INTEGRATIONS}
_EVENTS: dict[Kind, type[CredentialChanged]] = {
    "operator": OperatorTokenChanged,
    "integration": IntegrationKeyChanged,
}


async def _record(
    conn: Connection, kind: Kind, row: dict[str, Any], change: Change, by: Actor
) -> None:
    stations = row.get("stations")
    scope = None if stations is None else list(stations)
    payload = change_of(_EVENTS[kind], row, change, scope)
    await record_change(conn, topics.CENTER_EVENTS, payload, by)


async def rotate(
    conn: Connection,
    kind: Kind,
    credential_id: str,
    *,
    overlap: timedelta = timedelta(0),
    expires_at: datetime | None = None,
    by: Actor = COMMAND_LINE,
) -> str:
    """A new token for an active operator (scope unchanged) or key for an integration (its
    callback secret unchanged), working until ``expires_at``; the old one works for the
    ``overlap`` more."""
    secret = new_token("swdo" if kind == "operator" else "swdi")
    row = await store.rotate_credential(
        conn, _TABLES[kind], credential_id, token_hash(secret), overlap, expires_at
    )
    if row is None:
        raise NoSuchCredential(f"no active {kind} {credential_id}")
    await _record(conn, kind, row, "rotated", by)
    return secret


async def revoke(
    conn: Connection, kind: Kind, credential_id: str, by: Actor = COMMAND_LINE
) -> bool:
    """Revoke an operator's token or an integration's key; False when there is no such
    active one."""
    row = await store.revoke_credential(conn, _TABLES[kind], credential_id)
    if row is not None:
        await _record(conn, kind, row, "revoked", by)
    return row is not None
