"""Wires the audit service: its schema, consumers, API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.audit import consumers, views
from shared.runtime import ServiceSpec, create_service_app
from shared.settings import Settings

SPEC = ServiceSpec(
    name="audit",
    title="swdispatch audit",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers.consumers,
    routers=[views.router],
)


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(SPEC, settings or Settings())
