"""Status callbacks: the rows that status changes queued (in their own transaction) are POSTed
to the integration's ``callback_url``, signed, retried with exponential backoff, each attempt
recorded in ``callback_attempts``.

One order's callbacks go out in order: a callback waits until the ones before it are delivered
or given up. A row is leased (``next_attempt_at`` moved past the attempt's deadline) before the
POST, so several replicas never send the same attempt twice at once, and an attempt never runs
beside a second start of itself.

Where callbacks may go (``target``, at intake and again at each attempt, as DNS can change):
https only, no user name or password, and a host whose every address is public (not loopback,
link-local, private, multicast or unspecified); the attempt connects to the address it checked.
``callback_allowed_hosts`` are exempt from the address rule (and from https with
``callback_allow_http``).

Signature: ``X-SWD-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``X-SWD-Timestamp`` (Unix seconds); receivers recompute it and reject stale timestamps.
``X-SWD-Delivery`` identifies the callback across retries, for receivers that deduplicate.
The secrets are kept encrypted (Fernet, ``callback_secret_key``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg
import httpx
from cryptography.fernet import Fernet
from prometheus_client import Counter

from services.dispatch_center.settings import CenterSettings
from shared.db import Pool
from shared.runtime import Runtime

log = logging.getLogger(__name__)

# Attempts in flight at once, and of those at most this many for one integration: a receiver
# that hangs until the deadline holds a few slots, not every other integration's callbacks.
IN_FLIGHT = 20
IN_FLIGHT_PER_INTEGRATION = 4
# A row's lease outlives its attempt's deadline by this much (for recording the outcome).
LEASE_MARGIN_S = 30.0
RESOLVE_TIMEOUT_S = 2.0

ATTEMPTS = Counter(
    "swd_status_callback_attempts_total",
    "Status callback delivery attempts by outcome (delivered, failed)",
    ["outcome"],
)


class RefusedUrl(ValueError):
    """A callback URL the center does not call; the message says why, without the URL."""


@dataclass(frozen=True)
class Target:
    """Where an attempt connects: ``url`` has the checked address in place of the host."""

    url: httpx.URL
    host: str
    netloc: str


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def backoff(settings: CenterSettings, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: base, 2 x base, 4 x base ... capped."""
    seconds = settings.callback_backoff_base_s * 2 ** (attempts - 1)
    return timedelta(seconds=min(seconds, settings.callback_backoff_max_s))


def public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])  # without an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def target(settings: CenterSettings, raw_url: str) -> Target:
    """The address to call for ``raw_url``; RefusedUrl when the rules forbid it."""
    try:
        url = httpx.URL(raw_url)
        host = url.raw_host.decode("ascii").lower()
    except (httpx.InvalidURL, UnicodeDecodeError):
        raise RefusedUrl("not a valid URL") from None
    if url.userinfo:
        raise RefusedUrl("a user name or password is not allowed")
    allowed = host in settings.callback_allowed_hosts
    if url.scheme != "https" and not (
        url.scheme == "http" and allowed and settings.callback_allow_http
    ):
        raise RefusedUrl("must be https")
    if not host:
        raise RefusedUrl("has no host")
    if settings.callback_allowed_hosts_only and not allowed:
        raise RefusedUrl("this host may not be called")
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            addresses = await resolve(host, url.port or (443 if url.scheme == "https" else 80))
    except (OSError, TimeoutError):
        raise RefusedUrl("the host does not resolve") from None
    if not addresses:
        raise RefusedUrl("the host does not resolve")
    if not allowed and not all(public_address(a) for a in addresses):
        raise RefusedUrl(
            "the host has an address that may not be called"
            " (loopback, link-local, private, multicast or unspecified)"
        )
    return Target(url=url.copy_with(host=addresses[0]), host=host, netloc=url.netloc.decode())


