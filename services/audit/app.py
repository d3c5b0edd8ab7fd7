"""Wires the audit service: its schema, consumers, API, breach watch and metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.audit import checkpoints, consumers, metrics, views
from services.audit.settings import AuditSettings
from shared.runtime import ServiceSpec, create_service_app
from shared.settings import Settings

SPEC = ServiceSpec[AuditSettings](
    name="audit",
    title="swdispatch audit",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers.consumers,
    routers=[views.router],
    background=[metrics.watch_breaches, metrics.refresh_figures, checkpoints.keep_checkpointing],
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """``settings`` given as plain :class:`Settings` are completed with the audit's own."""
    if not isinstance(settings, AuditSettings):
        settings = AuditSettings(**settings.model_dump()) if settings else AuditSettings()
    return create_service_app(SPEC, settings)
