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
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from cryptography.fernet import Fernet
from prometheus_client import Counter

from services.dispatch_center import store
from services.dispatch_center.domain import DueCallback, backoff
from services.dispatch_center.settings import CenterSettings
from shared.db import Pool

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


async def _post(
    settings: CenterSettings, client: httpx.AsyncClient, callback: DueCallback, secret: str
) -> tuple[int | None, str | None]:
    """One attempt within its deadline: (HTTP status, error)."""
    body: bytes = callback.body.encode()
    timestamp = str(int(time.time()))
    try:
        async with asyncio.timeout(settings.callback_timeout_s):
            checked = await target(settings, callback.url)
            request = client.build_request(
                "POST",
                checked.url,
                content=body,
                headers={
                    "Host": checked.netloc,
                    "Content-Type": "application/json",
                    "X-SWD-Delivery": str(callback.id),
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


async def attempt(
    pool: Pool,
    settings: CenterSettings,
    client: httpx.AsyncClient,
    cipher: Fernet,
    callback: DueCallback,
) -> None:
    """One delivery attempt of a leased callback, its outcome recorded."""
    secret = cipher.decrypt(callback.secret.encode()).decode()
    started = time.perf_counter()
    status_code, error = await _post(settings, client, callback, secret)
    duration_ms = int((time.perf_counter() - started) * 1000)
    outcome = "failed" if error else "delivered"
    give_up = error is not None and callback.attempts >= settings.callback_max_attempts
    await store.record_attempt(
        pool,
        callback,
        status_code=status_code,
        error=error,
        duration_ms=duration_ms,
        retry_after=None if give_up else backoff(settings, callback.attempts),
    )
    ATTEMPTS.labels(outcome).inc()
    # The host only: paths and queries of callback URLs may carry the integration's tokens.
    log.info(
        "callback %s attempt %d to %s: %s%s",
        callback.id,
        callback.attempts,
        urlsplit(callback.url).hostname,
        outcome,
        f" ({error}{', giving up' if give_up else ''})" if error else "",
    )


async def encrypt_cleartext_secrets(pool: Pool, cipher: Fernet) -> None:
    """Secrets written in clear before they were kept encrypted (migration 0003)."""
    cleartext = await store.cleartext_secrets(pool)
    for integration_id, secret in cleartext:
        encrypted = cipher.encrypt(secret.encode()).decode()
        await store.encrypt_secret(pool, integration_id, secret, encrypted)
    if cleartext:
        log.info("callback secrets encrypted: %d", len(cleartext))
