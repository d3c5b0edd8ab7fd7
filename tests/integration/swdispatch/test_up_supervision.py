"""`swdispatch up` survives a service dying: it restarts the process with backoff and says so,
the demo traffic carries on, and a SIGTERM still stops everything.

Runs `swdispatch up` itself, in its own directory and on free ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from swdispatch.embedded import free_port
from tests.conftest import TEST_SERVICE_ENV

pytestmark = pytest.mark.integration


class Output:
    """The lines a process prints, collected by a thread."""

    def __init__(self, process: subprocess.Popen[str], logs: Path) -> None:
        self.lines: list[str] = []
        self._process = process
        self._logs = logs
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.lines.append(line)

    def wait_for(
        self, wanted: Callable[[str], bool], after: int = 0, timeout_s: float = 120
    ) -> int:
        """The index of the first line from ``after`` on that is ``wanted``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines[after:], after):
                if wanted(line):
                    return i
            assert self._process.poll() is None, f"exited: {''.join(self.lines[-30:])}"
            time.sleep(0.1)
        raise AssertionError(
            f"no wanted line after line {after} within {timeout_s}s; all it printed:\n"
            f"{''.join(self.lines)}\n{self._log_tails()}"
        )

    def _log_tails(self) -> str:
        """The end of each service's log, to tell a service that did not come back from a line
        that was not printed."""
        tails = []
        for log in sorted(self._logs.glob("*.log")):
            tails.append(f"--- {log.name}:\n" + "".join(log.read_text().splitlines(True)[-15:]))
        return "\n".join(tails)


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, list[int]]]:
    ports = [free_port() for _ in range(5)]
    env = {
        **os.environ,
        **TEST_SERVICE_ENV,
        "SWD_LOG_LEVEL": "INFO",
        "SWD_DISPATCH_CENTER_PORT": str(ports[2]),
        "SWD_STATION_WORKER_PORT": str(ports[3]),
        "SWD_AUDIT_PORT": str(ports[4]),
    }
    command = [sys.executable, "-m", "swdispatch", "up", "--interval", "0.3"]
    process = subprocess.Popen(
        [*command, "--postgres-port", str(ports[0]), "--kafka-port", str(ports[1])],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process, Output(process, tmp_path / ".swdispatch" / "logs"), ports
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(120)


def test_up_restarts_a_killed_service_and_stops_everything_on_sigterm(
    up: tuple[subprocess.Popen[str], Output, list[int]], tmp_path: Path
) -> None:
    process, output, ports = up
    output.wait_for(lambda line: line.startswith("order "), timeout_s=240)

    center = [pid for pid, cmd in _children(process.pid).items() if "dispatch-center" in cmd]
    assert len(center) == 1, _children(process.pid)
    os.kill(center[0], signal.SIGKILL)
    noticed = output.wait_for(
        lambda line: line.strip() == "dispatch_center exited with code -9; restarting in 1 s"
    )
    restarted = output.wait_for(lambda line: line.strip() == "dispatch_center restarted", noticed)
    # The demo traffic carries on with the new process.
    output.wait_for(lambda line: line.startswith("order "), restarted, timeout_s=180)
    assert process.poll() is None

    left_behind = [*_children(process.pid)]
    postmaster = tmp_path / ".swdispatch" / "pgdata" / "postmaster.pid"
    left_behind.append(int(postmaster.read_text().split()[0]))
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    assert "stopped\n" in output.lines
    assert [pid for pid in left_behind if _alive(pid)] == []
    assert [port for port in ports if _listening(port)] == []
    assert not postmaster.exists()
