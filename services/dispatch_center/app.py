"""Wires the dispatch center: its schema, consumers, API, background jobs."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet

from services.dispatch_center import consumers, jobs
from services.dispatch_center.api import intake, operator
from services.dispatch_center.settings import CenterSettings
from shared.runtime import App, ServiceSpec, create_service_app

SPEC = ServiceSpec[CenterSettings](
    name="dispatch_center",
    title="swdispatch dispatch center",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers.consumers,
    routers=[intake.router, operator.router],
    background=[jobs.timers, jobs.deliver_callbacks],
)


def create_app(settings: CenterSettings | None = None) -> App:
    settings = settings or CenterSettings()
    Fernet(settings.callback_fernet_key())  # the center does not start without a valid key
    return create_service_app(SPEC, settings)
