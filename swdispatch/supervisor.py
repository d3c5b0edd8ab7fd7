"""Keeps the service processes of a :class:`LocalStack` running: one that exits is started again
after a backoff (1, 2, 4 ... 30 s; back to 1 s once it has stayed up a minute). A start that
fails (the fork refused under load, say) is tried again after the next backoff: the watching
thread must outlive every error, or nothing is restarted again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from swdispatch.console import say as _say
from swdispatch.stack import SERVICES, LocalStack


@dataclass
class Supervisor:
    stack: LocalStack
    services: tuple[str, ...] = SERVICES
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_after_s: float = 60.0
    say: Callable[[str], None] = _say

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the processes keep running); returns once no restart can follow."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        backoff = dict.fromkeys(self.services, self.first_backoff_s)
        started_at = dict.fromkeys(self.services, time.monotonic())
        restart_at: dict[str, float] = {}
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            for service in self.services:
                process = self.stack.processes.get(service)
                if process is None:  # stopped on purpose
                    restart_at.pop(service, None)
                elif service in restart_at:
                    if now >= restart_at[service]:
                        del restart_at[service]
                        try:
                            self.stack.start_service(service)
                        except Exception as exc:  # any failure: try again later
                            delay = backoff[service]
                            self.say(
                                f"{service} could not be started ({type(exc).__name__}: {exc});"
                                f" trying again in {delay:g} s"
                            )
                            restart_at[service] = now + delay
                            backoff[service] = min(delay * 2, self.max_backoff_s)
                            continue
                        started_at[service] = now
                        self.say(f"{service} restarted")
                elif (code := process.poll()) is not None:
                    if now - started_at[service] >= self.stable_after_s:
                        backoff[service] = self.first_backoff_s
                    delay = backoff[service]
                    self.say(f"{service} exited with code {code}; restarting in {delay:g} s")
                    restart_at[service] = now + delay
                    backoff[service] = min(delay * 2, self.max_backoff_s)
