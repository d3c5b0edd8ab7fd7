"""Wires the dispatch center: its schema, consumers, API."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from fastapi import FastAPI

from services.dispatch_center import callbacks, consumers, operator_views, timers, views
from services.dispatch_center.settings import CenterSettings
from shared.runtime import ServiceSpec, create_service_app

SPEC = ServiceSpec[CenterSettings](
    name="dispatch_center",
    title="swdispatch dispatch center",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers.consumers,
    routers=[views.router, operator_views.router],
    background=[timers.run, callbacks.run],
)


def create_app(settings: CenterSettings | None = None) -> FastAPI:
    settings = settings or CenterSettings()
    Fernet(settings.callback_fernet_key())  # the center does not start without a valid key
    return create_service_app(SPEC, settings)
