"""Numbered query parameters, the one way a statement is built from parts."""

from __future__ import annotations

from typing import Any


class Params:
    """``p(value)`` adds a parameter and gives its ``$n``; ``p.values`` go to the query."""

    def __init__(self, *values: Any) -> None:
        self.values: list[Any] = list(values)

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"
