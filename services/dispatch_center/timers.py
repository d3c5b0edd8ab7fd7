"""Durable timers: due times live in the order rows, so a restart or a second replica loses
none and fires none twice (rows are claimed with ``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from services.dispatch_center import lifecycle
from services.dispatch_center.settings import CenterSettings
from shared.db import Connection, Pool, is_transient
from shared.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 100  # the LIMIT of the queries below

FIRED = Counter("swd_center_timers_fired_total", "Center timers that fired", ["timer"])

Fire = Callable[[Connection, CenterSettings, lifecycle.Order, datetime], Awaitable[None]]

# An order whose timer fails (a bug, bad data) is tried again this much later, not at once:
# it must not hold up every other order's timers.
RETRY_FAILED = timedelta(minutes=1)


@dataclass(frozen=True)
class Timer:
    name: str
    due: str
    """The due orders, locked; ``$1`` is now."""
    postpone: str
    """Moves one order's due time (``$1``: order id, ``$2``: when)."""
    fire: Fire


TIMERS = (
    Timer(
        "resend",
        """SELECT * FROM orders
           WHERE next_resend_at <= $1 AND status = 'dispatched' AND received_at IS NULL
           ORDER BY next_resend_at LIMIT 100 FOR UPDATE SKIP LOCKED""",
        "UPDATE orders SET next_resend_at = $2 WHERE id = $1",
        lifecycle.resend,
    ),
    Timer(
        "escalate",
        """SELECT * FROM orders
           WHERE accept_due_at <= $1 AND status = 'dispatched'
           ORDER BY accept_due_at LIMIT 100 FOR UPDATE SKIP LOCKED""",
        "UPDATE orders SET accept_due_at = $2 WHERE id = $1",
        lifecycle.escalate,
    ),
)


async def _fire_batch(pool: Pool, settings: CenterSettings, timer: Timer) -> int:
    async with pool.acquire() as conn, conn.transaction():
        now = datetime.now(UTC)
        orders = await conn.fetch(timer.due, now)
        for order in orders:
            try:
                async with conn.transaction():  # a savepoint: one order's failure is its own
                    await timer.fire(conn, settings, order, now)
            except Exception as exc:
                if is_transient(exc):
                    raise
                # The type only: messages (a ValidationError's) may quote personal data.
                log.error(
                    "timer %s failed for order %s: %s", timer.name, order["id"], type(exc).__name__
                )
                await conn.execute(timer.postpone, order["id"], now + RETRY_FAILED)
    FIRED.labels(timer.name).inc(len(orders))
    return len(orders)


async def fire_due(pool: Pool, settings: CenterSettings) -> int:
    """Fire every timer that is due now; return how many fired."""
    fired = 0
    for timer in TIMERS:
        while (batch := await _fire_batch(pool, settings, timer)) == BATCH:
            fired += batch
        fired += batch
    return fired


async def _forget_old_rate_windows(pool: Pool) -> None:
    await pool.execute(
        "DELETE FROM rate_limit_windows WHERE window_start < now() - interval '10 minutes'"
    )


async def run(runtime: Runtime[CenterSettings]) -> None:
    settings = runtime.settings
    ticks = 0
    while True:
        fired = await fire_due(runtime.pool, settings)
        if fired:
            log.info("timers: %d fired", fired)
        ticks += 1
        if ticks % 600 == 0:
            await _forget_old_rate_windows(runtime.pool)
        await asyncio.sleep(settings.timer_interval_s)
