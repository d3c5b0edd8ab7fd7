"""Dispatch center settings: deadlines per urgency (docs/domain.md defaults, overridable)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from cryptography.fernet import Fernet
from pydantic import SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

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
    # The return visit: a completed order waiting this long for feedback closes without it
    # (closed_without_feedback). SWD_FEEDBACK_TIMEOUT_S; default 7 days.
    feedback_timeout_s: float = 7 * 24 * 3600.0

    # Intake: requests per integration per minute, unless the integration has its own limit.
    rate_limit_per_minute: int = 600

    # Status callbacks: one deadline for a whole attempt (resolve, connect, send, read),
    # exponential backoff base and cap, attempts, the most of a response body that is read.
    callback_timeout_s: float = 5.0
    callback_backoff_base_s: float = 2.0
    callback_backoff_max_s: float = 600.0
    callback_max_attempts: int = 12
    callback_max_response_bytes: int = 16 * 1024
    # Callbacks go over https to public addresses only. These hosts (names or IP literals,
    # comma-separated, e.g. "127.0.0.1,::1,localhost") may be called at any address, and over
    # plain http too when callback_allow_http; with callback_allowed_hosts_only no other host
    # is called or even resolved (local stacks: loopback only, no DNS query leaves).
    callback_allowed_hosts: Annotated[list[str], NoDecode] = []
    callback_allow_http: bool = False
    callback_allowed_hosts_only: bool = False
    # The Fernet key (cryptography's Fernet.generate_key()) that encrypts the integrations'
    # callback secrets in the database. The center does not start without it.
    callback_secret_key: SecretStr | None = None

    @field_validator("callback_allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            return [str(h).strip().strip("[]").lower() for h in value if str(h).strip()]
        return value

    def callback_fernet_key(self) -> str:
        if self.callback_secret_key is None or not self.callback_secret_key.get_secret_value():
            raise RuntimeError("SWD_CALLBACK_SECRET_KEY is not set (it encrypts callback secrets)")
        return self.callback_secret_key.get_secret_value()

    def deadline_offsets(self, urgency: Urgency) -> dict[Stage, timedelta]:
        return {**DEFAULT_DEADLINES[urgency], **self.deadlines.get(urgency, {})}


def check_callback_key(settings: CenterSettings) -> None:
    """The key that encrypts callback secrets is set and is a Fernet key."""
    Fernet(settings.callback_fernet_key())
