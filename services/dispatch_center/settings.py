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

    def deadline_offsets(self, urgency: Urgency) -> dict[Stage, timedelta]:
        return {**DEFAULT_DEADLINES[urgency], **self.deadlines.get(urgency, {})}
