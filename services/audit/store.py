"""All of the audit's storage: the trail, the projection tables (orders, dispatches,
breaches), readers, the figures' queries, and the signed checkpoint file kept outside the
database."""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import fields
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.audit.domain import (
    AUDIT_OWN,
    FOLLOW_UP,
    LEGACY_SHA256,
    STAGE_DONE,
    STEP_TIMES,
    Breach,
    Checkpoint,
    Dispatch,
    Feedback,
    FollowUp,
    Link,
    ReaderRole,
    RedoRound,
    Review,
    Row,
    Stint,
    Timeline,
)
from shared.credentials import CredentialTable
from shared.db import Connection, Pool
from shared.domain import OrderStatus, Satisfaction, Stage
from shared.locks import LockNamespace

NONE = "none"  # the station label of what belongs to no station (yet)
_CHECKPOINT_LOCK = f"{int(LockNamespace.AUDIT_CHECKPOINT)}, 0"

# -- Readers --------------------------------------------------------------------------------

READERS = CredentialTable("readers")
READER_COLUMNS = "id, role, station_id, coalesce(stations, '{}') AS stations"


async def insert_reader(
    conn: Connection,
    reader: tuple[str, str, ReaderRole, str | None, Sequence[str] | None],
    token_hash: str,
    expires_at: datetime | None = None,
) -> bool:
    """Add the reader (id, name, role, station, supervised stations); False, and nothing
    changed, when the id is taken."""
    reader_id, name, role, station_id, stations = reader
    added = await conn.fetchval(
        """INSERT INTO readers (id, name, role, station_id, stations, token_hash, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING id""",
        reader_id,
        name,
        role,
        station_id,
        list(stations) if stations else None,
        token_hash,
        expires_at,
    )
    return added is not None


async def replace_reader_token(
    conn: Connection,
    reader_id: str,
    token_hash: str,
    overlap: timedelta = timedelta(0),
    expires_at: datetime | None = None,
) -> dict[str, Any] | None:
    """The reader's row; None when there is no such reader, or their access was revoked."""
    row = await conn.fetchrow(READERS.rotation(), reader_id, token_hash, overlap, expires_at)
    return None if row is None else dict(row)


async def revoke_reader(conn: Connection, reader_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(READERS.revocation(), reader_id)
    return None if row is None else dict(row)


# -- The trail ------------------------------------------------------------------------------


async def hold_off_checkpoints(conn: Connection) -> None:
    """Called by each append, in its transaction, before it takes a seq: the checkpoint writer
    waits for it to end."""
    await conn.execute(f"SELECT pg_advisory_xact_lock_shared({_CHECKPOINT_LOCK})")


async def lock_orders(conn: Connection, order_ids: list[uuid.UUID]) -> None:
    """One writer per order at a time, until the transaction ends. Sorted ids keep two writers
    that lock overlapping sets from deadlocking."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock($2, hashtext(id::text))
           FROM (SELECT unnest($1::uuid[]) AS id ORDER BY 1) AS ids""",
        order_ids,
        LockNamespace.AUDIT_ORDER,
    )


