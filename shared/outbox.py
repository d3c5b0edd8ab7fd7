"""Outbox: a state change and the events announcing it commit together; a relay publishes them.

The relay is woken by LISTEN/NOTIFY (the outbox trigger), polls as a fallback, and holds a
session advisory lock so that one relay per service publishes at a time: rows leave in id
order, and one order's events keep their order on the partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker
from prometheus_client import Counter

from shared.db import TRANSIENT_ERRORS, Connection
from shared.events import Envelope

log = logging.getLogger(__name__)

CLEANUP_INTERVAL_S = 600.0

PUBLISHED = Counter(
    "swd_outbox_published_events_total", "Outbox events published to Kafka", ["topic"]
)


async def add(conn: Connection, topic: str, *events: Envelope[Any]) -> None:
    """Write events to the outbox; call inside the transaction that makes the state change."""
    await conn.execute(
        """INSERT INTO outbox (event_id, topic, key, event_type, body)
           SELECT e, $1, k, t, b FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[])
               AS u(e, k, t, b)""",
        topic,
        [e.event_id for e in events],
        [str(e.order_id) for e in events],
        [e.type for e in events],
        [e.to_json() for e in events],
    )


class OutboxRelay:
    def __init__(
        self,
        *,
        database_url: str,
        schema: str,
        broker: KafkaBroker,
        batch_size: int,
        poll_interval_s: float,
        retention: timedelta,
    ) -> None:
        self._database_url = database_url
        self._schema = schema
        self._broker = broker
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._retention = retention
        self._next_cleanup = 0.0
        self._wake = asyncio.Event()
        self.is_leader = False

    async def run(self) -> None:
        """Relay until cancelled; reconnects after database or broker failures."""
        backoff = 0.5
        while True:
            try:
                await self._run_connected()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.is_leader = False
                log.warning(
                    "outbox relay (%s) failed: %s; retrying", self._schema, type(exc).__name__
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _run_connected(self) -> None:
        conn: Connection = await asyncpg.connect(
            self._database_url, server_settings={"search_path": self._schema}
        )
        try:
            # Another replica holds the lock; poll until it goes away.
            while not await conn.fetchval(  # noqa: ASYNC110
                "SELECT pg_try_advisory_lock(hashtext($1))", f"{self._schema}.outbox"
            ):
                await asyncio.sleep(self._poll_interval_s)
            self.is_leader = True
            await conn.add_listener(f"{self._schema}.outbox", self._on_notify)
            while True:
                self._wake.clear()
                while await self._relay_batch(conn) == self._batch_size:
                    pass
                await self._delete_old_sent_rows(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
                if conn.is_closed():
                    raise ConnectionError("relay connection closed")
        finally:
            self.is_leader = False
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await asyncio.wait_for(conn.close(), 5)

    async def _delete_old_sent_rows(self, conn: Connection) -> None:
        if time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + CLEANUP_INTERVAL_S
        await conn.execute(
            "DELETE FROM outbox WHERE sent_at < now() - $1::interval", self._retention
        )

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _relay_batch(self, conn: Connection) -> int:
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, event_type, body FROM outbox WHERE sent_at IS NULL "
                "ORDER BY id LIMIT $1",
                self._batch_size,
            )
            if not rows:
                return 0
            # Send all, then wait for every acknowledgement: one round trip per batch, and
            # aiokafka keeps one request in flight per partition, so order holds.
            pending = [
                await self._broker.publish(
                    row["body"].encode(),
                    row["topic"],
                    key=row["key"].encode(),
                    headers={"swd-event-type": row["event_type"]},
                    no_confirm=True,
                )
                for row in rows
            ]
            await asyncio.gather(*pending)
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
        for row in rows:
            PUBLISHED.labels(row["topic"]).inc()
        return len(rows)
