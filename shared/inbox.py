"""Inbox: a consumer applies each event once, however often it arrives."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from shared.db import Connection


async def claim(conn: Connection, consumer: str, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Record the events as applied by ``consumer``; return those not applied before.

    Call inside the transaction that applies the events, so the records and the effects commit
    (or roll back) together.
    """
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::uuid[])
           ON CONFLICT DO NOTHING RETURNING event_id""",
        consumer,
        event_ids,
    )
    return {row["event_id"] for row in rows}
