"""schemathesis hooks (``SCHEMATHESIS_HOOKS``): about half the generated path parameters, query
strings and bodies get a NUL or another control character put into one of their strings. Plain
generation seldom makes one, and a field that lets one through to PostgreSQL is a 500."""

from __future__ import annotations

import copy
from typing import Any

import schemathesis
from hypothesis import strategies as st

CONTROL_CHARACTERS = st.sampled_from(
    ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\x9f"]
)

Path = tuple[str | int, ...]


def _string_paths(value: Any, path: Path = ()) -> list[Path]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _string_paths(item, (*path, key))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _string_paths(item, (*path, i))]
    return []


def _insert(value: Any, path: Path, char: str, at: int) -> Any:
    if not path:
        text: str = value
        at = min(at, len(text))
        return text[:at] + char + text[at:]
    changed = copy.copy(value)
    changed[path[0]] = _insert(value[path[0]], path[1:], char, at)
    return changed


def _sometimes_with_a_control_character(value: Any) -> st.SearchStrategy[Any]:
    paths = _string_paths(value)
    if not paths:
        return st.just(value)
    return st.one_of(
        st.just(value),
        st.builds(
            lambda path, char, at: _insert(value, path, char, at),
            st.sampled_from(paths),
            CONTROL_CHARACTERS,
            st.integers(0, 64),
        ),
    )


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> st.SearchStrategy[Any]:
    return _sometimes_with_a_control_character(path_parameters)


@schemathesis.hook
def flatmap_query(context: Any, query: Any) -> st.SearchStrategy[Any]:
    return _sometimes_with_a_control_character(query)


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    return _sometimes_with_a_control_character(body)
