"""Durable timers: due times live in the order rows, so a restart or a second replica loses
none and fires none twice (rows are claimed with ``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import cast

from prometheus_client import Counter

from services.dispatch_center import lifecycle
from services.dispatch_center.settings import CenterSettings
from shared.db import Connection, Pool
from shared.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 100  # the LIMIT of the queries below

FIRED = Counter("swd_center_timers_fired_total", "Center timers that fired", ["timer"])

Fire = Callable[[Connection, CenterSettings, lifecycle.Order, datetime], Awaitable[None]]

# timer -> (the due orders, what to do with each)
TIMERS: dict[str, tuple[str, Fire]] = {
    "resend": (
        """SELECT * FROM orders
           WHERE next_resend_at <= $1 AND status = 'dispatched' AND received_at IS NULL
           ORDER BY next_resend_at LIMIT 100 FOR UPDATE SKIP LOCKED""",
        lifecycle.resend,
    ),
    "escalate": (
        """SELECT * FROM orders
           WHERE accept_due_at <= $1 AND status = 'dispatched'
           ORDER BY accept_due_at LIMIT 100 FOR UPDATE SKIP LOCKED""",
        lifecycle.escalate,
    ),
}


async def fire_due(pool: Pool, settings: CenterSettings) -> int:
    """Fire every timer that is due now; return how many fired."""
    fired = 0
    for name, (due, fire) in TIMERS.items():
        while True:
            async with pool.acquire() as conn, conn.transaction():
                now = datetime.now(UTC)
                orders = await conn.fetch(due, now)
                for order in orders:
                    await fire(conn, settings, order, now)
            FIRED.labels(name).inc(len(orders))
            fired += len(orders)
            if len(orders) < BATCH:
                break
    return fired


async def _forget_old_rate_windows(pool: Pool) -> None:
    await pool.execute(
        "DELETE FROM rate_limit_windows WHERE window_start < now() - interval '10 minutes'"
    )


async def run(runtime: Runtime) -> None:
    settings = cast(CenterSettings, runtime.settings)
    ticks = 0
    while True:
        fired = await fire_due(runtime.pool, settings)
        if fired:
            log.info("timers: %d fired", fired)
        ticks += 1
        if ticks % 600 == 0:
            await _forget_old_rate_windows(runtime.pool)
        await asyncio.sleep(settings.timer_interval_s)
