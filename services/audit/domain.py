"""The audit's rules, pure: the hash chain, the timeline of an order made from its trail, stage
outcomes, the report figures made from timelines, and what each reader may see.

No I/O here: store.py reads and writes, the use cases (trail.py, verify.py, reports.py) decide
with these rules.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum, auto
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel

from shared.domain import OrderStatus, Stage, current_deadline, current_stage
from shared.events import Envelope
from shared.stats import percentile

# -- The hash chain -------------------------------------------------------------------------
# Each entry's hash covers the previous entry's hash of the same order and the entry itself.
#
# Version 2 (every entry written now) is HMAC-SHA-256 keyed with ``SWD_AUDIT_HMAC_KEY``, which
# is not in the database, over the previous hash and the canonical JSON of the entry's columns
# (the redacted event and what is indexed from it), so whoever can write the database still
# cannot make a valid entry. Version 1 (entries written before migration 0003) is unkeyed
# SHA-256 over the previous hash and the redacted event; those entries are never rewritten.

GENESIS = "0" * 64
LEGACY_SHA256 = 1
HMAC_SHA256 = 2


class Row(Protocol):
    """A trail row as the store reads it (a record or a mapping)."""

    def __getitem__(self, key: str, /) -> Any: ...


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


def row_hash(key: bytes, prev_hash: str, row: Row) -> str:
    """:func:`link_hash` of a trail row (its ``event`` decoded)."""
    return link_hash(key, prev_hash, **{name: row[name] for name in _HASHED})


# What a keyed hash covers of an entry, besides the previous hash.
_HASHED = ("order_id", "event_id", "event_type", "occurred_at", "station_id", "event")


@dataclass(frozen=True)
class Link:
    """A new trail entry: an event, redacted, chained to the entry before it of its order."""

    order_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    station_id: str | None
    event: dict[str, Any]
    prev_hash: str
    hash: str
    hash_version: int = HMAC_SHA256


def chain(
    key: bytes, events: Iterable[Envelope[Any]], last_hash: Mapping[uuid.UUID, str]
) -> list[Link]:
    """The links of ``events`` in the order given, each after the last entry of its order
    (``last_hash``; :data:`GENESIS` for an order with none) or the link before it here."""
    last = dict(last_hash)
    links = []
    for e in events:
        station_id = getattr(e.payload, "station_id", None)
        redacted = e.redacted()
        prev = last.get(e.order_id, GENESIS)
        last[e.order_id] = link_hash(
            key,
            prev,
            order_id=e.order_id,
            event_id=e.event_id,
            event_type=e.type,
            occurred_at=e.occurred_at,
            station_id=station_id,
            event=redacted,
        )
        links.append(
            Link(
                e.order_id,
                e.event_id,
                e.type,
                e.occurred_at,
                station_id,
                redacted,
                prev,
                last[e.order_id],
            )
        )
    return links


Problem = Literal[
    "hash_mismatch",
    "prev_hash_mismatch",
    "legacy_hash",
    "missing_entry",
    "not_in_inbox",
    "checkpoint_mismatch",
    "bad_checkpoint",
]


def link_problem(
    key: bytes, prev_hash: str, row: Row, first_keyed_seq: int | None
) -> Problem | None:
    """What is wrong with a trail row that follows an entry hashed ``prev_hash`` (GENESIS for
    the first of its order); None when it holds. An unkeyed entry after the first keyed one
    (``first_keyed_seq``) is refused: keyed entries cannot be made without the key."""
    if row["prev_hash"] != prev_hash:
        return "prev_hash_mismatch"
    if row["hash_version"] == LEGACY_SHA256:
        if first_keyed_seq is not None and row["seq"] > first_keyed_seq:
            return "legacy_hash"
        return None if row["hash"] == legacy_link_hash(prev_hash, row["event"]) else "hash_mismatch"
    return None if row["hash"] == row_hash(key, prev_hash, row) else "hash_mismatch"


@dataclass(frozen=True)
class BrokenLink:
    order_id: uuid.UUID | None
    seq: int | None
    """For ``checkpoint_mismatch``, the checkpoint's horizon; for ``bad_checkpoint``, the line
    of the checkpoint file."""
    event_id: uuid.UUID | None
    problem: Problem


@dataclass(frozen=True)
class Verification:
    ok: bool
    orders: int
    entries: int
    checkpointed_seq: int | None
    """The horizon of the newest checkpoint: entries up to it are covered by checkpoints."""
    checkpointed_at: datetime | None
    broken: list[BrokenLink]


# -- Checkpoints ----------------------------------------------------------------------------
# A checkpoint says: the trail's entries up to ``max_seq`` are ``entries`` many, and folding
# their ``(seq, hash)`` in seq order gives ``digest``. It is signed with the chain's HMAC key.


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


# -- The timeline of an order ---------------------------------------------------------------
# A pure function of the *set* of the order's events: duplicates are dropped by event id and
# the events are taken in the order they happened (``occurred_at``, then event id), whatever
# order they arrived in. The trail recomputes an order from its whole trail on every event,
# and ``swdispatch audit rebuild`` does the same for every order, so both always agree.

ENDED = frozenset({OrderStatus.COMPLETED, OrderStatus.CLOSED, OrderStatus.CANCELLED})

# The status an event moves an order to; events not listed (received, a re-sent dispatch)
# leave the status as it is.
STATUS_AFTER = {
    "order.submitted": OrderStatus.SUBMITTED,
    "order.unroutable": OrderStatus.UNROUTABLE,
    "order.dispatched": OrderStatus.DISPATCHED,
    "order.accepted": OrderStatus.ACCEPTED,
    "order.rejected": OrderStatus.REJECTED,
    "order.escalated": OrderStatus.ESCALATED,
    "order.assigned": OrderStatus.ASSIGNED,
    "order.started": OrderStatus.IN_SERVICE,
    "order.completed": OrderStatus.COMPLETED,
    "order.closed": OrderStatus.CLOSED,
    "order.cancelled": OrderStatus.CANCELLED,
}

# The timeline's field that says when each stage was done.
STAGE_DONE: dict[Stage, str] = {
    Stage.DISPATCH: "dispatched_at",
    Stage.ACCEPT: "accepted_at",
    Stage.ASSIGN: "assigned_at",
    Stage.COMPLETE: "completed_at",
}

# The timeline's times after submission: when the order first reached each step.
STEP_TIMES = (
    "dispatched_at",
    "received_at",
    "accepted_at",
    "assigned_at",
    "started_at",
    "completed_at",
    "ended_at",
)

Outcome = Literal["met", "breached", "pending", "not_applicable"]


@dataclass(frozen=True)
class Dispatch:
    """One dispatch of the order to a station (re-sends of it are not new dispatches)."""

    dispatch_no: int
    station_id: str
    dispatched_at: datetime
    reason: str | None = None
    received_at: datetime | None = None
    rejected_at: datetime | None = None
    reject_reason_code: str | None = None


@dataclass(frozen=True)
class Timeline:
    order_id: str
    status: OrderStatus | None = None
    station_id: str | None = None
    worker_id: str | None = None
    category: str | None = None
    urgency: str | None = None
    deadlines: dict[Stage, datetime] = field(default_factory=dict)
    submitted_at: datetime | None = None
    """When the order was submitted; the times below are when it first reached each step."""
    dispatched_at: datetime | None = None
    received_at: datetime | None = None
    accepted_at: datetime | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    dispatches: tuple[Dispatch, ...] = ()
    rejections: int = 0
    escalations: int = 0
    events: int = 0

    @property
    def redispatches(self) -> int:
        return max(len(self.dispatches) - 1, 0)

    @property
    def current_stage(self) -> Stage | None:
        """The stage the order waits on now (shared.domain's rule); None when ended."""
        return None if self.status is None else current_stage(self.status)

    @property
    def current_deadline(self) -> datetime | None:
        return None if self.status is None else current_deadline(self.status, self.deadlines)

    def done_at(self, stage: Stage) -> datetime | None:
        done: datetime | None = getattr(self, STAGE_DONE[stage])
        return done

    def stage_outcome(self, stage: Stage, now: datetime) -> Outcome:
        """``met``, ``breached``, ``pending`` (open, deadline ahead) or ``not_applicable``
        (no deadline known, or the order ended before the deadline without this stage)."""
        deadline = self.deadlines.get(stage)
        if deadline is None:
            return "not_applicable"
        done = self.done_at(stage)
        if done is not None:
            return "met" if done <= deadline else "breached"
        if deadline < (self.ended_at or now):
            return "breached"
        return "pending" if self.ended_at is None else "not_applicable"

    def breached(self, now: datetime) -> list[Stage]:
        return [stage for stage in Stage if self.stage_outcome(stage, now) == "breached"]


def _first(current: datetime | None, at: datetime) -> datetime:
    return at if current is None else current


# Events written in one transaction may carry the same time: break ties by lifecycle step.
LIFECYCLE_RANK: dict[str, float] = {
    **{kind: rank for rank, kind in enumerate(STATUS_AFTER)},
    "order.received": 2.5,
    # The center escalates and redispatches in one transaction: the escalation comes first.
    "order.escalated": 1.5,
}


def _sort_key(event: dict[str, Any]) -> tuple[datetime, float, str]:
    return (
        datetime.fromisoformat(event["occurred_at"]),
        LIFECYCLE_RANK.get(event["type"], 99),
        str(event["event_id"]),
    )


def project(order_id: str, events: Iterable[dict[str, Any]]) -> Timeline:
    """The timeline of one order from its (redacted, JSON-form) events."""
    unique = {str(e["event_id"]): e for e in events}
    t = Timeline(order_id=order_id)
    dispatches: dict[int, Dispatch] = {}
    for event in sorted(unique.values(), key=_sort_key):
        t = _apply(t, dispatches, event)
    return replace(t, dispatches=tuple(dispatches[n] for n in sorted(dispatches)))


def _apply(t: Timeline, dispatches: dict[int, Dispatch], event: dict[str, Any]) -> Timeline:
    kind: str = event["type"]
    at = datetime.fromisoformat(event["occurred_at"])
    p: dict[str, Any] = event["payload"]
    t = replace(t, events=t.events + 1)
    if "deadlines" in p:
        t = replace(
            t,
            deadlines={
                stage: datetime.fromisoformat(p["deadlines"][f"{stage.value}_by"])
                for stage in Stage
            },
        )
    if "category" in p:
        t = replace(t, category=p["category"], urgency=p["urgency"])

    if _of_a_superseded_dispatch(t, dispatches, kind, p):
        return t
    if kind == "order.submitted":
        t = replace(t, submitted_at=at)
    elif kind == "order.dispatched":
        if t.submitted_at is None:
            t = replace(t, submitted_at=datetime.fromisoformat(p["submitted_at"]))
        no = int(p["dispatch_no"])
        if no in dispatches:
            return t  # a re-send (``resend_of``) of a dispatch: not a redispatch
        dispatches[no] = Dispatch(no, p["station_id"], at, reason=p.get("reason"))
        t = replace(t, dispatched_at=_first(t.dispatched_at, at), station_id=p["station_id"])
        if p.get("accepted_at"):
            # Back to a station that accepted an earlier dispatch in time: accepted then.
            accepted_at = datetime.fromisoformat(p["accepted_at"])
            t = replace(t, accepted_at=_first(t.accepted_at, accepted_at))
            return _move(t, OrderStatus.ACCEPTED, at)
    elif kind == "order.received":
        no = int(p["dispatch_no"])
        if no in dispatches and dispatches[no].received_at is None:
            dispatches[no] = replace(dispatches[no], received_at=at)
        t = replace(t, received_at=_first(t.received_at, at))
    elif kind == "order.rejected":
        no = int(p["dispatch_no"])
        if no in dispatches and dispatches[no].rejected_at is None:
            dispatches[no] = replace(
                dispatches[no], rejected_at=at, reject_reason_code=p["reason_code"]
            )
        t = replace(t, rejections=t.rejections + 1)
    elif kind == "order.escalated":
        t = replace(t, escalations=t.escalations + 1)
    elif kind == "order.accepted":
        t = replace(t, accepted_at=_first(t.accepted_at, at), station_id=p["station_id"])
    elif kind == "order.assigned":
        t = replace(t, assigned_at=_first(t.assigned_at, at), worker_id=p["worker_id"])
    elif kind == "order.started":
        t = replace(t, started_at=_first(t.started_at, at), worker_id=p["worker_id"])
    elif kind == "order.completed":
        t = replace(t, completed_at=_first(t.completed_at, at), worker_id=p["worker_id"])

    return _move(t, STATUS_AFTER.get(kind), at)


# What a station reports about the dispatch it holds.
STATION_PROGRESS = frozenset(
    {"order.accepted", "order.assigned", "order.started", "order.completed"}
)


def _of_a_superseded_dispatch(
    t: Timeline, dispatches: dict[int, Dispatch], kind: str, p: dict[str, Any]
) -> bool:
    """A station's report about a dispatch the order has moved on from (another station, an
    older dispatch number): the center ignores it, and so does the projection."""
    if kind in STATION_PROGRESS:
        return t.station_id is not None and p["station_id"] != t.station_id
    if kind == "order.rejected":
        return bool(dispatches) and int(p["dispatch_no"]) != max(dispatches)
    return False


def _move(t: Timeline, status: OrderStatus | None, at: datetime) -> Timeline:
    """Move to ``status``; an ended order stays ended (only a completed one can be closed)."""
    if status is None:
        return t
    if t.status in ENDED and not (
        t.status is OrderStatus.COMPLETED and status is OrderStatus.CLOSED
    ):
        return t
    ended_at = t.ended_at
    if status in ENDED and ended_at is None:
        ended_at = at
    return replace(t, status=status, ended_at=ended_at)


# -- Readers and what they see --------------------------------------------------------------

ReaderRole = Literal["supervisor", "station_manager"]


@dataclass(frozen=True)
class Reader:
    """Supervisors see every station, a station manager only their own."""

    id: str
    role: ReaderRole
    station_id: str | None

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    @property
    def own_station(self) -> str | None:
        """The one station the reader is limited to; None for a supervisor (every station)."""
        return None if self.is_supervisor else self.station_id

    def sees_station(self, station_id: str | None) -> bool:
        return self.is_supervisor or (station_id is not None and station_id == self.station_id)


RowT = TypeVar("RowT", bound=Row)


def visible_entries(reader: Reader, entries: Sequence[RowT]) -> list[RowT]:
    """The trail entries a reader sees: a station's reader
    sees only that station's events, not those of the center or of any other station the
    order was (re)dispatched to."""
    return [e for e in entries if reader.sees_station(e["station_id"])]


@dataclass(frozen=True)
class StageResult:
    deadline: datetime | None
    done_at: datetime | None
    outcome: Outcome


# What a station's reader does not see of an order now at another station.
AT_THE_CURRENT_STATION = ("status", "station_id", "worker_id", *STEP_TIMES)


@dataclass(frozen=True)
class SeenTimeline:
    """What one reader may see of an order's timeline."""

    timeline: Timeline
    """Blanked (:data:`AT_THE_CURRENT_STATION`, rejections its own) when the order moved on."""
    stages: dict[Stage, StageResult]
    dispatches: tuple[Dispatch, ...]
    """The dispatches to the reader's stations only."""


def seen_by(reader: Reader, t: Timeline, now: datetime) -> SeenTimeline | None:
    """None when the reader may see nothing of the order: neither held by nor ever sent to
    their station. An order at another station now shows only the reader's own dispatches,
    nothing of what the other station did with it."""
    own = tuple(d for d in t.dispatches if reader.sees_station(d.station_id))
    if reader.sees_station(t.station_id):
        stages = {
            stage: StageResult(
                t.deadlines.get(stage), t.done_at(stage), t.stage_outcome(stage, now)
            )
            for stage in Stage
        }
        return SeenTimeline(t, stages, own)
    if not own:
        return None
    unseen: dict[str, Any] = dict.fromkeys(AT_THE_CURRENT_STATION)
    blanked = replace(
        t,
        **unseen,
        rejections=sum(d.rejected_at is not None for d in own),
    )
    return SeenTimeline(blanked, {}, own)


# -- Report figures -------------------------------------------------------------------------
# - A stage is on time when done by its deadline; it is breached when done late, or not done
#   when its deadline passed (the order still open, or ended later). Stages still pending, or
#   skipped by an order that ended before their deadline, count in neither.
# - Durations are from submission until the stage was done; p50 and p90 interpolate linearly.
# - Rejection rate: rejected dispatches / dispatches. Grouped by station, a dispatch counts
#   for the station it went to, so a station that rejects an order is charged with it even
#   after the order moved on; by any other grouping it counts for the order's group.
# - Redispatch rate: orders dispatched more than once / orders dispatched at all.
# - Open backlog: the orders of the group not completed, closed or cancelled, and the age of
#   the oldest one since submission, as of the time of the report.

UNASSIGNED = "none"


class GroupBy(StrEnum):
    STATION = auto()
    CATEGORY = auto()
    URGENCY = auto()
    WORKER = auto()


# The timeline's field each grouping groups by.
GROUPED_BY: dict[GroupBy, str] = {
    GroupBy.STATION: "station_id",
    GroupBy.CATEGORY: "category",
    GroupBy.URGENCY: "urgency",
    GroupBy.WORKER: "worker_id",
}


@dataclass(frozen=True)
class StageFigures:
    done: int
    on_time: int
    breached: int
    on_time_rate: float | None
    p50_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class GroupFigures:
    group: str
    orders: int
    completed: int
    cancelled: int
    stages: dict[Stage, StageFigures]
    dispatches: int
    rejections: int
    rejection_rate: float | None
    redispatched_orders: int
    redispatch_rate: float | None
    open_backlog: int
    oldest_open_age_seconds: float | None


@dataclass(frozen=True)
class DispatchRow:
    order_id: str
    station_id: str
    rejected: bool


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def group_of(order: Timeline, group_by: GroupBy) -> str:
    value: str | None = getattr(order, GROUPED_BY[group_by])
    return value or UNASSIGNED


def stage_figures(orders: Sequence[Timeline], stage: Stage, now: datetime) -> StageFigures:
    outcomes = [o.stage_outcome(stage, now) for o in orders]
    durations = [
        (done - o.submitted_at).total_seconds()
        for o in orders
        if (done := o.done_at(stage)) is not None and o.submitted_at is not None
    ]
    on_time, breached = outcomes.count("met"), outcomes.count("breached")
    return StageFigures(
        done=len(durations),
        on_time=on_time,
        breached=breached,
        on_time_rate=_rate(on_time, on_time + breached),
        p50_seconds=percentile(durations, 0.5),
        p90_seconds=percentile(durations, 0.9),
    )


def figures(
    orders: Iterable[Timeline],
    dispatches: Iterable[DispatchRow],
    group_by: GroupBy,
    now: datetime,
) -> list[GroupFigures]:
    by_group: dict[str, list[Timeline]] = defaultdict(list)
    group_of_order: dict[str, str] = {}
    for order in orders:
        by_group[group_of(order, group_by)].append(order)
        group_of_order[order.order_id] = group_of(order, group_by)
    dispatches_by_group: dict[str, list[DispatchRow]] = defaultdict(list)
    for d in dispatches:
        key: str | None = (
            d.station_id if group_by is GroupBy.STATION else group_of_order.get(d.order_id)
        )
        if key is not None:
            dispatches_by_group[key].append(d)

    groups = []
    for name in sorted(by_group.keys() | dispatches_by_group.keys()):
        members = by_group.get(name, [])
        sent = dispatches_by_group.get(name, [])
        rejected = sum(d.rejected for d in sent)
        dispatched = [o for o in members if o.dispatches]
        redispatched = sum(1 for o in dispatched if o.redispatches)
        still_open = [o for o in members if o.ended_at is None]
        ages = [(now - o.submitted_at).total_seconds() for o in still_open if o.submitted_at]
        groups.append(
            GroupFigures(
                group=name,
                orders=len(members),
                completed=sum(1 for o in members if o.completed_at is not None),
                cancelled=sum(1 for o in members if o.status == "cancelled"),
                stages={stage: stage_figures(members, stage, now) for stage in Stage},
                dispatches=len(sent),
                rejections=rejected,
                rejection_rate=_rate(rejected, len(sent)),
                redispatched_orders=redispatched,
                redispatch_rate=_rate(redispatched, len(dispatched)),
                open_backlog=len(still_open),
                oldest_open_age_seconds=max(ages) if ages else None,
            )
        )
    return groups


def figures_for(
    reader: Reader, orders: Sequence[Timeline], group_by: GroupBy, now: datetime
) -> list[GroupFigures]:
    """The figures a reader sees: a station manager's cover the orders their station holds
    and the dispatches sent to it."""
    own = reader.own_station
    return figures(
        [o for o in orders if own is None or o.station_id == own],
        [
            DispatchRow(o.order_id, d.station_id, d.rejected_at is not None)
            for o in orders
            for d in o.dispatches
            if own is None or d.station_id == own
        ],
        group_by,
        now,
    )
