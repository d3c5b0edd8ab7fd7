"""The supervisor's backoff: doubling up to the cap while a service keeps exiting, back to the
first delay once it stayed up; no restart of a service stopped on purpose."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from swdispatch.stack import LocalStack, Ports
from swdispatch.supervisor import Supervisor


class ExitedProcess:
    def __init__(self, code: int | None) -> None:
        self.code = code

    def poll(self) -> int | None:
        return self.code


class FakeStack(LocalStack):
    """Each start makes a process that has already exited, unless told otherwise."""

    def __init__(self) -> None:
        super().__init__(root=Path("/nonexistent"), ports=Ports(1, 2, 3, 4, 5))
        self.starts = 0
        self.next_code: int | None = 1

    def start_service(self, service: str) -> None:
        self.starts += 1
        self.processes[service] = cast(Any, ExitedProcess(self.next_code))


def _wait_for(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_run() -> None:
    stack = FakeStack()
    stack.processes["audit"] = cast(Any, ExitedProcess(-9))
    lines: list[str] = []
    supervisor = Supervisor(
        stack,
        ("audit",),
        first_backoff_s=0.1,
        max_backoff_s=0.4,
        stable_after_s=1.0,
        say=lines.append,
    )
    supervisor.start()
    try:
        _wait_for(lambda: len(lines) >= 8)
        exits = [line for line in lines if "exited" in line][:4]
        assert exits == [
            "audit exited with code -9; restarting in 0.1 s",
            "audit exited with code 1; restarting in 0.2 s",
            "audit exited with code 1; restarting in 0.4 s",
            "audit exited with code 1; restarting in 0.4 s",
        ]
        # Up for longer than stable_after_s, then it exits: the first delay again.
        stack.next_code = None
        _wait_for(lambda: stack.processes["audit"].poll() is None)
        time.sleep(1.2)
        seen = len(lines)
        stack.processes["audit"] = cast(Any, ExitedProcess(0))
        _wait_for(lambda: len(lines) > seen)
        assert lines[seen] == "audit exited with code 0; restarting in 0.1 s"
    finally:
        supervisor.stop()


def test_a_service_stopped_on_purpose_is_not_restarted() -> None:
    stack = FakeStack()
    stack.processes["audit"] = cast(Any, ExitedProcess(0))
    lines: list[str] = []
    supervisor = Supervisor(stack, ("audit",), first_backoff_s=0.5, say=lines.append)
    supervisor.start()
    try:
        _wait_for(lambda: len(lines) >= 1)
        del stack.processes["audit"]  # what stop_service does
        time.sleep(1.0)
        assert stack.starts == 0
    finally:
        supervisor.stop()


class FailingStartStack(FakeStack):
    """The first ``failures`` starts raise, as a refused fork would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.next_code = None

    def start_service(self, service: str) -> None:
        if self.failures:
            self.failures -= 1
            self.starts += 1
            raise BlockingIOError(11, "Resource temporarily unavailable")
        super().start_service(service)


def test_a_start_that_fails_is_tried_again_after_the_backoff() -> None:
    stack = FailingStartStack(failures=2)
    stack.processes["audit"] = cast(Any, ExitedProcess(-9))
    lines: list[str] = []
    supervisor = Supervisor(
        stack, ("audit",), first_backoff_s=0.1, max_backoff_s=0.4, say=lines.append
    )
    supervisor.start()
    try:
        _wait_for(lambda: "audit restarted" in lines)
        assert lines == [
            "audit exited with code -9; restarting in 0.1 s",
            "audit could not be started (BlockingIOError: [Errno 11] Resource temporarily"
            " unavailable); trying again in 0.2 s",
            "audit could not be started (BlockingIOError: [Errno 11] Resource temporarily"
            " unavailable); trying again in 0.4 s",
            "audit restarted",
        ]
        assert stack.processes["audit"].poll() is None
    finally:
        supervisor.stop()
