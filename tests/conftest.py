"""The real stack for integration tests, brought up once per test session.

- ``SWD_DATABASE_URL`` / ``SWD_KAFKA_BOOTSTRAP`` set: those external services are used;
- else, when a Docker engine answers: PostgreSQL and Kafka in testcontainers;
- else: embedded PostgreSQL and the Tansu broker (the default here and in CI).
The three services always run as their own processes, reached over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from swdispatch.stack import LocalStack, Ports
from tests.helpers import assert_no_personal_data_in_logs

# Settings the test services run with: fast group joins and short fetch waits on Tansu.
TEST_SERVICE_ENV = {
    "SWD_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "SWD_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "SWD_KAFKA_FETCH_MAX_WAIT_MS": "5",
    "SWD_OUTBOX_POLL_INTERVAL_S": "0.2",
    "SWD_OPS_METRICS_INTERVAL_S": "1",
    # Dispatch center: timers and status callbacks look for due work often; quick retries.
    "SWD_TIMER_INTERVAL_S": "0.2",
    "SWD_CALLBACK_BACKOFF_BASE_S": "0.3",
    "SWD_LOG_LEVEL": "INFO",
    "SWD_AUDIT_METRICS_REFRESH_INTERVAL_S": "0.5",
    # Station worker: erase a closed or cancelled order's personal data a second after it ends.
    "SWD_STATION_PERSONAL_DATA_RETENTION_S": "1",
    "SWD_STATION_ERASURE_INTERVAL_S": "0.3",
    "SWD_AUDIT_CHECKPOINT_INTERVAL_S": "1",
}


@dataclass
class RunningStack:
    local: LocalStack
    credentials: dict[str, Any]

    @property
    def urls(self) -> dict[str, str]:
        return self.local.urls

    @property
    def database_url(self) -> str:
        assert self.local.database_url
        return self.local.database_url

    @property
    def kafka_bootstrap(self) -> str:
        assert self.local.kafka_bootstrap
        return self.local.kafka_bootstrap

    @property
    def api_key(self) -> str:
        return str(self.credentials["integration"]["api_key"])

    def manager_token(self, station_id: str) -> str:
        return str(self.credentials["stations"][station_id]["manager_token"])

    @property
    def operator_token(self) -> str:
        return str(self.credentials["operator_token"])

    @property
    def supervisor_token(self) -> str:
        return str(self.credentials["audit_supervisor_token"])


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _containers() -> Iterator[tuple[str, str]]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:17", driver=None) as pg, KafkaContainer() as kafka:
        yield pg.get_connection_url(), kafka.get_bootstrap_server()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    database_url = os.environ.get("SWD_DATABASE_URL")
    bootstrap = os.environ.get("SWD_KAFKA_BOOTSTRAP")
    with contextlib.ExitStack() as cleanup:
        if not (database_url or bootstrap) and _docker_answers():
            database_url, bootstrap = cleanup.enter_context(_containers())
        local = LocalStack(
            root=tmp_path_factory.mktemp("stack"),
            ports=Ports.free(),
            database_url=database_url,
            kafka_bootstrap=bootstrap,
            service_env=TEST_SERVICE_ENV,
        )
        cleanup.callback(local.stop)
        local.start_infra()
        credentials = asyncio.run(local.prepare())
        for service in ("dispatch_center", "station_worker", "audit"):
            local.start_service(service)
        local.wait_ready()
        yield RunningStack(local, credentials)
    assert_no_personal_data_in_logs(local.logs)


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
async def db(stack: RunningStack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()
