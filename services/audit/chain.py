"""The hash chain: each entry's hash covers the previous entry's hash of the same order and the
entry itself.

Version 2 (every entry written now) is HMAC-SHA-256 keyed with ``SWD_AUDIT_HMAC_KEY``, which is
not in the database, over the previous hash and the canonical JSON of the entry's columns (the
redacted event and what is indexed from it), so whoever can write the database still cannot
make a valid entry. Version 1 (entries written before migration 0003) is unkeyed SHA-256 over
the previous hash and the redacted event; those entries are never rewritten.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

GENESIS = "0" * 64
LEGACY_SHA256 = 1
HMAC_SHA256 = 2


def canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def legacy_link_hash(prev_hash: str, event: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(event)).encode()).hexdigest()


def link_hash(
    key: bytes,
    prev_hash: str,
    *,
    order_id: uuid.UUID,
    event_id: uuid.UUID,
    event_type: str,
    occurred_at: datetime,
    station_id: str | None,
    event: dict[str, Any],
) -> str:
    entry = {
        "order_id": str(order_id),
        "event_id": str(event_id),
        "event_type": event_type,
        "occurred_at": occurred_at.astimezone(UTC).isoformat(),
        "station_id": station_id,
        "event": event,
    }
    return hmac.new(key, (prev_hash + canonical(entry)).encode(), hashlib.sha256).hexdigest()


def row_hash(key: bytes, prev_hash: str, row: Mapping[str, Any] | asyncpg.Record) -> str:
    """:func:`link_hash` of a trail row (its ``event`` decoded)."""
    return link_hash(
        key,
        prev_hash,
        order_id=row["order_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        station_id=row["station_id"],
        event=row["event"],
    )
