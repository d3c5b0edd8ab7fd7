"""Audit settings."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from services.audit.domain import CENTER_INDICATORS, DEFAULT_TARGETS, INDICATORS
from shared.settings import Settings

_TARGETS_DOC = ", ".join(
    f"{name} {'>=' if (INDICATORS | CENTER_INDICATORS)[name] == 'at_least' else '<='} {target}"
    for name, target in DEFAULT_TARGETS.items()
)


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

    audit_evaluation_targets: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_TARGETS),
        description="SWD_AUDIT_EVALUATION_TARGETS, JSON: the target of each evaluation "
        "indicator (GET /v1/reports/evaluation); the ones not given keep their default. "
        f"Defaults: {_TARGETS_DOC}.",
    )
    audit_review_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="SWD_AUDIT_REVIEW_SHARE: the share of completed orders picked at random "
        "for a supervisor's review (a fixed function of the order id: a replay picks the same).",
    )
    audit_timezone: str = Field(
        default="Asia/Shanghai",
        description="SWD_AUDIT_TIMEZONE: the county's time zone, in which the months of the "
        "evaluation snapshots begin and end.",
    )
    audit_snapshot_after_days: float = Field(
        default=8,
        ge=0,
        description="SWD_AUDIT_SNAPSHOT_AFTER_DAYS: a month's evaluation is kept as a snapshot "
        "that never changes this many days after the month ends (its feedback window, 7 days "
        "by default, and a day for events on their way).",
    )
    audit_snapshot_interval_s: float = Field(
        default=3600, gt=0, description="how often the audit looks for a month to snapshot"
    )
    audit_satisfaction_window_days: float = Field(
        default=30,
        gt=0,
        description="SWD_AUDIT_SATISFACTION_WINDOW_DAYS: the gauge swd_satisfaction_rate covers "
        "the return visits answered in this many days up to now.",
    )

    @field_validator("audit_evaluation_targets")
    @classmethod
    def _known_targets(cls, targets: dict[str, float]) -> dict[str, float]:
        if unknown := set(targets) - set(DEFAULT_TARGETS):
            raise ValueError(
                f"no such indicator: {sorted(unknown)}; known: {list(DEFAULT_TARGETS)}"
            )
        return DEFAULT_TARGETS | targets

    @field_validator("audit_timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"no such time zone: {zone}") from e
        return zone

    @property
    def hmac_key(self) -> bytes:
        return self.audit_hmac_key.get_secret_value().encode()
