"""Dispatch center settings: deadlines per urgency (DOMAIN.md defaults, overridable)."""

from __future__ import annotations

from datetime import timedelta

from pydantic_settings import SettingsConfigDict

from shared.domain import Stage, Urgency
from shared.settings import Settings

DEFAULT_DEADLINES: dict[Urgency, dict[Stage, timedelta]] = {
    Urgency.EMERGENCY: {
        Stage.DISPATCH: timedelta(minutes=5),
        Stage.ACCEPT: timedelta(minutes=30),
        Stage.ASSIGN: timedelta(hours=1),
        Stage.COMPLETE: timedelta(hours=24),
    },
    Urgency.URGENT: {
        Stage.DISPATCH: timedelta(minutes=30),
        Stage.ACCEPT: timedelta(hours=4),
        Stage.ASSIGN: timedelta(hours=8),
        Stage.COMPLETE: timedelta(days=3),
    },
    Urgency.ROUTINE: {
        Stage.DISPATCH: timedelta(hours=4),
        Stage.ACCEPT: timedelta(hours=24),
        Stage.ASSIGN: timedelta(hours=48),
        Stage.COMPLETE: timedelta(days=15),
    },
}


class CenterSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="SWD_", env_nested_delimiter="__", extra="ignore")

    # e.g. SWD_DEADLINES='{"emergency": {"accept": "PT10M"}}' (ISO 8601 durations or seconds)
    deadlines: dict[Urgency, dict[Stage, timedelta]] = DEFAULT_DEADLINES

    # Timers: how often they look for due orders, when an unacknowledged dispatch is re-sent,
    # and how often an order is redispatched automatically (rejection, escalation) before it
    # is held for an operator.
    timer_interval_s: float = 1.0
    resend_interval_s: float = 60.0
    max_redispatches: int = 3

    # Intake: requests per integration per minute, unless the integration has its own limit.
    rate_limit_per_minute: int = 600

    # Status callbacks: per-attempt timeout, exponential backoff base and cap, attempts.
    callback_timeout_s: float = 5.0
    callback_backoff_base_s: float = 2.0
    callback_backoff_max_s: float = 600.0
    callback_max_attempts: int = 12

    def deadline_offsets(self, urgency: Urgency) -> dict[Stage, timedelta]:
        return {**DEFAULT_DEADLINES[urgency], **self.deadlines.get(urgency, {})}
