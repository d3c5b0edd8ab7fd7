"""Inbox: a consumer applies each event once, however often it arrives."""

from __future__ import annotations

import uuid

from shared.db import Connection


async def claim(conn: Connection, consumer: str, event_id: uuid.UUID) -> bool:
    """Record the event as applied by ``consumer``; False when it was applied before.

    Call inside the transaction that applies the event, so the record and the effect commit
    (or roll back) together.
    """
    status = await conn.execute(
        "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        consumer,
        event_id,
    )
    return bool(status == "INSERT 0 1")
