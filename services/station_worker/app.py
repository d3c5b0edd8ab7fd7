"""Wires the station worker: its schema, consumers, API."""

from __future__ import annotations

from services.station_worker import consumers, jobs
from services.station_worker.api import dashboard, staff
from services.station_worker.settings import StationSettings
from shared.runtime import ServiceSpec

SPEC = ServiceSpec(
    "station_worker", StationSettings, consumers.applier, [staff.router, dashboard.router], jobs.ALL
)
create_app = SPEC.create_app
