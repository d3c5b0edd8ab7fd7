"""All of the center's SQL: orders and their changes, routing, timers, callbacks, reference
data, credentials. Functions take a connection (or the pool) and return domain types.

A :class:`~services.dispatch_center.domain.Change` is written by one statement: the order row,
the timeline, a status callback per status change when the integration gave a callback URL,
and the outbox, so they commit together. A new order is inserted with its first changes
(:func:`insert`, no transaction needed); later changes lock the order first (:func:`lock`) and
:func:`write` in the caller's transaction.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from services.dispatch_center.domain import (
    Candidates,
    Change,
    DueCallback,
    Integration,
    Operator,
    Order,
    OrderFilter,
    Scope,
    Station,
    StatusChange,
    TimelineEntry,
    apply,
    distinct_stations,
)
from shared import outbox, topics
from shared.credentials import CredentialTable
from shared.db import Connection, Pool
from shared.domain import (
    BeneficiaryGroup,
    Category,
    OrderStatus,
    Satisfaction,
    Stage,
    Urgency,
    current_deadline_sql,
)
from shared.sql import Params

_ORDER_FIELDS = tuple(f.name for f in fields(Order))


def order_of(row: asyncpg.Record) -> Order:
    values = {name: row[name] for name in _ORDER_FIELDS}
    values["status"] = OrderStatus(values["status"])
    values["category"] = Category(values["category"])
    values["urgency"] = Urgency(values["urgency"])
    values["beneficiary_group"] = BeneficiaryGroup(values["beneficiary_group"])
    values["tried_stations"] = tuple(values["tried_stations"])
    if values["feedback_satisfaction"] is not None:
        values["feedback_satisfaction"] = Satisfaction(values["feedback_satisfaction"])
    return Order(**values)


def _column(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


async def _order_where(conn: Connection, condition: str, *args: Any) -> Order | None:
    row = await conn.fetchrow(f"SELECT * FROM orders WHERE {condition}", *args)  # noqa: S608
    return None if row is None else order_of(row)


async def lock(
    conn: Connection, order_id: uuid.UUID, *, scope: tuple[str, ...] | None = None
) -> Order | None:
    """The order, locked; with an operator's ``scope`` only if it is in it."""
    return await _order_where(
        conn, f"id = $1 AND {in_scope('$2')} FOR UPDATE", order_id, _scope(scope)
    )


# --- an operator's scope -------------------------------------------------------------------


def _scope(scope: tuple[str, ...] | None) -> list[str] | None:
    return None if scope is None else list(scope)


def station_in_scope(scope: str, station: str = "station_id") -> str:
    """SQL: the ``station`` column is one of the text[] parameter ``scope``'s stations; true
    whenever ``scope`` is NULL (an unscoped operator)."""
    return f"({scope}::text[] IS NULL OR {station} = ANY({scope}::text[]))"


def township_in_scope(scope: str, township: str = "township_code") -> str:
    """SQL: the ``township`` column names a township served by a station of the text[]
    parameter ``scope``; true whenever ``scope`` is NULL (an unscoped operator)."""
    served = f"SELECT s.township_code FROM stations s WHERE s.id = ANY({scope}::text[])"  # noqa: S608
    return f"({scope}::text[] IS NULL OR {township} IN ({served}))"


def in_scope(scope: str) -> str:
    """SQL, the one filter of the orders an operator sees: those at a station of the text[]
    parameter ``scope``, and those with no station (unroutable, held) in a township one of
    those stations serves; every order when ``scope`` is NULL."""
    return f"({station_in_scope(scope)} OR (station_id IS NULL AND {township_in_scope(scope)}))"


# --- writing a change ----------------------------------------------------------------------


def _timeline_sql(p: Params, statuses: tuple[StatusChange, ...]) -> str:
    # Sorted before the insert, so the ids (the callbacks' sequence numbers) follow the order
    # of the changes.
    return f"""timeline AS (
        INSERT INTO order_timeline (order_id, status, station_id, at, reason, actor)
        SELECT changed.id, s.status, s.station_id, s.at, s.reason, s.actor
        FROM changed, unnest(
            {p([s.status.value for s in statuses])}::text[],
            {p([s.station_id for s in statuses])}::text[],
            {p([s.at for s in statuses])}::timestamptz[],
            {p([s.reason for s in statuses])}::text[],
            {p([s.actor.text for s in statuses])}::text[]
        ) WITH ORDINALITY AS s(status, station_id, at, reason, actor, position)
        ORDER BY s.position
        RETURNING id, status, station_id, at, reason)"""  # noqa: S608 (parameters only)


