"""Wires the dispatch center: its schema, consumers, API, background jobs."""

from __future__ import annotations

from services.dispatch_center import consumers, jobs
from services.dispatch_center.api import intake, operator
from services.dispatch_center.settings import CenterSettings, check_callback_key
from shared.runtime import ServiceSpec

SPEC = ServiceSpec(
    "dispatch_center",
    CenterSettings,
    consumers.applier,
    [intake.router, operator.router],
    jobs.ALL,
    check=check_callback_key,  # the center does not start without a valid key
)
create_app = SPEC.create_app
