"""The one string type of request bodies and the one check of query and path parameters: no NUL
or other control character (C0, DEL, C1), which PostgreSQL refuses (NUL) or which have no place
in a code or a name; free text keeps tabs and line breaks. Either is a 422 naming the field."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import StringConstraints

CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
SINGLE_LINE = rf"^[^{CONTROL_CHARACTERS}]*$"
FREE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"

SingleLine = Annotated[str, StringConstraints(strip_whitespace=True, pattern=SINGLE_LINE)]
"""A code, a name, an id: printable characters only. Narrow it with another
``StringConstraints`` for the lengths."""
FreeText = Annotated[str, StringConstraints(strip_whitespace=True, pattern=FREE_TEXT)]
"""A description or a note: printable characters, tabs and line breaks."""

_CONTROL = re.compile(rf"[{CONTROL_CHARACTERS}]")


async def reject_control_characters(request: Request) -> None:
    """An app-wide dependency: every query and path parameter is single-line text."""
    errors = [
        {
            "type": "control_character",
            "loc": (where, name),
            "msg": "control characters are not allowed",
            "input": value,
        }
        for where, items in (
            ("path", request.path_params.items()),
            ("query", request.query_params.multi_items()),
        )
        for name, value in items
        if isinstance(value, str) and _CONTROL.search(value)
    ]
    if errors:
        raise RequestValidationError(errors)