# The body of a status callback; its ``sequence`` is the timeline row's id, known only here.
# ``at`` is written in UTC whatever the session's TimeZone.
_STATUS_CALLBACKS_SQL = """status_callbacks AS (
    INSERT INTO callbacks (order_id, integration_id, url, body)
    SELECT changed.id, changed.integration_id, changed.callback_url,
        json_build_object(
            'order_id', changed.id,
            'external_id', changed.external_id,
            'status', timeline.status,
            'station_id', timeline.station_id,
            'reason', timeline.reason,
            'at', to_char(timeline.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'sequence', timeline.id
        )::text
    FROM changed, timeline
    WHERE changed.callback_url IS NOT NULL
    ORDER BY timeline.id)"""


async def _numbered(conn: Connection, change: Change) -> Change:
    """The change with its events numbered (outbox.numbered)."""
    if not change.events:
        return change
    return replace(change, events=tuple(await outbox.numbered(conn, change.events)))


def _statement(write_order: str, p: Params, change: Change) -> str:
    """``write_order`` (an INSERT or UPDATE of the order row) and the change's timeline,
    callbacks and events, each written only if the order row was."""
    parts = [f"changed AS ({write_order} RETURNING id, integration_id, external_id, callback_url)"]
    if change.statuses:
        parts += [_timeline_sql(p, change.statuses), _STATUS_CALLBACKS_SQL]
    if change.events:
        events_sql, args = outbox.insert_sql(
            topics.CENTER_EVENTS,
            change.events,
            first_param=len(p.values) + 1,
            when="EXISTS (SELECT FROM changed)",
        )
        p.values += args
        parts.append(f"events AS ({events_sql})")
    return "WITH " + ",\n".join(parts) + "\nSELECT id FROM changed"


async def insert(conn: Connection, order: Order, change: Change) -> bool:
    """Insert a new order with its first changes; False (and nothing written) when the
    integration sent this external_id before."""
    p = Params()
    change = await _numbered(conn, change)
    row = apply(order, change)
    columns = ", ".join(_ORDER_FIELDS)
    values = ", ".join(p(_column(getattr(row, name))) for name in _ORDER_FIELDS)
    write_order = (
        f"INSERT INTO orders ({columns}) VALUES ({values})"  # noqa: S608 (names from code)
        " ON CONFLICT (integration_id, external_id) DO NOTHING"
    )
    return await conn.fetchval(_statement(write_order, p, change), *p.values) is not None


async def write(conn: Connection, order: Order, change: Change) -> None:
    """Write a change of a locked order; ``order`` as locked, not yet changed since."""
    p = Params()
    change = await _numbered(conn, change)
    assignments = [
        f"{column} = {p(_column(value))}" for column, value in change.values(order).items()
    ]
    if change.statuses:
        assignments.append("updated_at = now()")
    if not assignments:  # events only (a return visit that reached nobody)
        assignments.append("version = version")
    sets = ", ".join(assignments)
    write_order = f"UPDATE orders SET {sets} WHERE id = {p(order.id)}"  # noqa: S608
    await conn.execute(_statement(write_order, p, change), *p.values)


async def mark_received(
    conn: Connection, order_id: uuid.UUID, dispatch_no: int, at: datetime
) -> None:
    """The station has dispatch ``dispatch_no``: it needs no resending."""
    await conn.execute(
        """UPDATE orders SET received_at = $3, next_resend_at = NULL, updated_at = now()
           WHERE id = $1 AND dispatch_no = $2 AND received_at IS NULL""",
        order_id,
        dispatch_no,
        at,
    )


# --- intake --------------------------------------------------------------------------------


