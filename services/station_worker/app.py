"""Wires the station worker: its schema, consumers, API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.station_worker import consumers, dashboard, erasure, stream, views
from services.station_worker.settings import StationSettings
from shared.runtime import ServiceSpec, create_service_app
from shared.settings import Settings

SPEC = ServiceSpec[StationSettings](
    name="station_worker",
    title="swdispatch station worker",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers.consumers,
    routers=[views.router, dashboard.router],
    background=[stream.listen_for_queue_changes, erasure.erase_personal_data],
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """``settings`` given as plain :class:`Settings` are completed with the station's own."""
    if not isinstance(settings, StationSettings):
        settings = StationSettings(**settings.model_dump()) if settings else StationSettings()
    return create_service_app(SPEC, settings)
