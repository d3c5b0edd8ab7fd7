"""Verify the trail: every entry's keyed hash and link, trail against inbox both ways, and the
whole trail against the signed checkpoints kept outside the database.

- An edited entry no longer matches its HMAC, and a made-up one cannot (the key is not in the
  database); an entry with the old unkeyed hash after the first keyed one is refused too.
- A deleted, inserted or reordered entry breaks the next entry's ``prev_hash``.
- An event the audit applied but the trail lacks, or an entry no applied event accounts for, is
  found through the inbox.
- An event the audit never received (dead-lettered, lost on the way) leaves a hole in its
  producer's numbering of the order's events (the envelope's ``seq``).
- An entry at or below a checkpoint's horizon that was added, deleted (even the last of its
  order together with its inbox row), reordered or edited changes the fold the checkpoint
  signed (see jobs.write_checkpoint).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import replace
from pathlib import Path

from aiokafka.errors import KafkaError

from services.audit import store
from services.audit.domain import (
    GENESIS,
    PRODUCER_OF,
    BrokenLink,
    Checkpoint,
    Verification,
    fold,
    link_problem,
    missing_events,
)
from shared.db import Connection, Pool
from shared.dead_letters import Selection, read
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)
DEAD_LETTER_READ_TIMEOUT_S = 20


async def verify(
    pool: Pool,
    key: bytes,
    checkpoint_file: Path | None,
    consumer: str = "audit",
    kafka: KafkaSettings | None = None,
) -> Verification:
    broken: list[BrokenLink] = []
    checkpoints: list[Checkpoint] = []
    if checkpoint_file is not None:
        # Read before the snapshot: every entry a checkpoint covers committed before it.
        checkpoints, bad_lines = await asyncio.to_thread(
            store.read_checkpoints, checkpoint_file, key
        )
        broken += [BrokenLink(None, n, None, "bad_checkpoint") for n in bad_lines]
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        orders, entries = await _check_chains(conn, key, broken)
        await _check_inbox(conn, consumer, broken)
        await _check_checkpoints(conn, checkpoints, broken)
    if kafka is not None and any(b.problem == "missing_event" for b in broken):
        broken = await _on_dead_letter_topics(kafka, broken)
    newest = max(checkpoints, key=lambda c: c.max_seq, default=None)
    return Verification(
        ok=not broken,
        orders=orders,
        entries=entries,
        checkpointed_seq=newest.max_seq if newest else None,
        checkpointed_at=newest.at if newest else None,
        broken=broken,
    )


async def _check_chains(conn: Connection, key: bytes, broken: list[BrokenLink]) -> tuple[int, int]:
    """Each order's chain, and each producer's numbering of the order's events."""
    orders = entries = 0
    first_keyed = await store.first_keyed_seq(conn)
    order_id: uuid.UUID | None = None
    prev = GENESIS
    numbered: dict[str, set[int]] = {}

    def holes() -> None:
        for producer, n in missing_events(numbered):
            broken.append(BrokenLink(order_id, n, None, "missing_event", producer))

    async for row in store.chains(conn):
        entries += 1
        if row["order_id"] != order_id:
            holes()
            order_id, prev, numbered = row["order_id"], GENESIS, {}
            orders += 1
        problem = link_problem(key, prev, row, first_keyed)
        if problem is not None:
            broken.append(BrokenLink(row["order_id"], row["seq"], row["event_id"], problem))
        prev = row["hash"]
        producer = PRODUCER_OF.get(row["event_type"])
        if producer is not None and (n := row["event"].get("seq")) is not None:
            numbered.setdefault(producer, set()).add(n)
    holes()
    return orders, entries


async def _check_inbox(conn: Connection, consumer: str, broken: list[BrokenLink]) -> None:
    for event_id in await store.applied_but_missing(conn, consumer):
        broken.append(BrokenLink(None, None, event_id, "missing_entry"))
    for row in await store.not_in_inbox(conn, consumer):
        broken.append(BrokenLink(row["order_id"], row["seq"], row["event_id"], "not_in_inbox"))


async def _check_checkpoints(
    conn: Connection, checkpoints: list[Checkpoint], broken: list[BrokenLink]
) -> None:
    """Fold the trail in seq order and compare the fold at each checkpoint's horizon; report
    the first checkpoint that does not hold (the later ones cannot hold either)."""
    pending = sorted(checkpoints, key=lambda c: c.max_seq)
    digest, entries = GENESIS, 0

    def holds(checkpoint: Checkpoint) -> bool:
        if (checkpoint.entries, checkpoint.digest) == (entries, digest):
            return True
        broken.append(BrokenLink(None, checkpoint.max_seq, None, "checkpoint_mismatch"))
        return False

    async for row in store.hashes(conn):
        while pending and pending[0].max_seq < row["seq"]:
            if not holds(pending.pop(0)):
                return
        if not pending:
            return
        digest = fold(digest, row["seq"], row["hash"])
        entries += 1
    for checkpoint in pending:
        if not holds(checkpoint):
            return


async def _on_dead_letter_topics(
    kafka: KafkaSettings, broken: list[BrokenLink]
) -> list[BrokenLink]:
    """The missing events, each with the dead letter that holds it, if any."""
    selection = Selection(topics=tuple(set(PRODUCER_OF.values())))
    try:
        letters = await asyncio.wait_for(read(kafka, selection), DEAD_LETTER_READ_TIMEOUT_S)
    except (TimeoutError, KafkaError, OSError) as exc:
        log.warning("verify could not read the dead-letter topics: %s", exc)
        return broken
    found: dict[tuple[uuid.UUID, str, int], str] = {}
    for letter in letters:
        try:
            body = json.loads(letter.value)
            where = (uuid.UUID(body["order_id"]), letter.headers["swd-original-topic"], body["seq"])
        except (ValueError, KeyError, TypeError):
            continue
        found.setdefault(
            where, f"{letter.topic}:{letter.partition}:{letter.offset} {letter.reason}"
        )
    return [
        replace(b, dead_letter=found.get((b.order_id, b.producer, b.seq)))
        if b.problem == "missing_event" and b.order_id and b.producer and b.seq
        else b
        for b in broken
    ]
