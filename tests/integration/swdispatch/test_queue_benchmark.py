"""The queue listing's latency with 10,000 orders at one station (p50 / p99 over HTTP).

Not part of the normal run: ``SWD_BENCHMARK=1 .venv/bin/pytest -s -m benchmark``.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RunningStack
from tests.integration.station_worker.station import new_station

pytestmark = [
    pytest.mark.integration,
    pytest.mark.benchmark,
    pytest.mark.skipif(not os.environ.get("SWD_BENCHMARK"), reason="set SWD_BENCHMARK=1"),
]

ORDERS = 10_000
REQUESTS = 300


async def test_queue_listing_latency_with_10000_orders(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    station = await new_station(stack, db, [("a", [], 10_000, True)])
    worker = next(iter(station.workers))
    # A realistic mix: most orders open, a tenth overdue, some assigned, some finished.
    await db.execute(
        """INSERT INTO station_worker.station_orders (order_id, station_id, status, dispatch_no,
               category, urgency, beneficiary_group, township_code, community_code, submitted_at,
               dispatch_by, accept_by, assign_by, complete_by, case_details, received_at,
               worker_id)
           SELECT gen_random_uuid(), $1,
               (ARRAY['dispatched','accepted','assigned','in_service','completed'])[1 + i % 5],
               1, 'elder_care', (ARRAY['emergency','urgent','routine'])[1 + i % 3],
               'elderly_in_hardship', 'TS-B', 'B-VILLAGE', now(), now(),
               now() + make_interval(mins => (i % 1000) - 100),
               now() + make_interval(mins => (i % 1000) + 60),
               now() + make_interval(days => 1 + i % 15),
               '{"beneficiary_name": "x", "beneficiary_phone": null, "address": "x",
                 "reporter_name": "x", "reporter_phone": "x", "reporter_role": "grid_member",
                 "description": "x", "consent_to_share": true}'::jsonb,
               now(), CASE WHEN i % 5 IN (2, 3) THEN $2 END
           FROM generate_series(1, $3) AS i""",
        station.id,
        worker,
        ORDERS,
    )
    await db.execute("ANALYZE station_worker.station_orders")
    url = f"{station.base}/v1/stations/{station.id}/orders"
    first = (await http.get(url, headers=station.auth())).json()
    variants: dict[str, dict[str, Any]] = {
        "first page (50, open orders)": {},
        "second page (cursor)": {"cursor": first["next_cursor"]},
        "overdue only": {"overdue": "true"},
        "status + urgency": {"status": "dispatched", "urgency": "emergency"},
        "one worker's orders": {"worker_id": worker},
        "200 per page": {"limit": 200},
    }
    print(f"\nqueue listing, {ORDERS} orders at one station, {REQUESTS} requests each:")
    for name, path, params in [
        ("baseline: GET /v1/me (auth only)", f"{station.base}/v1/me", {}),
        *((name, url, params) for name, params in variants.items()),
    ]:
        timings = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            resp = await http.get(path, params=params, headers=station.auth())
            timings.append(time.perf_counter() - started)
            assert resp.status_code == 200
        body = resp.json()
        assert body["orders"] if "orders" in body else body["station_id"] == station.id
        cuts = statistics.quantiles(timings, n=100)
        print(f"  {name:34} p50 {cuts[49] * 1000:6.1f} ms   p99 {cuts[98] * 1000:6.1f} ms")
    await db.execute("DELETE FROM station_worker.station_orders WHERE station_id = $1", station.id)
