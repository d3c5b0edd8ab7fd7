"""Signed checkpoints of the whole trail, kept outside the database.

A checkpoint says: the trail's entries up to ``max_seq`` are ``entries`` many, and folding
their ``(seq, hash)`` in seq order gives ``digest``. It is signed with the chain's HMAC key
and appended as one JSON line to ``SWD_AUDIT_CHECKPOINT_FILE``, which the database's writers
cannot reach. Verification recomputes the fold, so an entry older than a checkpoint that is
later added, removed (even the last of its order, with its inbox row), moved or changed no
longer matches it.

``max_seq`` is a horizon: the writer takes it while no append is in progress (appends hold
:func:`hold_off_checkpoints`), so no entry at or below it can commit afterwards.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from services.audit.chain import GENESIS, canonical
from services.audit.settings import AuditSettings
from shared.db import Connection, Pool
from shared.locks import LockNamespace

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

_LOCK = f"{int(LockNamespace.AUDIT_CHECKPOINT)}, 0"


class Checkpoint(BaseModel):
    at: datetime
    max_seq: int
    entries: int
    digest: str
    mac: str = ""

    def signed(self, key: bytes) -> Checkpoint:
        return self.model_copy(update={"mac": self._mac(key)})

    def valid(self, key: bytes) -> bool:
        return hmac.compare_digest(self.mac, self._mac(key))

    def _mac(self, key: bytes) -> str:
        body = canonical(self.model_dump(mode="json", exclude={"mac"}))
        return hmac.new(key, f"checkpoint:{body}".encode(), hashlib.sha256).hexdigest()


def fold(digest: str, seq: int, entry_hash: str) -> str:
    return hashlib.sha256(f"{digest}{seq}:{entry_hash}".encode()).hexdigest()


async def hold_off_checkpoints(conn: Connection) -> None:
    """Called by each append, in its transaction, before it takes a seq: the checkpoint writer
    waits for it to end."""
    await conn.execute(f"SELECT pg_advisory_xact_lock_shared({_LOCK})")


def read_checkpoints(path: Path, key: bytes) -> tuple[list[Checkpoint], list[int]]:
    """The validly signed checkpoints in ``path`` and the numbers of the lines that are not."""
    good: list[Checkpoint] = []
    bad: list[int] = []
    if not path.exists():
        return good, bad
    with path.open() as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                checkpoint = Checkpoint.model_validate_json(line)
            except ValidationError:
                bad.append(number)
                continue
            if checkpoint.valid(key):
                good.append(checkpoint)
            else:
                bad.append(number)
    return good, bad


def _last_checkpoint(path: Path, key: bytes) -> Checkpoint | None:
    """The last validly signed line (read from the end: the file grows by a line a minute)."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024))
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            checkpoint = Checkpoint.model_validate_json(line)
        except ValidationError:
            continue
        if checkpoint.valid(key):
            return checkpoint
    return None


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # two replicas may share the file
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def write_checkpoint(pool: Pool, key: bytes, path: Path) -> Checkpoint | None:
    """Extend the last checkpoint in ``path`` to the trail's horizon now and append it; None
    (and nothing written) when the trail has fewer entries than that checkpoint covered."""
    last = await asyncio.to_thread(_last_checkpoint, path, key)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
            horizon: int = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM trail")
        start = last or Checkpoint(at=datetime.now(UTC), max_seq=0, entries=0, digest=GENESIS)
        if horizon < start.max_seq:
            log.error("the trail ends below the last checkpoint: run swdispatch audit verify")
            return None
        digest, entries = start.digest, start.entries
        async with conn.transaction(isolation="repeatable_read"):
            async for row in conn.cursor(
                "SELECT seq, hash FROM trail WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                start.max_seq,
                horizon,
            ):
                digest = fold(digest, row["seq"], row["hash"])
                entries += 1
    checkpoint = Checkpoint(
        at=datetime.now(UTC), max_seq=horizon, entries=entries, digest=digest
    ).signed(key)
    await asyncio.to_thread(_append, path, checkpoint.model_dump_json())
    return checkpoint


async def keep_checkpointing(runtime: Runtime[AuditSettings]) -> None:
    """Background job: a checkpoint every ``SWD_AUDIT_CHECKPOINT_INTERVAL_S``."""
    settings = runtime.settings
    while True:
        await write_checkpoint(runtime.pool, settings.hmac_key, settings.audit_checkpoint_file)
        await asyncio.sleep(settings.audit_checkpoint_interval_s)
