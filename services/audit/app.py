"""Wires the audit service: its schema, consumers, API, breach watch, figures, checkpoints."""

from __future__ import annotations

from pathlib import Path

from services.audit import consumers, jobs
from services.audit.api import readers
from services.audit.settings import AuditSettings
from shared.runtime import App, ServiceSpec, create_service_app
from shared.settings import Settings

SPEC = ServiceSpec[AuditSettings](
    name="audit",
    title="swdispatch audit",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers.consumers,
    routers=[readers.router],
    background=[jobs.watch_breaches, jobs.refresh_figures, jobs.keep_checkpointing],
)


def create_app(settings: Settings | None = None) -> App:
    """``settings`` given as plain :class:`Settings` are completed with the audit's own."""
    if not isinstance(settings, AuditSettings):
        settings = AuditSettings(**settings.model_dump()) if settings else AuditSettings()
    return create_service_app(SPEC, settings)
