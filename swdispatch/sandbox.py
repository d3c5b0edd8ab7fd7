"""A throwaway stack for the simulator and the benchmark: embedded PostgreSQL, Tansu and the
three services on free ports in a temporary directory, seeded with a synthetic county."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swdispatch import county as county_mod
from swdispatch.county import County
from swdispatch.stack import SERVICES, LocalStack, Ports, migrate_all

# Services tuned for load rather than for a laptop demo: no log line per request, the relay
# woken by NOTIFY with a short fallback poll. The consumers' fetch wait stays the services'
# default; bench/NOTES.md has runs with other values (`--env SWD_KAFKA_FETCH_MAX_WAIT_MS=...`).
LOAD_SERVICE_ENV = {
    "SWD_LOG_LEVEL": "WARNING",
    "SWD_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "SWD_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "SWD_OUTBOX_POLL_INTERVAL_S": "0.2",
}


@dataclass
class Sandbox:
    stack: LocalStack
    credentials: dict[str, Any]
    county: County

    @property
    def urls(self) -> dict[str, str]:
        return self.stack.urls

    @property
    def database_url(self) -> str:
        assert self.stack.database_url
        return self.stack.database_url

    @property
    def kafka_bootstrap(self) -> str:
        assert self.stack.kafka_bootstrap
        return self.stack.kafka_bootstrap

    def service_pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.stack.processes.items()}


async def _prepare(stack: LocalStack, county: County) -> dict[str, Any]:
    from shared.kafka import create_topics
    from shared.settings import KafkaSettings

    assert stack.database_url
    await create_topics(KafkaSettings(bootstrap=stack.kafka_bootstrap))
    await migrate_all(stack.database_url)
    return await county_mod.seed(
        stack.database_url,
        county,
        integration="simulator",
        callback_secret_key=stack.callback_secret_key,
    )


@contextlib.contextmanager
def sandbox(county: County, service_env: dict[str, str] | None = None) -> Iterator[Sandbox]:
    with tempfile.TemporaryDirectory(prefix="swd-sandbox-") as root:
        stack = LocalStack(
            root=Path(root),
            ports=Ports.free(),
            service_env={**LOAD_SERVICE_ENV, **(service_env or {})},
        )
        try:
            stack.start_infra()
            credentials = asyncio.run(_prepare(stack, county))
            for service in SERVICES:
                stack.start_service(service)
            stack.wait_ready()
            yield Sandbox(stack, credentials, county)
        finally:
            stack.stop()
