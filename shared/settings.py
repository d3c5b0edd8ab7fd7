"""Settings from the environment (prefix ``SWD_``), so one build runs on the embedded
stack, on Apache Kafka and on a managed PostgreSQL alike."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWD_KAFKA_", extra="ignore")

    bootstrap: str = "127.0.0.1:9092"
    client_id: str = "swdispatch"
    # Tansu rejects the idempotent producer; Apache Kafka in production turns it on.
    enable_idempotence: bool = False
    acks: Literal["all", "1", "0"] = "all"
    # Tansu holds a fetch for the whole wait even when data is there, so keep it short.
    fetch_max_wait_ms: int = 10
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 15_000
    linger_ms: int = 0
    # Consumers apply up to this many records per database transaction.
    consumer_batch_max_records: int = 200
    consumer_batch_timeout_ms: int = 10
    topic_partitions: int = 6
    topic_replication_factor: int = 1
    # Production: 2 with replication factor 3, so an acks=all write survives one broker loss.
    topic_min_insync_replicas: int | None = None
    max_event_bytes: int = 256 * 1024
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWD_DB_", extra="ignore")

    pool_min_size: int = 2
    pool_max_size: int = 10
    command_timeout_s: float = 30.0


class Settings(BaseSettings):
    """What every service process reads."""

    model_config = SettingsConfigDict(env_prefix="SWD_", extra="ignore")

    # The service's own role (shared/migrations.py: runtime_role), which changes rows only.
    database_url: str = "postgresql://postgres@127.0.0.1:5433/swdispatch"
    # The schemas' owner, for `swdispatch migrate` (and SWD_MIGRATE_ON_START); None: database_url.
    migration_database_url: str | None = None
    migrate_on_start: bool = False
    # How long a new credential (token, integration key) works; None: until revoked.
    credential_lifetime_days: float | None = Field(default=None, gt=0)
    host: str = "127.0.0.1"
    dispatch_center_port: int = 8001
    station_worker_port: int = 8002
    audit_port: int = 8003
    log_level: str = "INFO"
    outbox_poll_interval_s: float = 1.0
    outbox_batch_size: int = 500
    outbox_retention_hours: float = Field(
        168.0, description="sent outbox rows are kept this long (for inspection and replay)"
    )
    outbox_replay_window_s: float = Field(
        300.0,
        description="after the broker lost data (a Tansu restart, a deleted topic), events sent"
        " this recently are published again; consumers' inboxes drop the copies they applied",
    )
    outbox_leader_timeout_s: float = Field(
        60.0,
        description="a relay leader's database session that says nothing for this long is ended"
        " by the server (and a query that takes this long is given up), so that another replica"
        " takes over; more than the poll interval and a broker round trip",
    )
    graceful_timeout_s: float = 15.0
    max_request_bytes: int = 64 * 1024
    # How often consumer lag and outbox backlog are measured for /metrics.
    ops_metrics_interval_s: float = 15.0

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