async def candidates(
    conn: Connection, community_code: str, category: str, exclude: tuple[str, ...] = ()
) -> Candidates | None:
    """The community's active stations for this category, best first (the township's
    category override, the covering station, the fallbacks in order); None when the community
    is unknown."""
    rows = await conn.fetch(
        """SELECT c.township_code, ranked.station_id
           FROM communities c
           LEFT JOIN LATERAL (
               SELECT r.station_id, r.rank, r.position FROM (
                   SELECT station_id, 0 AS rank, 0 AS position FROM coverage_overrides
                   WHERE township_code = c.township_code AND category = $2
                   UNION ALL
                   SELECT station_id, 1, 0 FROM coverage WHERE community_code = c.code
                   UNION ALL
                   SELECT station_id, 2, position FROM coverage_fallbacks
                   WHERE community_code = c.code
               ) r
               JOIN stations s ON s.id = r.station_id AND s.active
           ) ranked ON true
           WHERE c.code = $1
           ORDER BY ranked.rank, ranked.position""",
        community_code,
        category,
    )
    if not rows:
        return None
    return Candidates(
        township_code=rows[0]["township_code"],
        stations=distinct_stations((r["station_id"] for r in rows), exclude),
    )


async def order_by_external_id(
    conn: Connection, integration_id: str, external_id: str
) -> Order | None:
    return await _order_where(
        conn, "integration_id = $1 AND external_id = $2", integration_id, external_id
    )


async def timeline(conn: Connection, order_id: uuid.UUID) -> list[TimelineEntry]:
    rows = await conn.fetch(
        "SELECT status, at, station_id, reason, actor FROM order_timeline"
        " WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    return [
        TimelineEntry(
            status=OrderStatus(r["status"]),
            at=r["at"],
            station_id=r["station_id"],
            reason=r["reason"],
            actor=r["actor"],
        )
        for r in rows
    ]


# --- operators' reads ----------------------------------------------------------------------

_CURRENT_DEADLINE = current_deadline_sql(
    {
        Stage.DISPATCH: "dispatch_by",
        Stage.ACCEPT: "accept_by",
        Stage.ASSIGN: "assign_by",
        Stage.COMPLETE: "complete_by",
    },
    otherwise="'infinity'::timestamptz",
)
# Open orders past the deadline of the stage they are in.
OVERDUE = f"({_CURRENT_DEADLINE}) < now()"

LIST_ORDERS = f"""SELECT * FROM orders
    WHERE ($1::text IS NULL OR status = $1)
      AND ($2::text IS NULL OR station_id = $2)
      AND ($3::text IS NULL OR urgency = $3)
      AND ($4::boolean IS NULL OR ({OVERDUE}) = $4)
      AND ($5::boolean IS NULL OR awaiting_operator = $5)
      AND ($6::timestamptz IS NULL OR (submitted_at, id) < ($6, $7::uuid))
      AND {in_scope("$9")}
    ORDER BY submitted_at DESC, id DESC
    LIMIT $8"""  # noqa: S608 (constant text, no input)


async def list_orders(
    pool: Pool,
    which: OrderFilter,
    after: tuple[datetime | None, uuid.UUID | None],
    limit: int,
    scope: tuple[str, ...] | None,
) -> list[Order]:
    rows = await pool.fetch(
        LIST_ORDERS,
        which.status,
        which.station_id,
        which.urgency,
        which.overdue,
        which.awaiting_operator,
        *after,
        limit,
        _scope(scope),
    )
    return [order_of(r) for r in rows]


async def order(
    conn: Connection,
    order_id: uuid.UUID,
    integration_id: str | None = None,
    *,
    scope: tuple[str, ...] | None = None,
) -> Order | None:
    """The order; with ``integration_id`` only if it is that integration's, with an
    operator's ``scope`` only if it is in it."""
    return await _order_where(
        conn,
        f"id = $1 AND ($2::text IS NULL OR integration_id = $2) AND {in_scope('$3')}",
        order_id,
        integration_id,
        _scope(scope),
    )


async def station_active(conn: Connection, station_id: str) -> bool:
    return bool(await conn.fetchval("SELECT active FROM stations WHERE id = $1", station_id))


async def community_township(conn: Connection, code: str) -> str | None:
    """The community's township; None: no such community yet."""
    township: str | None = await conn.fetchval(
        "SELECT township_code FROM communities WHERE code = $1", code
    )
    return township


async def scope_of(conn: Connection, operator: Operator) -> Scope:
    """The operator's scope as it stands: their stations and the townships those serve."""
    if operator.stations is None:
        return Scope(None, None)
    rows = await conn.fetch(
        "SELECT DISTINCT township_code FROM stations WHERE id = ANY($1)", list(operator.stations)
    )
    return Scope(frozenset(operator.stations), frozenset(r["township_code"] for r in rows))


