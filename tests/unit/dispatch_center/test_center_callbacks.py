"""Status callbacks: signatures, retry backoff, where they may go, one deadline per attempt."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch_center import callbacks
from services.dispatch_center.callbacks import signature
from services.dispatch_center.domain import DueCallback, backoff
from services.dispatch_center.settings import CenterSettings


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"status":"accepted"}'
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("secret", "1700000000", body) == f"sha256={expected}"
    assert signature("secret", "1700000001", body) != f"sha256={expected}"
    assert signature("other", "1700000000", body) != f"sha256={expected}"


def test_backoff_doubles_and_is_capped() -> None:
    settings = CenterSettings(callback_backoff_base_s=2, callback_backoff_max_s=30)
    waits = [backoff(settings, attempt) for attempt in range(1, 7)]
    assert waits == [timedelta(seconds=s) for s in (2, 4, 8, 16, 30, 30)]


# --- where callbacks may go -----------------------------------------------------------------
# The resolver is replaced in these tests: a name is never looked up (DNS would leave the
# machine); what meets real addresses runs in a loopback-only network namespace (below).

LOOPBACK_ONLY = CenterSettings(
    callback_allowed_hosts="127.0.0.1,::1,localhost",
    callback_allow_http=True,
    callback_allowed_hosts_only=True,
)
NAMES = {
    "hook.example": ["93.184.216.34"],
    "internal.example": ["10.0.0.5"],
    "split.example": ["93.184.216.34", "192.168.1.1"],
    "localhost": ["127.0.0.1"],
}


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts looked up; IP literals resolve to themselves, NAMES to theirs."""
    looked_up: list[str] = []

    async def fake_resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            if host not in NAMES:
                raise socket.gaierror(socket.EAI_NONAME, "unknown") from None
            return NAMES[host]

    monkeypatch.setattr(callbacks, "resolve", fake_resolve)
    return looked_up


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/cb",
        "https://127.0.0.2/cb",
        "https://localhost/cb",
        "https://[::1]/cb",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/cb",
        "https://10.0.0.1/cb",
        "https://172.16.0.1/cb",
        "https://192.168.1.1/cb",
        "https://100.64.0.1/cb",
        "https://224.0.0.1/cb",
        "https://[ff02::1]/cb",
        "https://0.0.0.0/cb",
        "https://[::]/cb",
        "https://[::ffff:10.0.0.1]/cb",
        "https://[2002:a00:1::]/cb",
        "https://internal.example/cb",
        "https://split.example/cb",
        "https://nowhere.example/cb",
        "http://hook.example/cb",
        "https://user:pass@hook.example/cb",
        "https://token@hook.example/cb",
        "ftp://hook.example/cb",
        "https:///cb",
    ],
)
async def test_callback_urls_to_internal_addresses_are_refused(
    resolved: list[str], url: str
) -> None:
    with pytest.raises(callbacks.RefusedUrl):
        await callbacks.target(CenterSettings(), url)


async def test_a_public_https_url_is_pinned_to_the_address_checked(resolved: list[str]) -> None:
    checked = await callbacks.target(CenterSettings(), "https://Hook.Example:8443/cb?t=1")
    assert str(checked.url) == "https://93.184.216.34:8443/cb?t=1"
    assert (checked.host, checked.netloc) == ("hook.example", "hook.example:8443")


async def test_allowed_hosts_may_be_loopback_over_http_and_nothing_else_is_resolved(
    resolved: list[str],
) -> None:
    assert LOOPBACK_ONLY.callback_allowed_hosts == ["127.0.0.1", "::1", "localhost"]
    local = await callbacks.target(LOOPBACK_ONLY, "http://localhost:8000/cb")
    assert (str(local.url), local.netloc) == ("http://127.0.0.1:8000/cb", "localhost:8000")
    assert str((await callbacks.target(LOOPBACK_ONLY, "http://[::1]:9/cb")).url) == (
        "http://[::1]:9/cb"
    )
    resolved.clear()
    for url in ("https://hook.example/cb", "https://10.0.0.1/", "http://127.0.0.2/"):
        with pytest.raises(callbacks.RefusedUrl):
            await callbacks.target(LOOPBACK_ONLY, url)
    assert resolved == []
    http_not_allowed = CenterSettings(callback_allowed_hosts="127.0.0.1")
    with pytest.raises(callbacks.RefusedUrl, match="https"):
        await callbacks.target(http_not_allowed, "http://127.0.0.1:8000/cb")
    assert str((await callbacks.target(http_not_allowed, "https://127.0.0.1/")).url) == (
        "https://127.0.0.1/"
    )


