"""Outbox: a state change and the events announcing it commit together; a relay publishes them.

The relay is woken by LISTEN/NOTIFY (the outbox trigger), polls as a fallback, and holds a
session advisory lock so that one relay per service publishes at a time: rows leave in id
order, and one order's events keep their order on the partition.

It also guards against a broker that loses acknowledged data (Tansu keeps nothing across a
restart; a topic can be deleted and re-created): each sent row records the partition and offset
it got, and the relay checks, also when it has nothing to send, that the broker still holds
them, noting each time how far the topics' reader groups have read (``outbox_read``). If the
broker lost data, what not every reader had read, and everything sent within the replay window,
is marked unsent and goes out again, in id order and before anything newer; consumers' inboxes
drop what they had already applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter

from shared.db import Connection, schema_settings
from shared.events import Envelope
from shared.kafka import client_options, producer_options
from shared.locks import LockNamespace
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

CLEANUP_INTERVAL_S = 600.0
# How often the relay asks the broker whether it still holds what it acknowledged, while it is
# idle or keeps publishing (and always before the first batch after a wait). A publish to a
# partition that lost data is caught at once (its offsets go backwards); this check is for the
# partitions not written to since, and costs broker round trips, so not before every batch.
LOSS_CHECK_INTERVAL_S = 1.0

PUBLISHED = Counter(
    "swd_outbox_published_events_total", "Outbox events published to Kafka", ["topic"]
)
REPLAYS = Counter(
    "swd_outbox_replays_total",
    "Times the broker had lost acknowledged events and the recent outbox was published again",
    ["service"],
)


def insert_sql(
    topic: str, events: Sequence[Envelope[Any]], *, first_param: int = 1, when: str | None = None
) -> tuple[str, list[Any]]:
    """The outbox INSERT for ``events`` and its arguments, numbered from ``$first_param``: what
    :func:`add` runs, and what a data-modifying CTE embeds to write events in the same statement
    as the state change. ``when`` (SQL) writes the events only if it holds, e.g. only if another
    part of the statement wrote a row. Rows get their ids in the events' order, the order the
    relay publishes them in. The NOTIFY trigger is per statement, so it wakes the relay for an
    insert inside a CTE as well."""
    n = first_param
    condition = f"WHERE {when}" if when else ""
    sql = f"""INSERT INTO outbox (event_id, topic, key, event_type, body)
        SELECT e, ${n}, k, t, b
        FROM unnest(${n + 1}::uuid[], ${n + 2}::text[], ${n + 3}::text[], ${n + 4}::text[])
            WITH ORDINALITY AS u(e, k, t, b, position)
        {condition}
        ORDER BY position"""  # noqa: S608 (parameters only)
    args = [
        topic,
        [e.event_id for e in events],
        [str(e.order_id) for e in events],
        [e.type for e in events],
        [e.to_json() for e in events],
    ]
    return sql, args


async def numbered(conn: Connection, events: Sequence[Envelope[Any]]) -> list[Envelope[Any]]:
    """The events, each with the next number of its order's events (``seq``) in this
    producer's schema, in the order given. Call inside the transaction that writes them: the
    order's counter row stays locked until it commits, so numbers are neither skipped nor
    given twice."""
    counts: dict[uuid.UUID, int] = {}
    for e in events:
        counts[e.order_id] = counts.get(e.order_id, 0) + 1
    if not counts:
        return []
    rows = await conn.fetch(
        """INSERT INTO event_seq AS s (order_id, seq)
           SELECT * FROM unnest($1::uuid[], $2::int[])
           ON CONFLICT (order_id) DO UPDATE SET seq = s.seq + EXCLUDED.seq
           RETURNING order_id, seq""",
        list(counts),
        list(counts.values()),
    )
    following = {r["order_id"]: r["seq"] - counts[r["order_id"]] + 1 for r in rows}
    out = []
    for e in events:
        out.append(e.model_copy(update={"seq": following[e.order_id]}))
        following[e.order_id] += 1
    return out


async def add(conn: Connection, topic: str, *events: Envelope[Any]) -> None:
    """Write events to the outbox, numbered (:func:`numbered`); call inside the transaction
    that makes the state change."""
    sql, args = insert_sql(topic, await numbered(conn, events))
    await conn.execute(sql, *args)


class BrokerLostEvents(Exception):
    """The broker no longer holds events it acknowledged."""


@dataclass(kw_only=True)
class OutboxRelay:
    database_url: str
    schema: str
    kafka: KafkaSettings
    batch_size: int
    poll_interval_s: float
    retention: timedelta
    replay_window: timedelta
    readers: Mapping[str, Sequence[str]]
    leader_timeout_s: float

    def __post_init__(self) -> None:
        self._next_cleanup = 0.0
        self._next_loss_check = 0.0
        self._wake = asyncio.Event()
        # Per partition, the first and last offset of the latest batch the broker acknowledged.
        self._acknowledged: dict[TopicPartition, tuple[int, int]] = {}
        # Per partition, the offset up to which every reader group had read (outbox_read).
        self._read: dict[TopicPartition, int] = {}
        self.is_leader = False

    async def run(self) -> None:
        """Relay until cancelled; reconnects after database or broker failures."""
        backoff = 0.5
        told: set[type[Exception]] = set()
        while True:
            try:
                await self._run_connected()
                backoff, told = 0.5, set()
            except asyncio.CancelledError:
                raise
            except BrokerLostEvents:
                # Replay marked; new clients, since the old ones' metadata may describe topics
                # that are gone (a producer would keep writing to a partition that no longer is).
                continue
            except Exception as exc:
                self.is_leader = False
                log.warning(
                    "outbox relay (%s) failed: %s; retrying",
                    self.schema,
                    type(exc).__name__,
                    # The whole story once per kind of failure in a streak of failures.
                    exc_info=type(exc) not in told,
                )
                told.add(type(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _connect(self) -> Connection:
        silence_ms = str(int(self.leader_timeout_s * 1000))
        conn: Connection = await asyncpg.connect(
            self.database_url,
            # A server that stops answering: the relay gives the session up.
            command_timeout=self.leader_timeout_s,
            server_settings=schema_settings(self.schema, "relay")
            | {
                # A relay that stops talking (a hung process, a half-open connection): the
                # server ends its session, and the leader lock with it, so another replica
                # takes over. The relay talks at least every poll interval, and a transaction
                # waits at most for one broker round trip.
                "idle_session_timeout": silence_ms,
                "idle_in_transaction_session_timeout": silence_ms,
                "tcp_keepalives_idle": "10",
                "tcp_keepalives_interval": "5",
                "tcp_keepalives_count": "3",
            },
        )
        return conn

    async def _run_connected(self) -> None:
        conn = await self._connect()
        # Clients of its own, made anew after every failure: a client left in a bad state by a
        # broker restart cannot keep the relay stuck.
        options = client_options(self.kafka)
        offsets = AIOKafkaConsumer(enable_auto_commit=False, **options)
        admin = AIOKafkaAdminClient(**options)
        producer = AIOKafkaProducer(
            client_id=f"swdispatch-{self.schema}-relay", **producer_options(self.kafka)
        )
        broker = _Broker(admin, offsets)
        try:
            # Another replica holds the lock; poll until it goes away.
            while not await conn.fetchval(  # noqa: ASYNC110
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                LockNamespace.OUTBOX_RELAY,
                self.schema,
            ):
                await asyncio.sleep(self.poll_interval_s)
            self.is_leader = True
            await offsets.start()
            await admin.start()
            await producer.start()
            await self._load_acknowledged(conn)
            self._next_loss_check = 0.0  # check before the first batch
            await conn.add_listener(f"{self.schema}.outbox", self._on_notify)
            while True:
                self._wake.clear()
                # The first batch after a wait goes out only once the broker is known to be
                # intact: a loss found only after publishing would put the new events on the
                # partition before the replay of the older ones.
                check_now = True
                while await self._relay_batch(conn, broker, producer, check_now=check_now):
                    check_now = False
                # Also when there is nothing to send: a reader that is down may lack events the
                # broker has since lost.
                if await self._broker_lost_events(conn, broker):
                    await self._replay_unread(conn)
                    raise BrokerLostEvents
                await self._delete_old_sent_rows(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                if conn.is_closed():
                    raise ConnectionError("relay connection closed")
        finally:
            self.is_leader = False
            for stop in (producer.stop, admin.close, offsets.stop):
                with contextlib.suppress(Exception):
                    await stop()
            try:  # the connection may be broken already
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _load_acknowledged(self, conn: Connection) -> None:
        # Rows marked sent by one batch share one sent_at (the transaction's now()).
        rows = await conn.fetch(
            """SELECT topic, kafka_partition, min(kafka_offset) AS first, max(kafka_offset) AS last
               FROM outbox o
               WHERE kafka_offset IS NOT NULL AND sent_at = (
                   SELECT max(sent_at) FROM outbox i
                   WHERE i.topic = o.topic AND i.kafka_partition = o.kafka_partition)
               GROUP BY topic, kafka_partition"""
        )
        self._acknowledged = {
            TopicPartition(r["topic"], r["kafka_partition"]): (r["first"], r["last"]) for r in rows
        }
        self._read = {
            TopicPartition(r["topic"], r["kafka_partition"]): r["kafka_offset"]
            for r in await conn.fetch(
                "SELECT topic, kafka_partition, kafka_offset FROM outbox_read"
            )
        }

    async def _broker_lost_events(
        self, conn: Connection, broker: _Broker, *, check_now: bool = False
    ) -> bool:
        """Once per LOSS_CHECK_INTERVAL_S, or now: does the broker still hold the latest batch
        it acknowledged on every partition? If it does, note how far the readers have read."""
        due = check_now or time.monotonic() >= self._next_loss_check
        if not self._acknowledged or not due:
            return False
        self._next_loss_check = time.monotonic() + LOSS_CHECK_INTERVAL_S
        ends = await broker.end_offsets(list(self._acknowledged))
        # The end offset must lie past the first offset of our latest batch. (Not past its last:
        # Tansu reports a batch's base offset + 1 as the end of the partition.)
        if any(ends.get(tp, 0) <= first for tp, (first, _) in self._acknowledged.items()):
            return True
        await self._note_read(conn, broker)
        return False

    async def _note_read(self, conn: Connection, broker: _Broker) -> None:
        # A group that has committed nothing on a partition has read none of it. A topic with
        # no readers counts as read up to what the broker acknowledged.
        read = {tp: last + 1 for tp, (_, last) in self._acknowledged.items()}
        for group_id in sorted({g for tp in read for g in self.readers.get(tp.topic, ())}):
            mine = [tp for tp in read if group_id in self.readers.get(tp.topic, ())]
            committed = await broker.committed(group_id, mine)
            for tp in mine:
                read[tp] = min(read[tp], committed.get(tp, 0))
        changed = {tp: o for tp, o in read.items() if self._read.get(tp) != o}
        if changed:
            await conn.executemany(
                """INSERT INTO outbox_read (topic, kafka_partition, kafka_offset)
                   VALUES ($1, $2, $3)
                   ON CONFLICT (topic, kafka_partition) DO UPDATE SET kafka_offset = $3""",
                [(tp.topic, tp.partition, o) for tp, o in changed.items()],
            )
            self._read |= changed

    async def _replay_unread(self, conn: Connection) -> None:
        """Mark unsent what a reader may lack: what not every reader had read when the relay
        last looked (all of a partition it never looked at), and, whatever the readers said,
        what was sent within the replay window. (A row without an offset was sent before an
        earlier loss and read by all then.) The broker starts over, so the offsets noted so far
        mean nothing any more."""
        async with conn.transaction():
            replayed = await conn.execute(
                """UPDATE outbox o
                   SET sent_at = NULL, kafka_partition = NULL, kafka_offset = NULL
                   WHERE o.sent_at IS NOT NULL AND (
                       o.sent_at > now() - $1::interval
                       OR o.kafka_offset IS NOT NULL AND NOT EXISTS (
                           SELECT FROM outbox_read r
                           WHERE r.topic = o.topic AND r.kafka_partition = o.kafka_partition
                             AND r.kafka_offset > o.kafka_offset))""",
                self.replay_window,
            )
            await conn.execute(
                "UPDATE outbox SET kafka_partition = NULL, kafka_offset = NULL"
                " WHERE kafka_offset IS NOT NULL"
            )
            await conn.execute("DELETE FROM outbox_read")
        self._acknowledged, self._read = {}, {}
        REPLAYS.labels(self.schema).inc()
        log.warning(
            "outbox relay (%s): the broker lost events; replaying %s",
            self.schema,
            replayed.removeprefix("UPDATE "),
        )

    async def _relay_batch(
        self, conn: Connection, broker: _Broker, producer: AIOKafkaProducer, *, check_now: bool
    ) -> bool:
        """Publish one batch; True when there may be more to publish right away."""
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, event_type, body FROM outbox WHERE sent_at IS NULL "
                "ORDER BY id LIMIT $1",
                self.batch_size,
            )
            if not rows:
                return False
            lost = await self._broker_lost_events(conn, broker, check_now=check_now)
            if not lost:
                lost = await self._publish(conn, producer, rows)
        if lost:
            await self._replay_unread(conn)
            raise BrokerLostEvents
        return len(rows) == self.batch_size

    async def _publish(
        self, conn: Connection, producer: AIOKafkaProducer, rows: list[asyncpg.Record]
    ) -> bool:
        """Publish the rows and mark them sent; True if the broker turned out to have lost
        events (offsets went backwards) between the check and the send."""
        # Send all, then wait for every acknowledgement: one round trip per batch, and
        # aiokafka keeps one request in flight per partition, so order holds.
        pending = [
            await producer.send(
                row["topic"],
                row["body"].encode(),
                key=row["key"].encode(),
                headers=[("swd-event-type", row["event_type"].encode())],
            )
            for row in rows
        ]
        landed = await asyncio.gather(*pending)
        await conn.execute(
            """UPDATE outbox SET sent_at = now(), kafka_partition = u.p, kafka_offset = u.o
               FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS u(id, p, o)
               WHERE outbox.id = u.id""",
            [row["id"] for row in rows],
            [meta.partition for meta in landed],
            [meta.offset for meta in landed],
        )
        latest: dict[TopicPartition, tuple[int, int]] = {}
        for row, meta in zip(rows, landed, strict=True):
            PUBLISHED.labels(row["topic"]).inc()
            tp = TopicPartition(meta.topic, meta.partition)
            first, last = latest.get(tp, (meta.offset, meta.offset))
            latest[tp] = (min(first, meta.offset), max(last, meta.offset))
        went_backwards = any(
            first <= self._acknowledged[tp][1]
            for tp, (first, _) in latest.items()
            if tp in self._acknowledged
        )
        self._acknowledged |= latest
        return went_backwards

    async def _delete_old_sent_rows(self, conn: Connection) -> None:
        if time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + CLEANUP_INTERVAL_S
        await conn.execute(
            "DELETE FROM outbox WHERE sent_at < now() - $1::interval", self.retention
        )


class _Broker:
    """What the relay asks the broker about partitions, from fresh metadata each time."""

    def __init__(self, admin: AIOKafkaAdminClient, offsets: AIOKafkaConsumer) -> None:
        self._admin = admin
        self._offsets = offsets

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """End offsets of the partitions that exist; a missing one is left out.

        A partition can be gone altogether: Tansu, restarted empty, creates a topic the first
        time a client asks for it, with its own partition count. Asking for its end offset would
        only time out. The consumer's own metadata cannot tell: it is as old as its last refresh,
        which may predate the topic's first message (its creation, on Tansu)."""
        described = await self._admin.describe_topics(sorted({tp.topic for tp in partitions}))
        existing = {
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if not t["error_code"]
            for p in t["partitions"]
        }
        present = [tp for tp in partitions if tp in existing]
        if not present:
            return {}
        ends: dict[TopicPartition, int] = await self._offsets.end_offsets(present)
        return ends

    async def committed(
        self, group_id: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The offsets ``group_id`` has committed on the partitions (-1: none)."""
        offsets = await self._admin.list_consumer_group_offsets(group_id, partitions=partitions)
        return {tp: meta.offset for tp, meta in offsets.items()}