async def unknown_stations(conn: Connection, station_ids: list[str]) -> list[str]:
    rows = await conn.fetch("SELECT id FROM stations WHERE id = ANY($1)", station_ids)
    known = {r["id"] for r in rows}
    return [s for s in station_ids if s not in known]


async def stations(pool: Pool, scope: tuple[str, ...] | None) -> list[Station]:
    """The stations (with an operator's ``scope``: those in it)."""
    rows = await pool.fetch(
        "SELECT id, name, township_code, active FROM stations"  # noqa: S608 (parameters only)
        f" WHERE {station_in_scope('$1', 'id')} ORDER BY id",
        _scope(scope),
    )
    return [Station(**dict(r)) for r in rows]


async def coverage(
    pool: Pool, scope: tuple[str, ...] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(communities with their station and fallbacks, category overrides); with an
    operator's ``scope`` those of the townships its stations serve."""
    communities = await pool.fetch(
        f"""SELECT c.code, c.name, c.township_code, cov.station_id,
               coalesce(array_agg(f.station_id ORDER BY f.position)
                        FILTER (WHERE f.station_id IS NOT NULL), '{{}}') AS fallbacks
           FROM communities c
           LEFT JOIN coverage cov ON cov.community_code = c.code
           LEFT JOIN coverage_fallbacks f ON f.community_code = c.code
           WHERE {township_in_scope("$1", "c.township_code")}
           GROUP BY c.code, c.name, c.township_code, cov.station_id
           ORDER BY c.code""",  # noqa: S608 (parameters only)
        _scope(scope),
    )
    overrides = await pool.fetch(
        "SELECT township_code, category, station_id FROM coverage_overrides"  # noqa: S608
        f" WHERE {township_in_scope('$1')} ORDER BY township_code, category",
        _scope(scope),
    )
    return [dict(r) for r in communities], [dict(r) for r in overrides]


async def integrations(pool: Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT id, name, rate_limit_per_minute, created_at, revoked_at FROM integrations"
        " ORDER BY id"
    )
    return [dict(r) for r in rows]


async def operators(pool: Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT id, name, role, stations, created_at, revoked_at FROM operators ORDER BY id"
    )
    return [dict(r) for r in rows]


# --- reference data and credentials --------------------------------------------------------


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


async def put_integration(
    conn: Connection,
    integration_id: str,
    name: str,
    key_hash: str,
    rate_limit_per_minute: int | None,
    secret_encrypted: str,
    *,
    reissue: bool,
    expires_at: datetime | None = None,
) -> bool | None:
    """Insert the integration (True) or, with ``reissue``, replace its key and secret (False);
    None when it exists and ``reissue`` is not set, or its name is taken."""
    try:
        written: bool | None = await conn.fetchval(
            """INSERT INTO integrations (id, name, key_hash, rate_limit_per_minute,
                   callback_secret_encrypted, expires_at)
               VALUES ($1, $2, $3, $4, $5, $7)
               ON CONFLICT (id) DO UPDATE SET key_hash = EXCLUDED.key_hash,
                   callback_secret_encrypted = EXCLUDED.callback_secret_encrypted,
                   callback_secret_cleartext = NULL, revoked_at = NULL,
                   expires_at = EXCLUDED.expires_at, previous_hash = NULL
               WHERE $6
               RETURNING xmax = 0""",
            integration_id,
            name,
            key_hash,
            rate_limit_per_minute,
            secret_encrypted,
            reissue,
            expires_at,
        )
    except asyncpg.UniqueViolationError:
        return None
    return written


async def revoke_credential(
    conn: Connection, table: CredentialTable, credential_id: str
) -> dict[str, Any] | None:
    """An operator's token or an integration's key revoked: its row; None when there is no
    such active one."""
    row = await conn.fetchrow(table.revocation(), credential_id)
    return None if row is None else dict(row)


async def put_operator(
    conn: Connection,
    operator_id: str,
    name: str,
    role: str,
    token_hash: str,
    stations: tuple[str, ...] | None,
    *,
    reissue: bool,
    expires_at: datetime | None = None,
) -> bool | None:
    """A new operator (True); with ``reissue`` an existing one gets the new token and scope
    (False); None when it exists and ``reissue`` is not set."""
    written: bool | None = await conn.fetchval(
        """INSERT INTO operators (id, name, role, token_hash, stations, expires_at)
           VALUES ($1, $2, $3, $4, $6, $7)
           ON CONFLICT (id) DO UPDATE
           SET token_hash = EXCLUDED.token_hash, stations = EXCLUDED.stations, revoked_at = NULL,
               expires_at = EXCLUDED.expires_at, previous_hash = NULL
           WHERE $5
           RETURNING xmax = 0""",
        operator_id,
        name,
        role,
        token_hash,
        reissue,
        _scope(stations),
        expires_at,
    )
    return written


async def rotate_credential(
    conn: Connection,
    table: CredentialTable,
    credential_id: str,
    new_hash: str,
    overlap: timedelta,
    expires_at: datetime | None,
) -> dict[str, Any] | None:
    """An operator's token or an integration's key replaced (the old one working for the
    ``overlap``): its row; None when there is no such active one."""
    row = await conn.fetchrow(table.rotation(), credential_id, new_hash, overlap, expires_at)
    return None if row is None else dict(row)


# --- callers -------------------------------------------------------------------------------

OPERATORS = CredentialTable("operators")
OPERATOR_COLUMNS = "id, name, role, stations"
INTEGRATIONS = CredentialTable("integrations", hash_column="key_hash", scheme="ApiKey")


def operator_of(row: Mapping[str, Any]) -> Operator:
    stations = row["stations"]
    return Operator(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        stations=None if stations is None else tuple(stations),
    )


async def count_request(
    pool: Pool, key_hash: str, window: datetime
) -> tuple[Integration, int | None, int, dict[str, Any]] | None:
    """The integration with this key (or its previous key, within a rotation's overlap), its
    own rate limit, its requests in ``window`` with this one counted, and its credential row
    (for :func:`shared.credentials.accepted`); None (and nothing counted) for an unknown or
    revoked key."""
    found = await pool.fetchrow(
        f"""WITH integration AS ({INTEGRATIONS.lookup("id, name, rate_limit_per_minute")}),
           counted AS (
               INSERT INTO rate_limit_windows (integration_id, window_start, requests)
               SELECT id, $2, 1 FROM integration
               ON CONFLICT (integration_id, window_start)
               DO UPDATE SET requests = rate_limit_windows.requests + 1
               RETURNING requests)
           SELECT integration.*, requests FROM integration, counted""",  # noqa: S608
        key_hash,
        window,
    )
    if found is None:
        return None
    row = dict(found)
    integration = Integration(id=row["id"], name=row["name"])
    return integration, row["rate_limit_per_minute"], row["requests"], row


async def forget_old_rate_windows(pool: Pool) -> None:
    await pool.execute(
        "DELETE FROM rate_limit_windows WHERE window_start < now() - interval '10 minutes'"
    )


# --- timers --------------------------------------------------------------------------------

TIMER_BATCH = 100  # the LIMIT of the queries below


async def due_resends(conn: Connection, now: datetime) -> list[Order]:
    """Unacknowledged dispatches due for a re-send, locked."""
    rows = await conn.fetch(
        """SELECT * FROM orders
           WHERE next_resend_at <= $1 AND status = 'dispatched' AND received_at IS NULL
           ORDER BY next_resend_at LIMIT 100 FOR UPDATE SKIP LOCKED""",
        now,
    )
    return [order_of(r) for r in rows]


async def postpone_resend(conn: Connection, order_id: uuid.UUID, when: datetime) -> None:
    await conn.execute("UPDATE orders SET next_resend_at = $2 WHERE id = $1", order_id, when)


async def due_escalations(conn: Connection, now: datetime) -> list[Order]:
    """Dispatches not accepted in time, locked."""
    rows = await conn.fetch(
        """SELECT * FROM orders
           WHERE accept_due_at <= $1 AND status = 'dispatched'
           ORDER BY accept_due_at LIMIT 100 FOR UPDATE SKIP LOCKED""",
        now,
    )
    return [order_of(r) for r in rows]


async def postpone_escalation(conn: Connection, order_id: uuid.UUID, when: datetime) -> None:
    await conn.execute("UPDATE orders SET accept_due_at = $2 WHERE id = $1", order_id, when)


async def due_feedback(conn: Connection, now: datetime) -> list[Order]:
    """Orders whose return visit did not come in time, locked."""
    rows = await conn.fetch(
        """SELECT * FROM orders
           WHERE feedback_due_at <= $1 AND status = 'awaiting_feedback'
           ORDER BY feedback_due_at LIMIT 100 FOR UPDATE SKIP LOCKED""",
        now,
    )
    return [order_of(r) for r in rows]


async def postpone_feedback(conn: Connection, order_id: uuid.UUID, when: datetime) -> None:
    await conn.execute("UPDATE orders SET feedback_due_at = $2 WHERE id = $1", order_id, when)


# --- status callbacks ----------------------------------------------------------------------


async def claim_callbacks(
    pool: Pool, lease_s: float, limit: int, per_integration: int, busy: Tally[str]
) -> list[DueCallback]:
    """Lease up to ``limit`` due callbacks for ``lease_s``, at most ``per_integration`` for
    each integration counting its ``busy`` ones, none of a revoked integration."""
    rows = await pool.fetch(
        """UPDATE callbacks c
           SET next_attempt_at = now() + make_interval(secs => $1), attempts = c.attempts + 1
           FROM (SELECT picked.id FROM integrations i
                 CROSS JOIN LATERAL (
                     SELECT d.id, d.next_attempt_at FROM callbacks d
                     WHERE d.integration_id = i.id
                       AND d.delivered_at IS NULL AND d.given_up_at IS NULL
                       AND d.next_attempt_at <= now()
                       AND NOT EXISTS (
                           SELECT 1 FROM callbacks e
                           WHERE e.order_id = d.order_id AND e.id < d.id
                             AND e.delivered_at IS NULL AND e.given_up_at IS NULL)
                     ORDER BY d.next_attempt_at
                     LIMIT greatest($3 - coalesce(
                         (SELECT b.n FROM unnest($4::text[], $5::int[]) AS b (id, n)
                          WHERE b.id = i.id), 0), 0)
                     FOR UPDATE OF d SKIP LOCKED) picked
                 WHERE i.revoked_at IS NULL
                 ORDER BY picked.next_attempt_at LIMIT $2) due
           WHERE c.id = due.id
           RETURNING c.id, c.integration_id, c.url, c.body, c.attempts,
               (SELECT callback_secret_encrypted FROM integrations i
                WHERE i.id = c.integration_id) AS secret""",
        lease_s,
        limit,
        per_integration,
        list(busy),
        list(busy.values()),
    )
    return [DueCallback(**dict(r)) for r in rows]


async def give_up_revoked_callbacks(pool: Pool) -> int:
    """A revoked integration gets no more callbacks; how many were given up."""
    status = await pool.execute(
        """UPDATE callbacks c SET given_up_at = now() FROM integrations i
           WHERE i.id = c.integration_id AND i.revoked_at IS NOT NULL
             AND c.delivered_at IS NULL AND c.given_up_at IS NULL"""
    )
    return int(status.split()[-1])


async def record_attempt(
    pool: Pool,
    callback: DueCallback,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    retry_after: timedelta | None,
) -> None:
    """The attempt's outcome; the callback delivered (no error), given up (no
    ``retry_after``) or tried again after ``retry_after``."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO callback_attempts
                   (callback_id, attempt, outcome, http_status, error, duration_ms)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            callback.id,
            callback.attempts,
            "failed" if error else "delivered",
            status_code,
            error,
            duration_ms,
        )
        if error is None:
            await conn.execute(
                "UPDATE callbacks SET delivered_at = now() WHERE id = $1", callback.id
            )
        elif retry_after is None:
            await conn.execute(
                "UPDATE callbacks SET given_up_at = now() WHERE id = $1", callback.id
            )
        else:
            await conn.execute(
                "UPDATE callbacks SET next_attempt_at = now() + $2 WHERE id = $1",
                callback.id,
                retry_after,
            )


async def cleartext_secrets(pool: Pool) -> list[tuple[str, str]]:
    """(integration id, secret) of secrets written in clear before they were kept encrypted
    (migration 0003)."""
    rows = await pool.fetch(
        "SELECT id, callback_secret_cleartext AS secret FROM integrations"
        " WHERE callback_secret_cleartext IS NOT NULL"
    )
    return [(r["id"], r["secret"]) for r in rows]


async def encrypt_secret(pool: Pool, integration_id: str, cleartext: str, encrypted: str) -> None:
    await pool.execute(
        """UPDATE integrations
           SET callback_secret_encrypted = $2, callback_secret_cleartext = NULL
           WHERE id = $1 AND callback_secret_cleartext = $3""",
        integration_id,
        encrypted,
        cleartext,
    )
