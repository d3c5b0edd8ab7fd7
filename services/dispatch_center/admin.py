"""Reference data and credentials: stations, coverage, integrations, operators.

Used by the operator API, the CLI and the demo seed. Each change made on someone's behalf is
recorded in ``admin_actions`` with the actor and the reason.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet

from shared.auth import new_token, token_hash
from shared.db import Connection


@dataclass(frozen=True)
class NewIntegration:
    id: str
    key: str
    """For ``X-API-Key``; shown only now."""
    callback_secret: str
    """Signs status callbacks; shown only now."""


async def record_action(
    conn: Connection,
    actor: str,
    action: str,
    subject: str,
    reason: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO admin_actions (actor, action, subject, reason, details)
           VALUES ($1, $2, $3, $4, $5::text::jsonb)""",
        actor,
        action,
        subject,
        reason,
        # As text: the CLI's connection has no jsonb codec, the services' pools do.
        json.dumps(details or {}, default=str),
    )


async def upsert_station(
    conn: Connection, station_id: str, name: str, township_code: str, active: bool = True
) -> None:
    await conn.execute(
        """INSERT INTO stations (id, name, township_code, active) VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE SET name = $2, township_code = $3, active = $4""",
        station_id,
        name,
        township_code,
        active,
    )


async def upsert_community(
    conn: Connection,
    code: str,
    name: str,
    township_code: str,
    station_id: str | None,
    fallbacks: list[str] | None = None,
) -> None:
    """The community, the station covering it (None: nobody) and, when given, its fallback
    stations in order (replacing the earlier list)."""
    await conn.execute(
        """INSERT INTO communities (code, name, township_code) VALUES ($1, $2, $3)
           ON CONFLICT (code) DO UPDATE SET name = $2, township_code = $3""",
        code,
        name,
        township_code,
    )
    if station_id is None:
        await conn.execute("DELETE FROM coverage WHERE community_code = $1", code)
    else:
        await conn.execute(
            """INSERT INTO coverage (community_code, station_id) VALUES ($1, $2)
               ON CONFLICT (community_code) DO UPDATE SET station_id = $2""",
            code,
            station_id,
        )
    if fallbacks is not None:
        await conn.execute("DELETE FROM coverage_fallbacks WHERE community_code = $1", code)
        await conn.executemany(
            """INSERT INTO coverage_fallbacks (community_code, position, station_id)
               VALUES ($1, $2, $3)""",
            [(code, position, station) for position, station in enumerate(fallbacks, 1)],
        )


async def set_override(
    conn: Connection, township_code: str, category: str, station_id: str | None
) -> None:
    """All ``category`` orders of the township go to ``station_id`` (None: no override)."""
    if station_id is None:
        await conn.execute(
            "DELETE FROM coverage_overrides WHERE township_code = $1 AND category = $2",
            township_code,
            category,
        )
        return
    await conn.execute(
        """INSERT INTO coverage_overrides (township_code, category, station_id)
           VALUES ($1, $2, $3)
           ON CONFLICT (township_code, category) DO UPDATE SET station_id = $3""",
        township_code,
        category,
        station_id,
    )


class AlreadyExists(Exception):
    """A name that is taken; nothing was changed."""


async def create_integration(
    conn: Connection,
    name: str,
    *,
    callback_secret_key: str,
    rate_limit_per_minute: int | None = None,
    reissue: bool = False,
) -> NewIntegration:
    """Create an integration; its key and callback secret are shown only now. The secret is
    stored encrypted with ``callback_secret_key`` (the center's SWD_CALLBACK_SECRET_KEY).

    With ``reissue``, an existing integration of that name gets a new key and secret instead
    (the demo seed does that on every start).
    """
    key = new_token("swdi")
    secret = secrets.token_hex(32)
    integration_id = name.lower().replace(" ", "-")
    written = await conn.fetchval(
        """INSERT INTO integrations
               (id, name, key_hash, rate_limit_per_minute, callback_secret_encrypted)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET key_hash = EXCLUDED.key_hash,
               callback_secret_encrypted = EXCLUDED.callback_secret_encrypted,
               callback_secret_cleartext = NULL, revoked_at = NULL
           WHERE $6
           RETURNING id""",
        integration_id,
        name,
        token_hash(key),
        rate_limit_per_minute,
        Fernet(callback_secret_key).encrypt(secret.encode()).decode(),
        reissue,
    )
    if written is None:
        raise AlreadyExists(f"integration {integration_id} exists")
    return NewIntegration(id=integration_id, key=key, callback_secret=secret)


async def revoke_integration(conn: Connection, integration_id: str) -> bool:
    status = await conn.execute(
        "UPDATE integrations SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        integration_id,
    )
    return bool(status == "UPDATE 1")


async def create_operator(
    conn: Connection, name: str, role: str = "operator", *, reissue: bool = False
) -> tuple[str, str]:
    """Create an operator (or, with ``reissue``, give an existing one a new token); return
    (id, bearer token). The token is shown only now."""
    token = new_token("swdo")
    operator_id = name.lower().replace(" ", "-")
    written = await conn.fetchval(
        """INSERT INTO operators (id, name, role, token_hash) VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE SET token_hash = EXCLUDED.token_hash, revoked_at = NULL
           WHERE $5
           RETURNING id""",
        operator_id,
        name,
        role,
        token_hash(token),
        reissue,
    )
    if written is None:
        raise AlreadyExists(f"operator {operator_id} exists")
    return operator_id, token
