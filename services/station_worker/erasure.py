"""The station's copy of an order's personal data is erased a while after the order ended.

The case details are nulled (and ``case_erased_at`` set) once the order has been closed or
cancelled for ``SWD_STATION_PERSONAL_DATA_RETENTION_S``; everything else about the order stays.
The audit never had them.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.station_worker.settings import StationSettings
from shared.db import Pool
from shared.runtime import Runtime

ERASE_BATCH = 500


async def erase_expired(pool: Pool, retention: timedelta) -> int:
    """Erase the case details of orders that ended more than ``retention`` ago; return how many."""
    erased = 0
    while True:
        status = await pool.execute(
            """UPDATE station_orders SET case_details = NULL, case_erased_at = now()
               WHERE order_id IN (
                   SELECT order_id FROM station_orders
                   WHERE case_details IS NOT NULL AND ended_at < now() - $1::interval
                   LIMIT $2 FOR UPDATE SKIP LOCKED)""",
            retention,
            ERASE_BATCH,
        )
        count = int(status.split()[-1])
        erased += count
        if count < ERASE_BATCH:
            return erased


async def erase_personal_data(runtime: Runtime[StationSettings]) -> None:
    """Background job: :func:`erase_expired` every ``SWD_STATION_ERASURE_INTERVAL_S``."""
    settings = runtime.settings
    retention = timedelta(seconds=settings.station_personal_data_retention_s)
    while True:
        await erase_expired(runtime.pool, retention)
        await asyncio.sleep(settings.station_erasure_interval_s)
