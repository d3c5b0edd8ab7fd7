"""The center's background jobs: the durable timers and the delivery of status callbacks.

Timers: due times live in the order rows, so a restart or a second replica loses none and
fires none twice (due rows are claimed, skipping those another replica holds).

Callbacks: see :mod:`services.dispatch_center.callbacks`; at most ``IN_FLIGHT`` attempts run
at once, ``IN_FLIGHT_PER_INTEGRATION`` of them for one integration.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from cryptography.fernet import Fernet
from prometheus_client import Counter

from services.dispatch_center import callbacks, flows, store
from services.dispatch_center.domain import Order
from services.dispatch_center.settings import CenterSettings
from shared.db import Connection, Pool, is_transient
from shared.runtime import Runtime

log = logging.getLogger(__name__)

FIRED = Counter("swd_center_timers_fired_total", "Center timers that fired", ["timer"])

# An order whose timer fails (a bug, bad data) is tried again this much later, not at once:
# it must not hold up every other order's timers.
RETRY_FAILED = timedelta(minutes=1)


@dataclass(frozen=True)
class Timer:
    name: str
    due: Callable[[Connection, datetime], Awaitable[list[Order]]]
    """The due orders, locked."""
    postpone: Callable[[Connection, Order, datetime], Awaitable[None]]
    """Moves one order's due time."""
    fire: Callable[[Connection, CenterSettings, Order, datetime], Awaitable[None]]


TIMERS = (
    Timer(
        "resend",
        store.due_resends,
        lambda conn, order, when: store.postpone_resend(conn, order.id, when),
        flows.resend,
    ),
    Timer(
        "escalate",
        store.due_escalations,
        lambda conn, order, when: store.postpone_escalation(conn, order.id, when),
        flows.escalate,
    ),
    Timer(
        "close_without_feedback",
        store.due_feedback,
        lambda conn, order, when: store.postpone_feedback(conn, order.id, when),
        flows.close_unanswered,
    ),
)


async def _fire_batch(pool: Pool, settings: CenterSettings, timer: Timer) -> int:
    async with pool.acquire() as conn, conn.transaction():
        now = datetime.now(UTC)
        orders = await timer.due(conn, now)
        for order in orders:
            try:
                async with conn.transaction():  # a savepoint: one order's failure is its own
                    await timer.fire(conn, settings, order, now)
            except Exception as exc:
                if is_transient(exc):
                    raise
                # The type only: messages (a ValidationError's) may quote personal data.
                log.error(
                    "timer %s failed for order %s: %s", timer.name, order.id, type(exc).__name__
                )
                await timer.postpone(conn, order, now + RETRY_FAILED)
    FIRED.labels(timer.name).inc(len(orders))
    return len(orders)


async def fire_due(pool: Pool, settings: CenterSettings) -> int:
    """Fire every timer that is due now; return how many fired."""
    fired = 0
    for timer in TIMERS:
        while (batch := await _fire_batch(pool, settings, timer)) == store.TIMER_BATCH:
            fired += batch
        fired += batch
    return fired


async def timers(runtime: Runtime[CenterSettings]) -> None:
    settings = runtime.settings
    ticks = 0
    while True:
        fired = await fire_due(runtime.pool, settings)
        if fired:
            log.info("timers: %d fired", fired)
        ticks += 1
        if ticks % 600 == 0:
            await store.forget_old_rate_windows(runtime.pool)
        await asyncio.sleep(settings.timer_interval_s)


async def deliver_callbacks(runtime: Runtime[CenterSettings]) -> None:
    settings = runtime.settings
    pool = runtime.pool
    cipher = Fernet(settings.callback_fernet_key())
    await callbacks.encrypt_cleartext_secrets(pool, cipher)
    in_flight: dict[asyncio.Task[None], str] = {}
    lease_s = settings.callback_timeout_s + callbacks.LEASE_MARGIN_S

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            # The row stays leased until its lease runs out, then it is tried again.
            log.error("callback attempt failed", exc_info=task.exception())

    # A new connection for each attempt (no keep-alive): a pooled connection is keyed by the
    # address alone and would carry one host's TLS session to another host at that address.
    # No proxies from the environment: they would connect elsewhere than the checked address.
    async with httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=settings.callback_timeout_s,  # per read; the attempt's deadline is the limit
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        try:
            while True:
                free = callbacks.IN_FLIGHT - len(in_flight)
                due = []
                if free:
                    if given_up := await store.give_up_revoked_callbacks(pool):
                        log.info("callbacks of revoked integrations given up: %d", given_up)
                    due = await store.claim_callbacks(
                        pool,
                        lease_s,
                        free,
                        callbacks.IN_FLIGHT_PER_INTEGRATION,
                        Tally(in_flight.values()),
                    )
                for callback in due:
                    task = asyncio.create_task(
                        callbacks.attempt(pool, settings, client, cipher, callback)
                    )
                    in_flight[task] = callback.integration_id
                    task.add_done_callback(finished)
                if len(due) < free or not free:
                    await asyncio.sleep(settings.timer_interval_s)
        finally:
            for task in in_flight:
                task.cancel()


ALL = [timers, deliver_callbacks]