def test_allowed_hosts_come_from_one_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWD_CALLBACK_ALLOWED_HOSTS", " 127.0.0.1, [::1],LocalHost,")
    assert CenterSettings().callback_allowed_hosts == ["127.0.0.1", "::1", "localhost"]


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(
            lambda scheme, host, rest: f"{scheme}://{host}{rest}",
            st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
            st.one_of(
                st.sampled_from(["127.0.0.1", "[::1]", "localhost", "u:p@127.0.0.1", "[::"]),
                st.text(max_size=30),
            ),
            st.text(max_size=30),
        ),
    )
)
async def test_any_url_is_refused_or_an_allowed_host_and_only_allowed_hosts_are_resolved(
    url: str,
) -> None:
    looked_up: list[str] = []

    async def fake_resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    original = callbacks.resolve
    callbacks.resolve = fake_resolve  # type: ignore[assignment]
    try:
        checked = await callbacks.target(LOOPBACK_ONLY, url)
    except callbacks.RefusedUrl:
        pass
    else:
        assert checked.host in LOOPBACK_ONLY.callback_allowed_hosts
        assert checked.url.host == "127.0.0.1"
    finally:
        callbacks.resolve = original  # type: ignore[assignment]
    assert set(looked_up) <= set(LOOPBACK_ONLY.callback_allowed_hosts)


def test_delivery_meets_private_and_public_addresses_only_as_checked_in_a_loopback_netns() -> None:
    """Pinning and DNS rebinding, with real sockets, where no packet can leave."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a loopback-only network namespace")
    done = subprocess.run(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            f'ip link set lo up && exec "{sys.executable}"'
            " -m tests.unit.dispatch_center.callbacks_netns",
        ],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok"


# --- one deadline per attempt, a capped read ------------------------------------------------


@contextlib.asynccontextmanager
async def raw_server(
    respond: bytes, then: bytes, every_s: float
) -> AsyncIterator[tuple[str, list[float]]]:
    """On 127.0.0.1: after a request, ``respond`` at once, then ``then`` forever, a piece every
    ``every_s``; yields the URL and, per connection, how long the caller kept it open."""
    held: list[float] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened = time.monotonic()
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(respond)
            while True:
                writer.write(then)
                await writer.drain()
                await asyncio.sleep(every_s)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            held.append(time.monotonic() - opened)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/cb", held


async def test_a_receiver_trickling_its_response_is_cut_at_the_deadline() -> None:
    deadline = CenterSettings(
        callback_timeout_s=1.5, callback_allowed_hosts="127.0.0.1", callback_allow_http=True
    )
    async with (
        raw_server(b"", b"H", every_s=0.3) as (url, held),
        httpx.AsyncClient(timeout=deadline.callback_timeout_s) as client,
    ):
        started = time.monotonic()
        status, error = await callbacks._post(deadline, client, due(url), "s")
        took = time.monotonic() - started
        await _until(lambda: bool(held))
    assert (status, error) == (None, "deadline exceeded")
    assert 1.5 <= took < 6, took
    assert len(held) == 1, held
    assert held[0] < 6, held


async def test_an_endless_response_body_is_read_only_up_to_the_cap() -> None:
    capped = CenterSettings(
        callback_max_response_bytes=64 * 1024,
        callback_timeout_s=10,
        callback_allowed_hosts="127.0.0.1",
        callback_allow_http=True,
    )
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    async with (
        raw_server(head, chunk, every_s=0) as (url, held),
        httpx.AsyncClient(timeout=10) as client,
    ):
        started = time.monotonic()
        result = await callbacks._post(capped, client, due(url), "s")
        assert time.monotonic() - started < 5
        await _until(lambda: bool(held))
    assert result == (200, None)


def due(url: str) -> DueCallback:
    return DueCallback(id=1, integration_id="i", url=url, body="{}", attempts=1, secret="")


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)
