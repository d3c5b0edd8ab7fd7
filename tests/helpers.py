"""Small helpers the integration tests share."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from tests.conftest import RunningStack

T = TypeVar("T")

# Every resident's and reporter's name and phone the tests sent: none may appear in a log.
PERSONAL_DATA: set[str] = set()


def remember_personal_data(*values: str | None) -> None:
    PERSONAL_DATA.update(v for v in values if v)


def remember_personal_data_of(body: dict[str, Any]) -> None:
    """The names, phones and address of an intake request body."""
    remember_personal_data(
        body["beneficiary"]["name"],
        body["beneficiary"]["phone"],
        body["reporter"]["name"],
        body["reporter"]["phone"],
        body["location"]["address"],
    )


def assert_no_personal_data_in_logs(logs: Path) -> None:
    """Every service log in ``logs``, read once the services have stopped."""
    leaks = []
    for log in sorted(logs.glob("*.log")):
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            if any(value in line for value in PERSONAL_DATA):
                leaks.append(f"{log.name}:{number}")
    # Name the places, never the values.
    assert not leaks, f"personal data in service logs at {leaks[:20]}"


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout_s: float = 15, every_s: float = 0.05
) -> T:
    """Poll until ``probe`` returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(every_s)


async def get_json_when(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    done: Callable[[Any], bool] = lambda _: True,
    timeout_s: float = 15,
) -> Any:
    async def probe() -> Any:
        resp = await http.get(url, headers=headers)
        if resp.status_code == 200 and done(resp.json()):
            return resp.json()
        return None

    return await eventually(probe, timeout_s)


async def post_request(
    http: httpx.AsyncClient, stack: RunningStack, body: dict[str, Any]
) -> httpx.Response:
    """POST ``body`` to the intake API with the session's integration key."""
    return await http.post(
        f"{stack.urls['dispatch_center']}/v1/requests",
        json=body,
        headers={"X-API-Key": stack.api_key},
    )


def swdispatch(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    """A command as the operator runs it: the owner's database URL, the audit's key and file."""
    return subprocess.run(
        [sys.executable, "-m", "swdispatch", *args],
        env={**os.environ, **stack.local.env(), **stack.local.audit_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
