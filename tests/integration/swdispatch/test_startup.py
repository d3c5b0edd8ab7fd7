"""Start-up: a restarted dispatch center takes intake as soon as its database is reachable,
while its consumers join their groups in the background; /readyz says what it waits for.

A private stack (own PostgreSQL, own broker, only the dispatch center) so that the broker can be
stopped and the center killed without disturbing the session's stack.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from shared.kafka import create_topics
from shared.settings import KafkaSettings
from swdispatch.stack import LocalStack, Ports
from tests.conftest import TEST_SERVICE_ENV
from tests.factories.requests import request_body
from tests.helpers import eventually

pytestmark = pytest.mark.integration

CENTER = "dispatch_center"
# A session timeout long enough that a SIGKILLed member holds up the next join for a while
# (the join request must be allowed to wait that long: request timeout 15 s by default).
STARTUP_ENV = TEST_SERVICE_ENV | {
    "SWD_KAFKA_SESSION_TIMEOUT_MS": "8000",
    "SWD_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
}


@dataclass
class PrivateStack:
    local: LocalStack
    api_key: str

    @property
    def center(self) -> str:
        return self.local.urls[CENTER]

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.local.processes[CENTER]


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    local = LocalStack(
        root=tmp_path_factory.mktemp("startup"), ports=Ports.free(), service_env=STARTUP_ENV
    )
    try:
        local.start_infra()
        credentials = asyncio.run(local.prepare())
        local.start_service(CENTER)
        local.wait_ready((CENTER,), 90)
        yield PrivateStack(local, credentials["integration"]["api_key"])
    finally:
        local.stop()


async def _intake(http: httpx.AsyncClient, stack: PrivateStack, body: dict[str, Any]) -> int:
    resp = await http.post(
        f"{stack.center}/v1/requests", json=body, headers={"X-API-Key": stack.api_key}
    )
    return resp.status_code


async def _status(http: httpx.AsyncClient, url: str) -> int | None:
    try:
        return (await http.get(url)).status_code
    except httpx.TransportError:
        return None


async def _restart_timed(stack: PrivateStack) -> dict[str, Any]:
    """SIGKILL the center, start it again; seconds from the start until /healthz answers, until
    an intake POST is accepted and until /readyz is 200, and what /readyz said at intake."""
    stack.local.stop_service(CENTER, signal.SIGKILL)
    started = time.monotonic()
    stack.local.start_service(CENTER)
    body = request_body()
    seen: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        while not {"healthz", "intake", "readyz"} <= seen.keys():
            assert stack.process.poll() is None, "the dispatch center exited"
            assert time.monotonic() - started < 120, f"not serving within 120 s: {seen}"
            if "healthz" not in seen and await _status(http, f"{stack.center}/healthz") == 200:
                seen["healthz"] = time.monotonic() - started
            if "intake" not in seen:
                try:
                    accepted = await _intake(http, stack, body) in (200, 201)
                except httpx.TransportError:
                    accepted = False
                if accepted:
                    seen["intake"] = time.monotonic() - started
                    readyz = await http.get(f"{stack.center}/readyz")
                    seen["readyz_at_intake"] = (readyz.status_code, readyz.json())
            if "readyz" not in seen and await _status(http, f"{stack.center}/readyz") == 200:
                seen["readyz"] = time.monotonic() - started
            await asyncio.sleep(0.05)
    seen["external_id"] = body["external_id"]
    return seen


async def test_a_restarted_center_takes_intake_before_its_consumers_have_joined(
    private_stack: PrivateStack,
) -> None:
    seen = await _restart_timed(private_stack)
    print(
        f"\nafter SIGKILL: /healthz {seen['healthz']:.1f} s, intake {seen['intake']:.1f} s,"
        f" /readyz {seen['readyz']:.1f} s"
    )
    # The killed member holds the group until its session times out (8 s): the join waits.
    assert seen["intake"] < seen["readyz"]
    assert seen["readyz_at_intake"] == (503, {"ready": False, "waiting_for": ["consumers"]})


async def test_with_the_broker_down_the_center_serves_intake_and_stops_cleanly(
    private_stack: PrivateStack,
) -> None:
    local = private_stack.local
    assert local.broker is not None
    assert local.database_url is not None
    local.broker.stop()
    local.stop_service(CENTER, signal.SIGKILL)
    local.start_service(CENTER)
    center = private_stack.center
    body = request_body()
    async with httpx.AsyncClient(timeout=5) as http:

        async def healthy() -> bool:
            assert private_stack.process.poll() is None, "the dispatch center exited"
            return await _status(http, f"{center}/healthz") == 200

        await eventually(healthy, timeout_s=60)
        readyz = await http.get(f"{center}/readyz")
        assert (readyz.status_code, readyz.json()) == (
            503,
            {"ready": False, "waiting_for": ["consumers"]},
        )
        assert await _intake(http, private_stack, body) in (200, 201)

        # Still trying to reach the broker: a SIGTERM stops it promptly and cleanly.
        process = private_stack.process
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down.
        assert await asyncio.to_thread(process.wait, 30) == -signal.SIGTERM
        local.processes.pop(CENTER)
        log = (local.logs / f"{CENTER}.log").read_text(errors="replace")
        assert f"{CENTER} stopped" in log.split("Shutting down")[-1], log[-2000:]

        # The broker comes back empty (Tansu keeps nothing): the order accepted meanwhile is
        # published once the center is up again.
        local.broker.start()
        await create_topics(KafkaSettings(bootstrap=local.broker.bootstrap))
        local.start_service(CENTER)
        await asyncio.to_thread(local.wait_ready, (CENTER,), 90)
    conn = await asyncpg.connect(local.database_url)
    try:

        async def published() -> bool:
            events, unsent = await conn.fetchrow(
                "SELECT count(*), count(*) FILTER (WHERE o.sent_at IS NULL)"
                " FROM dispatch_center.outbox o JOIN dispatch_center.orders r ON r.id::text = o.key"
                " WHERE r.external_id = $1",
                body["external_id"],
            )
            return events > 0 and unsent == 0

        await eventually(published, timeout_s=60)
    finally:
        await conn.close()
