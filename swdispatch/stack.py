"""The whole pipeline on one machine: infrastructure, topics, schemas, seed, three service
processes. ``swdispatch up`` and the integration tests both use it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from shared.kafka import create_topics
from shared.migrations import migrate, runtime_role
from shared.settings import KafkaSettings
from swdispatch import demo
from swdispatch.embedded import EmbeddedPostgres, TansuBroker, free_port

SERVICES = ("dispatch_center", "station_worker", "audit")


def migrations_dir(service: str) -> Path:
    return Path(__file__).resolve().parent.parent / "services" / service / "migrations"


async def migrate_all(
    database_url: str, role_passwords: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Every service's migrations as the owner (``database_url``), and each service's runtime
    role, with its password from ``role_passwords`` when given."""
    passwords = role_passwords or {}
    return {
        s: await migrate(database_url, s, migrations_dir(s), passwords.get(s)) for s in SERVICES
    }


def role_passwords_from_env() -> dict[str, str]:
    """``SWD_<SERVICE>_DB_PASSWORD``: the runtime roles' passwords `swdispatch migrate` sets."""
    variables = {s: f"SWD_{s.upper()}_DB_PASSWORD" for s in SERVICES}
    return {s: os.environ[v] for s, v in variables.items() if os.environ.get(v)}


def as_role(database_url: str, role: str, password: str) -> str:
    """``database_url`` with another user and password."""
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
    return parts._replace(netloc=netloc).geturl()


@dataclass
class Ports:
    postgres: int
    kafka: int
    dispatch_center: int
    station_worker: int
    audit: int

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(5)))


@dataclass
class LocalStack:
    root: Path
    ports: Ports
    database_url: str | None = None
    """An external database; the embedded one is started when None."""
    kafka_bootstrap: str | None = None
    """An external broker; the embedded Tansu is started when None."""
    service_env: dict[str, str] = field(default_factory=dict)
    role_passwords: dict[str, str] = field(
        default_factory=lambda: {s: secrets.token_urlsafe(24) for s in SERVICES}
    )
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def urls(self) -> dict[str, str]:
        return {s: f"http://127.0.0.1:{getattr(self.ports, s)}" for s in SERVICES}

    def start_infra(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.database_url is None:
            self.postgres = EmbeddedPostgres(self.root / "pgdata", self.ports.postgres)
            self.database_url = self.postgres.start()
        if self.kafka_bootstrap is None:
            self.broker = TansuBroker(self.ports.kafka, self.logs / "tansu.log")
            self.kafka_bootstrap = self.broker.start()

    @property
    def audit_hmac_key_file(self) -> Path:
        return self.root / "audit-hmac-key"

    @property
    def audit_checkpoint_file(self) -> Path:
        """Outside the database, as the audit's checkpoints must be."""
        return self.root / "audit-checkpoints.jsonl"

    def audit_env(self) -> dict[str, str]:
        """What the audit and its commands need besides :meth:`env`: the chain's key (made once
        per stack directory, so a kept trail still verifies) and the checkpoint file."""
        if not self.audit_hmac_key_file.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self.audit_hmac_key_file.touch(mode=0o600)
            self.audit_hmac_key_file.write_text(secrets.token_urlsafe(32))
        return {
            "SWD_AUDIT_HMAC_KEY": self.audit_hmac_key_file.read_text().strip(),
            "SWD_AUDIT_CHECKPOINT_FILE": str(self.audit_checkpoint_file),
        }

    def service_database_url(self, service: str) -> str:
        assert self.database_url, "start_infra first"
        return as_role(self.database_url, runtime_role(service), self.role_passwords[service])

    def env(self) -> dict[str, str]:
        """The environment of administrative commands: the owner's database URL."""
        assert self.database_url, "start_infra first"
        assert self.kafka_bootstrap, "start_infra first"
        return {
            "SWD_DATABASE_URL": self.database_url,
            "SWD_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "SWD_DISPATCH_CENTER_PORT": str(self.ports.dispatch_center),
            "SWD_STATION_WORKER_PORT": str(self.ports.station_worker),
            "SWD_AUDIT_PORT": str(self.ports.audit),
            **self.service_env,
        }

    async def prepare(self) -> dict[str, Any]:
        """Topics, schemas and demo data; return the demo credentials."""
        assert self.database_url
        await create_topics(KafkaSettings(bootstrap=self.kafka_bootstrap))
        await migrate_all(self.database_url, self.role_passwords)
        return await demo.seed(self.database_url)

    def start_service(self, service: str) -> None:
        log = (self.logs / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "swdispatch", service.replace("_", "-")],
            env={
                **os.environ,
                **self.env(),
                **(self.audit_env() if service == "audit" else {}),
                "SWD_DATABASE_URL": self.service_database_url(service),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, services: tuple[str, ...] = SERVICES, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        for service in services:
            url = f"{self.urls[service]}/readyz"
            while True:
                process = self.processes.get(service)
                if process is not None and process.poll() is not None:
                    raise RuntimeError(
                        f"{service} exited with {process.returncode}; see {self.logs}/{service}.log"
                    )
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} not ready; see {self.logs}/{service}.log")
                time.sleep(0.1)

    def stop_service(self, service: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(service, None)
        if process is None:
            return
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for service in list(self.processes):
            self.stop_service(service)
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
