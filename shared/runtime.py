"""Bootstrap shared by the three services: pool, broker, consumers, outbox relay, HTTP app.

A service describes itself with a :class:`ServiceSpec`; :func:`create_service_app` wires it
into a FastAPI app whose lifespan starts and stops everything in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request
from faststream.kafka import KafkaBroker

from shared import topics
from shared.consumer import Applier, EventConsumer, subscribe
from shared.db import Pool, create_pool
from shared.docs import install_docs
from shared.http import (
    COMMON_RESPONSES,
    answer_errors_as_problems,
    answer_transient_errors_503,
    install_middleware,
    ops_router,
)
from shared.migrations import migrate, service_migrations
from shared.ops_metrics import OPS_JOBS
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.strings import reject_control_characters
from shared.web import install_web

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=Settings)
App = FastAPI
"""What a service's ``create_app`` returns (its ``app.py`` names no web framework)."""


@dataclass(frozen=True)
class ServiceSpec(Generic[SettingsT]):
    """A service, as its ``app.py`` declares it. Its migrations are ``services/<name>/migrations``
    (:func:`shared.migrations.service_migrations`)."""

    name: str
    """The service's name, its database schema, and the name of its consumer group."""
    settings: type[SettingsT]
    applier: Callable[[SettingsT], Applier]
    """How the service applies the events it reads: its one consumer reads
    ``topics.READ_BY[name]``."""
    routers: Sequence[APIRouter]
    jobs: Sequence[Callable[[Runtime[SettingsT]], Awaitable[None]]] = field(default=())
    """Long-running jobs (timers); each is restarted with backoff if it fails."""
    check: Callable[[SettingsT], object] | None = None
    """What must hold of the settings for the service to start (raises when it does not)."""

    @property
    def title(self) -> str:
        return f"swdispatch {self.name.replace('_', ' ')}"

    def create_app(self, settings: Settings | None = None) -> App:
        """The service's app; ``settings`` given as plain :class:`Settings` are completed with
        the service's own."""
        if not isinstance(settings, self.settings):
            settings = self.settings(**settings.model_dump()) if settings else self.settings()
        if self.check is not None:
            self.check(settings)
        return create_service_app(self, settings)


class Runtime(Generic[SettingsT]):
    def __init__(self, spec: ServiceSpec[SettingsT], settings: SettingsT) -> None:
        self.spec = spec
        self.settings = settings
        self._pool: Pool | None = None
        self._broker: KafkaBroker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._consumers_start: asyncio.Task[None] | None = None
        self.relay: OutboxRelay | None = None
        self.consumers_started = False
        self.consumer_groups: list[str] = []

    @property
    def pool(self) -> Pool:
        assert self._pool is not None, "runtime not started"
        return self._pool

    @property
    def broker(self) -> KafkaBroker:
        assert self._broker is not None, "runtime not started"
        return self._broker

    async def start(self) -> None:
        """Everything HTTP needs (schema, pool) before returning; the consumers, the outbox
        relay and the jobs start in the background, so intake is served while the consumer
        groups are still joining (or Kafka is not reachable yet)."""
        s = self.settings
        if s.migrate_on_start:
            await migrate(
                s.migration_database_url or s.database_url,
                self.spec.name,
                service_migrations(self.spec.name),
            )
        self._pool = await create_pool(s, self.spec.name)
        self._consumers_start = asyncio.create_task(self._start_consumers(), name="consumers")
        self.relay = OutboxRelay(
            database_url=s.database_url,
            schema=self.spec.name,
            kafka=s.kafka,
            batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s,
            retention=timedelta(hours=s.outbox_retention_hours),
            replay_window=timedelta(seconds=s.outbox_replay_window_s),
            readers=topics.READERS,
            leader_timeout_s=s.outbox_leader_timeout_s,
        )
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        for job in (*OPS_JOBS, *self.spec.jobs):
            self._tasks.append(asyncio.create_task(self._keep_running(job), name=job.__name__))
        log.info("%s serving; consumers starting", self.spec.name)

    async def _start_consumers(self) -> None:
        """Start the broker and its subscribers (which waits for the group joins); after a
        failure, stop what did start and try again with a new broker."""
        from shared.kafka import create_broker

        s = self.settings
        backoff = 0.5
        while True:
            broker = self._broker = create_broker(
                s.kafka, service=self.spec.name, graceful_timeout_s=s.graceful_timeout_s
            )
            try:
                consumer = EventConsumer(
                    name=self.spec.name,
                    topics=topics.READ_BY[self.spec.name],
                    pool=self.pool,
                    broker=broker,
                    applier=self.spec.applier(s),
                    max_event_bytes=s.kafka.max_event_bytes,
                )
                subscribe(broker, consumer, s.kafka)
                await broker.start()
            except Exception as exc:
                log.warning(
                    "%s consumers did not start (%s); retrying in %.1fs",
                    self.spec.name,
                    type(exc).__name__,
                    backoff,
                )
                with contextlib.suppress(Exception):
                    await broker.stop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self.consumer_groups = [consumer.group_id]
            self.consumers_started = True
            log.info("%s consumers started", self.spec.name)
            return

    async def _keep_running(self, job: Callable[[Runtime[SettingsT]], Awaitable[None]]) -> None:
        backoff = 0.5
        while True:
            try:
                await job(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting in %.1fs", job.__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def stop(self) -> None:
        # Consumers first (they finish the message in hand), then the jobs, then the pool. A
        # start still under way is cancelled first, so that its broker is stopped too.
        if self._consumers_start is not None:
            self._consumers_start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumers_start
        if self._broker is not None:
            await self._broker.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pool is not None:
            await self._pool.close()
        log.info("%s stopped", self.spec.name)

    async def readiness(self) -> list[str]:
        """What the service still waits for; empty when it is ready."""
        waiting = [] if self.consumers_started else ["consumers"]
        try:
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
        except Exception:
            waiting.insert(0, "database")
        return waiting


def create_service_app(spec: ServiceSpec[SettingsT], settings: SettingsT) -> FastAPI:
    runtime = Runtime(spec, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=spec.title,
        version="1",
        lifespan=lifespan,
        dependencies=[Depends(reject_control_characters)],
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    install_web(app, spec.name)
    app.state.runtime = runtime
    answer_errors_as_problems(app)
    answer_transient_errors_503(app)
    install_middleware(app, service=spec.name, max_body_bytes=settings.max_request_bytes)
    app.include_router(ops_router(runtime.readiness))
    for router in spec.routers:
        app.include_router(router, responses=COMMON_RESPONSES)
    return app


# Dependencies are coroutines: FastAPI runs a plain function in a worker thread, a thread
# hand-off per request for two attribute reads.
async def current_runtime(request: Request) -> Runtime[Any]:
    """A service types it with its settings: ``Annotated[Runtime[ItsSettings],
    Depends(current_runtime)]`` in its ``api/deps.py``."""
    runtime: Runtime[Any] = request.app.state.runtime
    return runtime


async def _pool(request: Request) -> Pool:
    runtime: Runtime[Any] = request.app.state.runtime
    return runtime.pool


RuntimeDep = Annotated[Runtime[Any], Depends(current_runtime)]
PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
