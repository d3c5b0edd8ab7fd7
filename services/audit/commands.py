"""``swdispatch`` subcommands of the audit service."""

from __future__ import annotations

from typing import Any


def add_commands(sub: Any) -> None:
    """None yet."""
