"""What ``swdispatch up`` prints while it runs. The demo traffic and the supervisor print from
different threads; ``print`` writes a line and its newline in two calls, so each line is written
whole, in one call, under one lock."""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()


def say(line: str) -> None:
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
