"""The whole pipeline on one machine: infrastructure, topics, schemas, seed, the service
processes (one per service, or several replicas of each). ``swdispatch up`` and the integration
tests use it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from cryptography.fernet import Fernet

from shared.kafka import create_topics
from shared.migrations import migrate, runtime_role, service_migrations
from shared.settings import KafkaSettings
from swdispatch import demo
from swdispatch.embedded import EmbeddedPostgres, TansuBroker, free_port

SERVICES = ("dispatch_center", "station_worker", "audit")

# A stack on one machine (demo, tests, load sandbox) calls back loopback only: any other
# callback URL is refused at intake without being resolved, so no traffic leaves the machine.
LOOPBACK_CALLBACKS = {
    "SWD_CALLBACK_ALLOWED_HOSTS": "127.0.0.1,::1,localhost",
    "SWD_CALLBACK_ALLOW_HTTP": "true",
    "SWD_CALLBACK_ALLOWED_HOSTS_ONLY": "true",
}


async def migrate_all(
    database_url: str, role_passwords: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Every service's migrations as the owner (``database_url``), and each service's runtime
    role, with its password from ``role_passwords`` when given."""
    passwords = role_passwords or {}
    return {
        s: await migrate(database_url, s, service_migrations(s), passwords.get(s)) for s in SERVICES
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
    """By instance name (see ``instance``)."""
    replica_ports: dict[str, int] = field(default_factory=dict)
    """HTTP ports of replicas other than 0, by instance name, picked on first use."""
    postgres: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def callback_secret_key(self) -> str:
        """SWD_CALLBACK_SECRET_KEY from the service env or the environment, else a key kept
        beside the stack's data (so a restarted ``swdispatch up`` still reads its secrets)."""
        key = self.service_env.get("SWD_CALLBACK_SECRET_KEY") or os.environ.get(
            "SWD_CALLBACK_SECRET_KEY"
        )
        if key:
            return key
        path = self.root / "callback-secret.key"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.touch(0o600)
            path.write_bytes(Fernet.generate_key())
        return path.read_text().strip()

    @property
    def urls(self) -> dict[str, str]:
        """Replica 0 of each service."""
        return {s: self.url(s) for s in SERVICES}

    @staticmethod
    def instance(service: str, replica: int = 0) -> str:
        """The process's name, also its log's: the service's for replica 0, else ``service-N``."""
        return service if replica == 0 else f"{service}-{replica}"

    def port(self, service: str, replica: int = 0) -> int:
        if replica == 0:
            return int(getattr(self.ports, service))
        name = self.instance(service, replica)
        if name not in self.replica_ports:
            self.replica_ports[name] = free_port()
        return self.replica_ports[name]

    def url(self, service: str, replica: int = 0) -> str:
        return f"http://127.0.0.1:{self.port(service, replica)}"

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
            "SWD_CALLBACK_SECRET_KEY": self.callback_secret_key,
            **LOOPBACK_CALLBACKS,
            **self.service_env,
        }

    async def prepare(self) -> dict[str, Any]:
        """Topics, schemas and demo data; return the demo credentials."""
        assert self.database_url
        await create_topics(KafkaSettings(bootstrap=self.kafka_bootstrap))
        await migrate_all(self.database_url, self.role_passwords)
        return await demo.seed(self.database_url, self.callback_secret_key)

    def start_service(self, service: str, replica: int = 0) -> None:
        """Start one process of ``service``; replicas share the database, the broker and the
        consumer group, each has its own HTTP port and log."""
        name = self.instance(service, replica)
        env = {
            **os.environ,
            **self.env(),
            **(self.audit_env() if service == "audit" else {}),
            "SWD_DATABASE_URL": self.service_database_url(service),
            f"SWD_{service.upper()}_PORT": str(self.port(service, replica)),
        }
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "swdispatch", service.replace("_", "-")],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(
        self,
        services: tuple[str, ...] = SERVICES,
        timeout_s: float = 60,
        replicas: Iterable[int] = (0,),
    ) -> None:
        deadline = time.monotonic() + timeout_s
        for service in services:
            for replica in replicas:
                self._wait_ready(service, replica, deadline)

    def _wait_ready(self, service: str, replica: int, deadline: float) -> None:
        name = self.instance(service, replica)
        url = f"{self.url(service, replica)}/readyz"
        while True:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}; see {self.logs}/{name}.log"
                )
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready; see {self.logs}/{name}.log")
            time.sleep(0.1)

    def stop_service(self, service: str, sig: int = signal.SIGTERM, replica: int = 0) -> None:
        self._stop(self.instance(service, replica), sig)

    def _stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for name in list(self.processes):
            self._stop(name)
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
