"""Audit settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import Settings


class AuditSettings(Settings):
    # How often open orders are checked for a deadline that has just passed.
    audit_breach_check_interval_s: float = 1.0
    # How often the Prometheus figures are recomputed from the projection.
    audit_metrics_refresh_interval_s: float = 5.0
    # The key of the trail's HMAC chain (services/audit/chain.py). Required, and never stored in
    # the database: whoever can write the database must not be able to make a valid entry.
    audit_hmac_key: SecretStr = Field(min_length=32)
    # The signed chain checkpoints (services/audit/checkpoints.py), append-only JSON lines, on
    # storage the database's writers cannot reach; written at least once a minute.
    audit_checkpoint_file: Path
    audit_checkpoint_interval_s: float = Field(default=60.0, gt=0, le=60)

    @property
    def hmac_key(self) -> bytes:
        return self.audit_hmac_key.get_secret_value().encode()
