"""The station's background jobs: live queue changes for the dashboards, erasing case
details a while after an order ended, and the overdue follow-ups gauge.

Live queue changes for the dashboards: PostgreSQL NOTIFY to each station's SSE streams.

A trigger on ``station_orders`` notifies every change (ids, status and version only, never
personal data), so a change made by any replica reaches the streams of every replica. Each
process holds one listening connection and fans the changes out to its subscribers, each of
which only ever gets its own station's changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
from prometheus_client import Gauge

from services.station_worker import store
from services.station_worker.settings import StationSettings
from shared.runtime import Runtime

log = logging.getLogger(__name__)

CHANNEL = "station_worker.queue"
SUBSCRIBER_BUFFER = 256
RESYNC: dict[str, Any] = {"resync": True}
"""Sent when changes may have been missed: the dashboard reloads its queue."""


class QueueHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    @contextlib.contextmanager
    def subscribe(self, station_id: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_BUFFER)
        self._subscribers[station_id].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[station_id].discard(queue)
            if not self._subscribers[station_id]:
                del self._subscribers[station_id]

    def publish(self, station_id: str, change: dict[str, Any]) -> None:
        for queue in self._subscribers.get(station_id, ()):
            _offer(queue, change)

    def resync_all(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                _offer(queue, RESYNC)


def _offer(queue: asyncio.Queue[dict[str, Any]], change: dict[str, Any]) -> None:
    """A subscriber too slow to keep up loses its backlog and is told to reload instead."""
    try:
        queue.put_nowait(change)
    except asyncio.QueueFull:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESYNC)


HUB = QueueHub()


async def listen_for_queue_changes(runtime: Runtime[StationSettings]) -> None:
    """Background job: LISTEN on the queue channel and feed :data:`HUB` until the connection
    drops (the runtime then restarts the job)."""
    conn = await asyncpg.connect(runtime.settings.database_url)
    lost = asyncio.Event()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        change = json.loads(str(payload))
        HUB.publish(change["station_id"], change)

    conn.add_termination_listener(lambda _conn: lost.set())
    try:
        await conn.add_listener(CHANNEL, on_notify)
        HUB.resync_all()  # whatever changed while this process was not listening
        await lost.wait()
        raise ConnectionError("the queue listener's connection closed")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 5)


ERASE_BATCH = 500


async def erase_expired(runtime: Runtime[StationSettings]) -> int:
    """Erase the case details (names, phones, address, description) of orders closed or
    cancelled more than ``SWD_STATION_PERSONAL_DATA_RETENTION_S`` ago; return how many.
    Everything else about the order stays; the audit never had them."""
    retention = timedelta(seconds=runtime.settings.station_personal_data_retention_s)
    erased = 0
    while True:
        count = await store.erase_expired(runtime.pool, retention, ERASE_BATCH)
        erased += count
        if count < ERASE_BATCH:
            return erased


async def erase_personal_data(runtime: Runtime[StationSettings]) -> None:
    """Background job: :func:`erase_expired` every ``SWD_STATION_ERASURE_INTERVAL_S``."""
    while True:
        await erase_expired(runtime)
        await asyncio.sleep(runtime.settings.station_erasure_interval_s)


FOLLOW_UPS_OVERDUE = Gauge(
    "swd_follow_ups_overdue",
    "Open follow-up tasks (跟进回访) whose due day has passed, by station",
    ["station"],
)


async def measure_follow_ups(runtime: Runtime[StationSettings]) -> dict[str, int]:
    """Set the overdue follow-ups gauge from the database (every replica reports the same
    figures, like the outbox backlog: dashboards take ``max`` over instances)."""
    overdue = await store.overdue_follow_ups(runtime.pool)
    FOLLOW_UPS_OVERDUE.clear()
    for station, n in overdue.items():
        FOLLOW_UPS_OVERDUE.labels(station).set(n)
    return overdue


async def report_follow_ups_overdue(runtime: Runtime[StationSettings]) -> None:
    """Background job: :func:`measure_follow_ups` every ``SWD_OPS_METRICS_INTERVAL_S``."""
    while True:
        await measure_follow_ups(runtime)
        await asyncio.sleep(runtime.settings.ops_metrics_interval_s)


ALL = [listen_for_queue_changes, erase_personal_data, report_follow_ups_overdue]
