"""The trail: append events to their orders' hash chains and project them; read an order's
trail as a reader may see it."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from services.audit import store
from services.audit.domain import Reader, chain, project, visible_entries
from shared.db import Connection, Pool
from shared.errors import NotFound
from shared.events import DEPLOYMENT_ID, Envelope


async def append(conn: Connection, key: bytes, events: Sequence[Envelope[Any]]) -> None:
    """Append a batch of events to their orders' chains, then refresh those orders'
    projections: a handful of statements per batch, however many events it holds."""
    order_ids = list({event.order_id for event in events})
    await store.hold_off_checkpoints(conn)
    # Each link must see the one before it, whichever replica applies the event (during a
    # rebalance two may hold the same partition for a moment).
    await store.lock_orders(conn, order_ids)
    await store.append(conn, chain(key, events, await store.last_hashes(conn, order_ids)))
    await refresh_orders(conn, order_ids)


async def refresh_orders(conn: Connection, order_ids: Collection[uuid.UUID]) -> None:
    """Recompute the orders' projections from their whole trails and record any breach they
    show (the deployment's own chain, of credentials, is no order). Call with the orders'
    trail locks held."""
    trails = await store.trail_events(conn, [o for o in order_ids if o != DEPLOYMENT_ID])
    timelines = {order_id: project(str(order_id), events) for order_id, events in trails.items()}
    await store.save_timelines(conn, timelines)
    now = datetime.now(UTC)
    await store.record_breaches(
        conn,
        [(order_id, b, t) for order_id, t in timelines.items() for b in t.breaches(now)],
    )


async def rebuild(pool: Pool) -> int:
    """Recompute every order's projection from the trail, one order per transaction so the
    consumer can go on; return how many orders.

    Breaches already recorded stay (they are the record of when each was first seen);
    breaches the log shows but that were never recorded are added."""
    order_ids = await store.trail_orders(pool)
    for order_id in order_ids:
        async with pool.acquire() as conn, conn.transaction():
            await store.lock_orders(conn, [order_id])
            await refresh_orders(conn, [order_id])
    return len(order_ids)


async def credential_changes(pool: Pool) -> list[dict[str, Any]]:
    """The deployment's own chain: every credential made, rotated or revoked, by whom."""
    return await store.trail_of(pool, DEPLOYMENT_ID)


async def trail_for(pool: Pool, reader: Reader, order_id: uuid.UUID) -> list[dict[str, Any]]:
    """The order's entries the reader sees; NotFound when none."""
    visible = visible_entries(reader, await store.trail_of(pool, order_id))
    if not visible:
        raise NotFound("no such order")
    return visible
