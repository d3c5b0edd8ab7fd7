"""Status callbacks: the rows that status changes queued (in their own transaction) are POSTed
to the integration's ``callback_url``, signed, retried with exponential backoff, each attempt
recorded in ``callback_attempts``.

One order's callbacks go out in order: a callback waits until the ones before it are delivered
or given up. A row is leased (``next_attempt_at`` moved past the timeout) before the POST, so
several replicas never send the same attempt twice at once.

Signature: ``X-SWD-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``X-SWD-Timestamp`` (Unix seconds); receivers recompute it and reject stale timestamps.
``X-SWD-Delivery`` identifies the callback across retries, for receivers that deduplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from datetime import timedelta
from typing import cast
from urllib.parse import urlsplit

import asyncpg
import httpx
from prometheus_client import Counter

from services.dispatch_center.settings import CenterSettings
from shared.db import Pool
from shared.runtime import Runtime

log = logging.getLogger(__name__)

# Attempts in flight at once. Each runs on its own, so a receiver that hangs until the timeout
# holds one slot, not every other integration's callbacks.
IN_FLIGHT = 20

ATTEMPTS = Counter(
    "swd_status_callback_attempts_total",
    "Status callback delivery attempts by outcome (delivered, failed)",
    ["outcome"],
)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def backoff(settings: CenterSettings, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: base, 2 x base, 4 x base ... capped."""
    seconds = settings.callback_backoff_base_s * 2 ** (attempts - 1)
    return timedelta(seconds=min(seconds, settings.callback_backoff_max_s))


async def _claim(pool: Pool, settings: CenterSettings, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        """UPDATE callbacks c
           SET next_attempt_at = now() + make_interval(secs => $1), attempts = c.attempts + 1
           FROM (SELECT id FROM callbacks d
                 WHERE d.delivered_at IS NULL AND d.given_up_at IS NULL
                   AND d.next_attempt_at <= now()
                   AND NOT EXISTS (
                       SELECT 1 FROM callbacks e
                       WHERE e.order_id = d.order_id AND e.id < d.id
                         AND e.delivered_at IS NULL AND e.given_up_at IS NULL)
                 ORDER BY d.next_attempt_at LIMIT $2
                 FOR UPDATE SKIP LOCKED) due
           WHERE c.id = due.id
           RETURNING c.id, c.url, c.body, c.attempts,
               (SELECT callback_secret FROM integrations i WHERE i.id = c.integration_id)
                   AS secret""",
        settings.callback_timeout_s + 30,
        limit,
    )
    return rows


async def _attempt(
    pool: Pool, settings: CenterSettings, client: httpx.AsyncClient, row: asyncpg.Record
) -> None:
    body: bytes = row["body"].encode()
    timestamp = str(int(time.time()))
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        resp = await client.post(
            row["url"],
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-SWD-Delivery": str(row["id"]),
                "X-SWD-Timestamp": timestamp,
                "X-SWD-Signature": signature(row["secret"], timestamp, body),
            },
        )
        status_code = resp.status_code
        if not resp.is_success:
            error = f"HTTP {status_code}"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    duration_ms = int((time.perf_counter() - started) * 1000)
    outcome = "failed" if error else "delivered"
    give_up = error is not None and row["attempts"] >= settings.callback_max_attempts
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO callback_attempts
                   (callback_id, attempt, outcome, http_status, error, duration_ms)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            row["id"],
            row["attempts"],
            outcome,
            status_code,
            error,
            duration_ms,
        )
        if error is None:
            await conn.execute("UPDATE callbacks SET delivered_at = now() WHERE id = $1", row["id"])
        elif give_up:
            await conn.execute("UPDATE callbacks SET given_up_at = now() WHERE id = $1", row["id"])
        else:
            await conn.execute(
                "UPDATE callbacks SET next_attempt_at = now() + $2 WHERE id = $1",
                row["id"],
                backoff(settings, row["attempts"]),
            )
    ATTEMPTS.labels(outcome).inc()
    # The host only: paths and queries of callback URLs may carry the integration's tokens.
    log.info(
        "callback %s attempt %d to %s: %s%s",
        row["id"],
        row["attempts"],
        urlsplit(row["url"]).hostname,
        outcome,
        f" ({error}{', giving up' if give_up else ''})" if error else "",
    )


async def run(runtime: Runtime) -> None:
    settings = cast(CenterSettings, runtime.settings)
    in_flight: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The row stays leased until its lease runs out, then it is tried again.
            log.error("callback attempt failed", exc_info=task.exception())

    async with httpx.AsyncClient(
        timeout=settings.callback_timeout_s, follow_redirects=False
    ) as client:
        try:
            while True:
                free = IN_FLIGHT - len(in_flight)
                rows = await _claim(runtime.pool, settings, free) if free else []
                for row in rows:
                    task = asyncio.create_task(_attempt(runtime.pool, settings, client, row))
                    in_flight.add(task)
                    task.add_done_callback(finished)
                if len(rows) < free or not free:
                    await asyncio.sleep(settings.timer_interval_s)
        finally:
            for task in in_flight:
                task.cancel()