async def last_hashes(conn: Connection, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The hash of each order's last trail entry (orders with none left out)."""
    return {
        row["order_id"]: row["hash"]
        for row in await conn.fetch(
            """SELECT DISTINCT ON (order_id) order_id, hash FROM trail
               WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, seq DESC""",
            order_ids,
        )
    }


async def append(conn: Connection, links: Sequence[Link]) -> None:
    await conn.executemany(
        """INSERT INTO trail (order_id, event_id, event_type, occurred_at, station_id, event,
               prev_hash, hash, hash_version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [_values(x) for x in links],
    )


async def trail_events(
    conn: Connection, order_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Each order's events, in trail order (an order with none maps to [])."""
    trails: dict[uuid.UUID, list[dict[str, Any]]] = {order_id: [] for order_id in order_ids}
    for row in await conn.fetch(
        "SELECT order_id, event FROM trail WHERE order_id = ANY($1::uuid[]) ORDER BY seq",
        list(trails),
    ):
        trails[row["order_id"]].append(row["event"])
    return trails


async def trail_orders(pool: Pool) -> list[uuid.UUID]:
    return [r["order_id"] for r in await pool.fetch("SELECT DISTINCT order_id FROM trail")]


async def trail_of(pool: Pool, order_id: uuid.UUID) -> list[dict[str, Any]]:
    """One order's entries as they happened."""
    return [
        dict(r)
        for r in await pool.fetch(
            """SELECT seq, event_id, event_type, occurred_at, recorded_at, station_id, event,
                      prev_hash, hash
               FROM trail WHERE order_id = $1 ORDER BY occurred_at, seq""",
            order_id,
        )
    ]


# -- Verification (in the caller's repeatable-read transaction) -----------------------------


async def first_keyed_seq(conn: Connection) -> int | None:
    seq: int | None = await conn.fetchval(
        "SELECT min(seq) FROM trail WHERE hash_version <> $1", LEGACY_SHA256
    )
    return seq


async def chains(conn: Connection) -> AsyncIterator[Row]:
    """Every entry, order by order, each order's in seq order."""
    async for row in conn.cursor(
        """SELECT seq, order_id, event_id, event_type, occurred_at, station_id, event,
                  prev_hash, hash, hash_version
           FROM trail ORDER BY order_id, seq"""
    ):
        yield row


async def hashes(
    conn: Connection, after: int | None = None, upto: int | None = None
) -> AsyncIterator[Row]:
    """``(seq, hash)`` of the entries with ``after < seq <= upto`` (None: no bound), in seq
    order."""
    async for row in conn.cursor(
        """SELECT seq, hash FROM trail
           WHERE ($1::bigint IS NULL OR seq > $1) AND ($2::bigint IS NULL OR seq <= $2)
           ORDER BY seq""",
        after,
        upto,
    ):
        yield row


async def applied_but_missing(conn: Connection, consumer: str) -> list[uuid.UUID]:
    """Events the inbox says were applied that have no trail entry."""
    return [
        r["event_id"]
        for r in await conn.fetch(
            """SELECT i.event_id FROM inbox i
               WHERE i.consumer = $1
                 AND NOT EXISTS (SELECT 1 FROM trail t WHERE t.event_id = i.event_id)""",
            consumer,
        )
    ]


async def not_in_inbox(conn: Connection, consumer: str) -> list[Row]:
    """Entries no applied event accounts for (the audit's own entries, a review or a closed
    supervision, come from no topic: their record is the audit's table of them)."""
    return list(
        await conn.fetch(
            """SELECT t.order_id, t.seq, t.event_id FROM trail t
               WHERE NOT EXISTS (
                   SELECT 1 FROM inbox i WHERE i.consumer = $1 AND i.event_id = t.event_id)
                 AND NOT (t.event_type = ANY($2::text[]) AND (
                     EXISTS (SELECT 1 FROM reviews r WHERE r.event_id = t.event_id)
                     OR EXISTS (SELECT 1 FROM supervision_closes c
                                WHERE c.event_id = t.event_id)))
               ORDER BY t.seq""",
            consumer,
            sorted(AUDIT_OWN),
        )
    )


async def checkpoint_horizon(conn: Connection) -> int:
    """The last seq, taken while no append is in progress: none at or below it can commit
    afterwards."""
    async with conn.transaction():
        await conn.execute(f"SELECT pg_advisory_xact_lock({_CHECKPOINT_LOCK})")
        horizon: int = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM trail")
    return horizon


# -- The projection tables ------------------------------------------------------------------

_STAGE_DEADLINE_DONE = ", ".join(
    f"('{stage.value}', o.{stage.value}_by, o.{done})" for stage, done in STAGE_DONE.items()
)


# The columns of the orders table that hold the timeline's fields of the same name.
_ORDER_FIELDS = (
    "station_id",
    "worker_id",
    "category",
    "urgency",
    "submitted_at",
    *STEP_TIMES,
)


# The loop's scalar columns of the orders table, of the timeline's fields of the same name.
_LOOP_FIELDS = (
    "last_event_at",
    "feedback_due_at",
    "send_backs",
    "supervision_opened_at",
    "supervision_station_id",
    "supervision_closed_at",
)
_REVIEW_FIELDS = ("timeliness", "professional_quality", "record_completeness")


def _values(row: Link | Dispatch | Feedback | RedoRound | Stint | FollowUp) -> tuple[Any, ...]:
    """A dataclass's fields in order: its table's columns in order."""
    return tuple(getattr(row, f.name) for f in fields(row))


async def save_timelines(conn: Connection, timelines: dict[uuid.UUID, Timeline]) -> None:
    await conn.execute("DELETE FROM orders WHERE order_id = ANY($1::uuid[])", list(timelines))
    await conn.executemany(
        """INSERT INTO orders (order_id, status, station_id, worker_id, category, urgency,
               submitted_at, dispatched_at, received_at, accepted_at, assigned_at, started_at,
               completed_at, ended_at, dispatch_by, accept_by, assign_by, complete_by,
               dispatches, rejections, escalations, events, last_event_at, feedback_due_at,
               send_backs, supervision_opened_at, supervision_station_id,
               supervision_closed_at, reviewer_id, reviewed_at, review_timeliness,
               review_professional_quality, review_record_completeness)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
               $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)""",
        [
            (
                order_id,
                t.status,
                *(getattr(t, name) for name in _ORDER_FIELDS),
                *(t.deadlines.get(stage) for stage in Stage),
                len(t.dispatches),
                t.rejections,
                t.escalations,
                t.events,
                *(getattr(t, name) for name in _LOOP_FIELDS),
                t.review and t.review.reviewer_id,
                t.review and t.review.at,
                *(t.review and getattr(t.review, name) for name in _REVIEW_FIELDS),
            )
            for order_id, t in timelines.items()
        ],
    )
    await conn.executemany(
        """INSERT INTO dispatches (order_id, dispatch_no, station_id, dispatched_at, reason,
               received_at, rejected_at, reject_reason_code, send_back_no)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [(order_id, *_values(x)) for order_id, t in timelines.items() for x in t.dispatches],
    )
    await conn.executemany(
        """INSERT INTO feedbacks (order_id, n, at, source, resolved, satisfaction)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (order_id, n, *_values(x))
            for order_id, t in timelines.items()
            for n, x in enumerate(t.feedbacks, 1)
        ],
    )
    await conn.executemany(
        """INSERT INTO redos (order_id, send_back_no, dispatch_no, station_id, dispatched_at,
               reason, accept_by, complete_by, accepted_at, completed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        [(order_id, *_values(x)) for order_id, t in timelines.items() for x in t.redos],
    )
    await conn.executemany(
        """INSERT INTO stints (order_id, n, dispatch_no, round, station_id, dispatched_at,
               accept_by, assign_by, complete_by, accepted_at, assigned_at, completed_at,
               ended_at, "end", worker_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)""",
        [(order_id, *_values(x)) for order_id, t in timelines.items() for x in t.stints],
    )
    await conn.executemany(
        """INSERT INTO follow_ups (order_id, n, station_id, worker_id, set_at, due_on, done_on,
               done_at, superseded_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [(order_id, *_values(x)) for order_id, t in timelines.items() for x in t.follow_ups],
    )


async def record_breaches(
    conn: Connection, breaches: Sequence[tuple[uuid.UUID, Breach, Timeline]]
) -> None:
    """Record each (order, stage, round) breach once, when first seen."""
    await conn.executemany(
        """INSERT INTO breaches (order_id, stage, round, station_id, urgency, deadline)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        [
            (order_id, b.stage, b.round, t.station_id, t.urgency, b.deadline)
            for order_id, b, t in breaches
        ],
    )


async def record_open_breaches(conn: Connection) -> int:
    """Record the breach of every stage whose deadline has passed on an open order while the
    stage is still not done (a redo's too), and of every follow-up still owed after the end of
    its due day (UTC), open order or not; return how many are new."""
    new = 0
    for statement in (
        f"""INSERT INTO breaches (order_id, stage, station_id, urgency, deadline)
            SELECT o.order_id, s.stage, o.station_id, o.urgency, s.deadline
            FROM orders o CROSS JOIN LATERAL (VALUES {_STAGE_DEADLINE_DONE})
                 AS s(stage, deadline, done_at)
            WHERE o.ended_at IS NULL AND o.completed_at IS NULL AND s.done_at IS NULL
              AND s.deadline < now()
            ON CONFLICT DO NOTHING""",  # noqa: S608
        """INSERT INTO breaches (order_id, stage, round, station_id, urgency, deadline)
           SELECT o.order_id, s.stage, r.send_back_no, o.station_id, o.urgency, s.deadline
           FROM orders o JOIN redos r USING (order_id)
                CROSS JOIN LATERAL (VALUES ('accept', r.accept_by, r.accepted_at),
                                           ('complete', r.complete_by, r.completed_at))
                AS s(stage, deadline, done_at)
           WHERE o.ended_at IS NULL AND s.done_at IS NULL AND s.deadline < now()
           ON CONFLICT DO NOTHING""",
        f"""INSERT INTO breaches (order_id, stage, round, station_id, urgency, deadline)
            SELECT o.order_id, '{FOLLOW_UP}', f.n, f.station_id, o.urgency,
                   (f.due_on + 1)::timestamp AT TIME ZONE 'UTC'
            FROM orders o JOIN follow_ups f USING (order_id)
            WHERE f.done_on IS NULL AND f.superseded_at IS NULL
              AND (f.due_on + 1)::timestamp AT TIME ZONE 'UTC' < now()
            ON CONFLICT DO NOTHING""",  # noqa: S608
    ):
        new += int((await conn.execute(statement)).split()[-1])
    return new


async def load_timelines(
    conn: Connection,
    *,
    order_id: uuid.UUID | None = None,
    submitted_from: datetime | None = None,
    submitted_to: datetime | None = None,
    stations: Collection[str] | None = None,
    active_in: tuple[datetime, datetime] | None = None,
) -> list[Timeline]:
    """Projected orders: one, or those submitted in ``[submitted_from, submitted_to)``, or
    those with something to count in ``active_in`` (submitted before its end, and with an
    event in or after it, or still open, or owing a follow-up); with ``stations``, only the
    orders those stations hold or were ever sent."""
    active_from, active_to = active_in or (None, None)
    rows = await conn.fetch(
        """SELECT * FROM orders o
           WHERE ($1::uuid IS NULL OR o.order_id = $1)
             AND ($2::timestamptz IS NULL OR o.submitted_at >= $2)
             AND ($3::timestamptz IS NULL OR o.submitted_at < $3)
             AND ($4::text[] IS NULL OR o.station_id = ANY($4) OR EXISTS (
                 SELECT 1 FROM dispatches d
                 WHERE d.order_id = o.order_id AND d.station_id = ANY($4)))
             AND ($5::timestamptz IS NULL OR (o.submitted_at < $6 AND (
                 o.ended_at IS NULL OR o.last_event_at >= $5 OR EXISTS (
                     SELECT 1 FROM follow_ups f WHERE f.order_id = o.order_id
                        AND f.done_on IS NULL AND f.superseded_at IS NULL))))
           ORDER BY o.submitted_at, o.order_id""",
        order_id,
        submitted_from,
        submitted_to,
        None if stations is None else list(stations),
        active_from,
        active_to,
    )
    ids = [r["order_id"] for r in rows]
    sent: dict[uuid.UUID, list[Dispatch]] = {}
    for d in await conn.fetch(
        """SELECT order_id, dispatch_no, station_id, dispatched_at, reason, received_at,
                  rejected_at, reject_reason_code, send_back_no
           FROM dispatches WHERE order_id = ANY($1::uuid[]) ORDER BY dispatch_no""",
        ids,
    ):
        values = dict(d)
        sent.setdefault(values.pop("order_id"), []).append(Dispatch(**values))
    answers: dict[uuid.UUID, list[Feedback]] = {}
    for f in await conn.fetch(
        """SELECT order_id, at, source, resolved, satisfaction FROM feedbacks
           WHERE order_id = ANY($1::uuid[]) ORDER BY n""",
        ids,
    ):
        satisfaction = Satisfaction(f["satisfaction"]) if f["satisfaction"] else None
        answers.setdefault(f["order_id"], []).append(
            Feedback(f["at"], f["source"], f["resolved"], satisfaction)
        )
    redos: dict[uuid.UUID, list[RedoRound]] = {}
    for r in await conn.fetch(
        "SELECT * FROM redos WHERE order_id = ANY($1::uuid[]) ORDER BY send_back_no", ids
    ):
        values = dict(r)
        redos.setdefault(values.pop("order_id"), []).append(RedoRound(**values))
    stints: dict[uuid.UUID, list[Stint]] = {}
    for r in await conn.fetch(
        "SELECT * FROM stints WHERE order_id = ANY($1::uuid[]) ORDER BY n", ids
    ):
        values = dict(r)
        stints.setdefault(values.pop("order_id"), []).append(Stint(**values))
    follow_ups: dict[uuid.UUID, list[FollowUp]] = {}
    for f in await conn.fetch(
        "SELECT * FROM follow_ups WHERE order_id = ANY($1::uuid[]) ORDER BY n", ids
    ):
        values = dict(f)
        follow_ups.setdefault(values.pop("order_id"), []).append(FollowUp(**values))
    return [
        _timeline(
            r,
            dispatches=tuple(sent.get(r["order_id"], ())),
            feedbacks=tuple(answers.get(r["order_id"], ())),
            redos=tuple(redos.get(r["order_id"], ())),
            stints=tuple(stints.get(r["order_id"], ())),
            follow_ups=tuple(follow_ups.get(r["order_id"], ())),
        )
        for r in rows
    ]


def _timeline(r: Row, **children: Any) -> Timeline:
    review = None
    if r["reviewed_at"] is not None:
        review = Review(
            r["reviewer_id"],
            r["reviewed_at"],
            *(r[f"review_{name}"] for name in _REVIEW_FIELDS),
        )
    return Timeline(
        order_id=str(r["order_id"]),
        status=OrderStatus(r["status"]) if r["status"] else None,
        **{
            name: r[name]
            for name in (*_ORDER_FIELDS, "rejections", "escalations", "events", *_LOOP_FIELDS)
        },
        deadlines={stage: r[f"{stage.value}_by"] for stage in Stage if r[f"{stage.value}_by"]},
        review=review,
        **children,
    )


# -- Snapshots of closed months' evaluations -----------------------------------------------


async def first_submitted(conn: Connection) -> datetime | None:
    found: datetime | None = await conn.fetchval("SELECT min(submitted_at) FROM orders")
    return found


async def snapshot_months(conn: Connection) -> set[date]:
    rows = await conn.fetch("SELECT DISTINCT month FROM evaluation_snapshots")
    return {r["month"] for r in rows}


async def insert_snapshot(conn: Connection, month: date, rows: Sequence[tuple[str, Any]]) -> bool:
    """Keep the month's figures (station id, JSON-ready figures); False when another replica
    kept them first (theirs stay)."""
    status = await conn.execute(
        """INSERT INTO evaluation_snapshots (month, station_id, figures)
           SELECT $1, station_id, figures
           FROM unnest($2::text[], $3::jsonb[]) AS x(station_id, figures)
           ON CONFLICT DO NOTHING""",
        month,
        [station for station, _ in rows],
        [figures for _, figures in rows],
    )
    return status != "INSERT 0 0"


async def snapshot(conn: Connection, month: date) -> tuple[datetime, dict[str, Any]] | None:
    """When the month's snapshot was made and its figures by station id; None: not made."""
    rows = await conn.fetch(
        "SELECT station_id, figures, made_at FROM evaluation_snapshots WHERE month = $1", month
    )
    if not rows:
        return None
    return min(r["made_at"] for r in rows), {r["station_id"]: r["figures"] for r in rows}


# -- Reviews and supervision (the audit's own records) --------------------------------------


async def insert_review(
    conn: Connection, order_id: uuid.UUID, event_id: uuid.UUID, review: dict[str, Any]
) -> bool:
    """False, and nothing written, when the order has a review already."""
    added = await conn.fetchval(
        """INSERT INTO reviews (order_id, event_id, station_id, reviewer_id, timeliness,
               professional_quality, record_completeness, comment)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id) DO NOTHING
           RETURNING true""",
        order_id,
        event_id,
        review["station_id"],
        review["reviewer_id"],
        review["timeliness"],
        review["professional_quality"],
        review["record_completeness"],
        review.get("comment"),
    )
    return added is not None


async def insert_supervision_close(
    conn: Connection,
    order_id: uuid.UUID,
    event_id: uuid.UUID,
    station_id: str,
    supervisor_id: str,
    note: str,
) -> bool:
    """False, and nothing written, when the order's supervision was closed already."""
    added = await conn.fetchval(
        """INSERT INTO supervision_closes (order_id, event_id, station_id, supervisor_id, note)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING RETURNING true""",
        order_id,
        event_id,
        station_id,
        supervisor_id,
        note,
    )
    return added is not None


async def supervisions(
    conn: Connection,
    stations: Collection[str] | None,
    *,
    open_only: bool,
    order_id: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """Orders under supervision (or ever, without ``open_only``) whose supervision is of one
    of ``stations`` (None: all; ``order_id``: that one only), oldest first."""
    return [
        dict(r)
        for r in await conn.fetch(
            """SELECT o.order_id, o.supervision_station_id AS station_id, o.status, o.send_backs,
                      o.supervision_opened_at, o.supervision_closed_at, c.supervisor_id
               FROM orders o LEFT JOIN supervision_closes c USING (order_id)
               WHERE o.supervision_opened_at IS NOT NULL
                 AND ($1::text[] IS NULL OR o.supervision_station_id = ANY($1))
                 AND (NOT $2 OR o.supervision_closed_at IS NULL)
                 AND ($3::uuid IS NULL OR o.order_id = $3)
               ORDER BY o.supervision_opened_at, o.order_id""",
            None if stations is None else list(stations),
            open_only,
            order_id,
        )
    ]


# -- The figures ----------------------------------------------------------------------------
# Any stage past its deadline and not done (not only the current one): of the first service
# while it is not completed, and of a redo's accept or completion.
_FIRST_OVERDUE = " OR ".join(
    f"({done} IS NULL AND {stage.value}_by < now())" for stage, done in STAGE_DONE.items()
)
OVERDUE = f"""(completed_at IS NULL AND ({_FIRST_OVERDUE})) OR EXISTS (
    SELECT 1 FROM redos r WHERE r.order_id = orders.order_id
      AND ((r.accepted_at IS NULL AND r.accept_by < now())
           OR (r.completed_at IS NULL AND r.complete_by < now())))"""  # noqa: S608


async def event_counts(conn: Connection) -> list[Row]:
    """``event_type, urgency, station, n``."""
    return list(
        await conn.fetch(
            f"""SELECT t.event_type, coalesce(o.urgency, 'unknown') AS urgency,
                       coalesce(t.station_id, '{NONE}') AS station, count(*) AS n
                FROM trail t LEFT JOIN orders o USING (order_id) GROUP BY 1, 2, 3"""  # noqa: S608
        )
    )


async def stage_durations(conn: Connection, stage: Stage, buckets: Sequence[float]) -> list[Row]:
    """``urgency, bucket, n, total`` of the seconds from submission until ``stage`` was done,
    by urgency and ``width_bucket`` of ``buckets``."""
    done = STAGE_DONE[stage]
    return list(
        await conn.fetch(
            f"""SELECT urgency, width_bucket(d, $1::float8[]) AS bucket, count(*) AS n,
                       sum(d) AS total
                FROM (SELECT urgency,
                             greatest(extract(epoch FROM {done} - submitted_at), 0)::float8 AS d
                      FROM orders WHERE {done} IS NOT NULL AND submitted_at IS NOT NULL
                        AND urgency IS NOT NULL) s
                GROUP BY 1, 2""",  # noqa: S608
            list(buckets),
        )
    )


async def breach_counts(conn: Connection) -> list[Row]:
    """``stage, urgency, station, n``."""
    return list(
        await conn.fetch(
            f"""SELECT stage, coalesce(urgency, 'unknown') AS urgency,
                       coalesce(station_id, '{NONE}') AS station, count(*) AS n
                FROM breaches GROUP BY 1, 2, 3"""  # noqa: S608
        )
    )


async def stations(conn: Connection) -> list[str]:
    return [
        r["station"]
        for r in await conn.fetch(
            f"SELECT DISTINCT coalesce(station_id, '{NONE}') AS station FROM orders"  # noqa: S608
        )
    ]


async def open_counts(conn: Connection) -> dict[tuple[str, str], tuple[int, int]]:
    """(station, status) -> (open orders, of those overdue)."""
    return {
        (r["station"], r["status"]): (r["n"], r["overdue"])
        for r in await conn.fetch(
            f"""SELECT coalesce(station_id, '{NONE}') AS station, status, count(*) AS n,
                       count(*) FILTER (WHERE {OVERDUE}) AS overdue
                FROM orders WHERE ended_at IS NULL GROUP BY 1, 2"""  # noqa: S608
        )
    }


async def oldest_open_ages(conn: Connection) -> dict[str, float]:
    """station -> seconds since the oldest open order was submitted."""
    return {
        r["station"]: r["age"]
        for r in await conn.fetch(
            f"""SELECT coalesce(station_id, '{NONE}') AS station,
                       extract(epoch FROM now() - min(submitted_at))::float8 AS age
                FROM orders WHERE ended_at IS NULL AND submitted_at IS NOT NULL
                GROUP BY 1"""  # noqa: S608
        )
    }


SATISFIED = sorted(s.value for s in Satisfaction if s.satisfied)


async def satisfaction_by_station(conn: Connection, window_s: float) -> list[Row]:
    """``station, answered, satisfied``: of the orders whose latest answered return visit came
    in the last ``window_s`` seconds, by the station holding them."""
    return list(
        await conn.fetch(
            f"""SELECT coalesce(o.station_id, '{NONE}') AS station, count(*) AS answered,
                       count(*) FILTER (WHERE f.satisfaction = ANY($2::text[])) AS satisfied
                FROM orders o
                JOIN LATERAL (SELECT at, satisfaction FROM feedbacks
                              WHERE feedbacks.order_id = o.order_id
                              ORDER BY n DESC LIMIT 1) f ON true
                WHERE f.at >= now() - make_interval(secs => $1)
                GROUP BY 1""",  # noqa: S608
            window_s,
            SATISFIED,
        )
    )


# -- The checkpoint file --------------------------------------------------------------------
# Append-only JSON lines on storage the database's writers cannot reach.


def read_checkpoints(path: Path, key: bytes) -> tuple[list[Checkpoint], list[int]]:
    """The validly signed checkpoints in ``path`` and the numbers of the lines that are not."""
    good: list[Checkpoint] = []
    bad: list[int] = []
    if not path.exists():
        return good, bad
    with path.open() as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            checkpoint = _checkpoint(line, key)
            if checkpoint is None:
                bad.append(number)
            else:
                good.append(checkpoint)
    return good, bad


def last_checkpoint(path: Path, key: bytes) -> Checkpoint | None:
    """The last validly signed line (read from the end: the file grows by a line a minute)."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024))
        lines = f.read().splitlines()
    return next((c for line in reversed(lines) if (c := _checkpoint(line, key)) is not None), None)


def _checkpoint(line: str | bytes, key: bytes) -> Checkpoint | None:
    try:
        checkpoint = Checkpoint.model_validate_json(line)
    except ValidationError:
        return None
    return checkpoint if checkpoint.valid(key) else None


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # two replicas may share the file
        f.write(checkpoint.model_dump_json() + "\n")
        f.flush()
        os.fsync(f.fileno())
