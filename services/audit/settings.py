"""Audit settings."""

from __future__ import annotations

from shared.settings import Settings


class AuditSettings(Settings):
    # How often open orders are checked for a deadline that has just passed.
    audit_breach_check_interval_s: float = 1.0
    # How often the Prometheus figures are recomputed from the projection.
    audit_metrics_refresh_interval_s: float = 5.0
