"""Wires the station worker: its schema, consumers, API."""

from __future__ import annotations

from pathlib import Path

from services.station_worker import consumers, jobs
from services.station_worker.api import dashboard, staff
from services.station_worker.settings import StationSettings
from shared.runtime import App, ServiceSpec, create_service_app
from shared.settings import Settings

SPEC = ServiceSpec[StationSettings](
    name="station_worker",
    title="swdispatch station worker",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers.consumers,
    routers=[staff.router, dashboard.router],
    background=[jobs.listen_for_queue_changes, jobs.erase_personal_data],
)


def create_app(settings: Settings | None = None) -> App:
    """``settings`` given as plain :class:`Settings` are completed with the station's own."""
    if not isinstance(settings, StationSettings):
        settings = StationSettings(**settings.model_dump()) if settings else StationSettings()
    return create_service_app(SPEC, settings)
