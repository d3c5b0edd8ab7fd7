"""Advisory lock namespaces: the first key of PostgreSQL's two-key advisory locks, one per kind
of lock, so that keys hashed from different things (a schema's outbox, an order id) cannot
collide. A one-key lock (``pg_advisory_lock(bigint)``) never meets a two-key one."""

from __future__ import annotations

from enum import IntEnum


class LockNamespace(IntEnum):
    # The session lock a service's outbox relay leader holds; key: hashtext(schema).
    OUTBOX_RELAY = 1
    # The audit's per-order transaction locks; key: hashtext(order id).
    AUDIT_ORDER = 2
    # The audit's checkpoint lock (appends share it, a checkpoint takes it alone); key: 0.
    AUDIT_CHECKPOINT = 3