async def _claim(
    pool: Pool, settings: CenterSettings, limit: int, busy: Tally[str]
) -> list[asyncpg.Record]:
    """Lease up to ``limit`` due callbacks, at most IN_FLIGHT_PER_INTEGRATION for each
    integration counting its ``busy`` ones, none of a revoked integration."""
    rows: list[asyncpg.Record] = await pool.fetch(
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
        settings.callback_timeout_s + LEASE_MARGIN_S,
        limit,
        IN_FLIGHT_PER_INTEGRATION,
        list(busy),
        list(busy.values()),
    )
    return rows


async def _give_up_revoked(pool: Pool) -> None:
    """A revoked integration gets no more callbacks."""
    status = await pool.execute(
        """UPDATE callbacks c SET given_up_at = now() FROM integrations i
           WHERE i.id = c.integration_id AND i.revoked_at IS NOT NULL
             AND c.delivered_at IS NULL AND c.given_up_at IS NULL"""
    )
    if status != "UPDATE 0":
        log.info("callbacks of revoked integrations given up: %s", status.split()[-1])


async def _post(
    settings: CenterSettings, client: httpx.AsyncClient, row: asyncpg.Record, secret: str
) -> tuple[int | None, str | None]:
    """One attempt within its deadline: (HTTP status, error)."""
    body: bytes = row["body"].encode()
    timestamp = str(int(time.time()))
    try:
        async with asyncio.timeout(settings.callback_timeout_s):
            checked = await target(settings, row["url"])
            request = client.build_request(
                "POST",
                checked.url,
                content=body,
                headers={
                    "Host": checked.netloc,
                    "Content-Type": "application/json",
                    "X-SWD-Delivery": str(row["id"]),
                    "X-SWD-Timestamp": timestamp,
                    "X-SWD-Signature": signature(secret, timestamp, body),
                },
                extensions={"sni_hostname": checked.host},
            )
            resp = await client.send(request, stream=True)
            try:
                read = 0
                async for chunk in resp.aiter_raw():
                    read += len(chunk)
                    if read >= settings.callback_max_response_bytes:
                        break  # the rest is not read; closing drops the connection
            finally:
                await resp.aclose()
    except RefusedUrl as exc:
        return None, f"refused: {exc}"
    except TimeoutError:
        return None, "deadline exceeded"
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    return resp.status_code, None if resp.is_success else f"HTTP {resp.status_code}"


async def _attempt(
    pool: Pool,
    settings: CenterSettings,
    client: httpx.AsyncClient,
    cipher: Fernet,
    row: asyncpg.Record,
) -> None:
    secret = cipher.decrypt(row["secret"].encode()).decode()
    started = time.perf_counter()
    status_code, error = await _post(settings, client, row, secret)
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


async def encrypt_cleartext_secrets(pool: Pool, cipher: Fernet) -> None:
    """Secrets written in clear before they were kept encrypted (migration 0003)."""
    rows = await pool.fetch(
        "SELECT id, callback_secret_cleartext AS secret FROM integrations"
        " WHERE callback_secret_cleartext IS NOT NULL"
    )
    for row in rows:
        await pool.execute(
            """UPDATE integrations
               SET callback_secret_encrypted = $2, callback_secret_cleartext = NULL
               WHERE id = $1 AND callback_secret_cleartext = $3""",
            row["id"],
            cipher.encrypt(row["secret"].encode()).decode(),
            row["secret"],
        )
    if rows:
        log.info("callback secrets encrypted: %d", len(rows))


async def run(runtime: Runtime[CenterSettings]) -> None:
    settings = runtime.settings
    cipher = Fernet(settings.callback_fernet_key())
    await encrypt_cleartext_secrets(runtime.pool, cipher)
    in_flight: dict[asyncio.Task[None], str] = {}

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
                free = IN_FLIGHT - len(in_flight)
                rows = []
                if free:
                    await _give_up_revoked(runtime.pool)
                    rows = await _claim(runtime.pool, settings, free, Tally(in_flight.values()))
                for row in rows:
                    task = asyncio.create_task(
                        _attempt(runtime.pool, settings, client, cipher, row)
                    )
                    in_flight[task] = row["integration_id"]
                    task.add_done_callback(finished)
                if len(rows) < free or not free:
                    await asyncio.sleep(settings.timer_interval_s)
        finally:
            for task in in_flight:
                task.cancel()
