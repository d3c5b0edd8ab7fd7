"""Wires the audit service: its schema, consumers, API, breach watch, figures, checkpoints."""

from __future__ import annotations

from services.audit import consumers, jobs
from services.audit.api import readers
from services.audit.settings import AuditSettings
from shared.runtime import ServiceSpec

SPEC = ServiceSpec("audit", AuditSettings, consumers.applier, [readers.router], jobs.ALL)
create_app = SPEC.create_app
