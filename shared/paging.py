"""The one cursor of keyset pagination: the sort key of the last item returned (a time, or
none, and an id), opaque to the client."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from shared.errors import InvalidField


def encode_cursor(at: datetime | None, item_id: uuid.UUID) -> str:
    raw = json.dumps([at.isoformat() if at else None, str(item_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | None, uuid.UUID]:
    """The key ``encode_cursor`` wrote; a 422 at ``("query", "cursor")`` for anything else."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at, item_id = raw
        when = datetime.fromisoformat(at) if at is not None else None
        if when is not None and when.tzinfo is None:
            raise ValueError("naive timestamp")
        return when, uuid.UUID(item_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidField(("query", "cursor"), "not a cursor this API returned") from None
