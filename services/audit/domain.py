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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum, auto
from typing import Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from shared.domain import OrderStatus, Satisfaction, Stage, current_deadline, current_stage
from shared.events import PUBLISHED_ON, Actor, Envelope, EventPayload, personal
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
    "missing_event",
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
    of the checkpoint file; for ``missing_event``, the number the producer gave the event the
    trail lacks (the envelope's ``seq``)."""
    event_id: uuid.UUID | None
    problem: Problem
    producer: str | None = None
    """For ``missing_event``: the topic of the producer whose numbering skips it."""
    dead_letter: str | None = None
    """For ``missing_event``: where it sits on a dead-letter topic and why
    (``<topic>:<partition>:<offset> <reason>``); None when it is on none (lost, or still on
    its way)."""


# The topic each event type is published on: its producer, which numbers an order's events.
PRODUCER_OF: dict[str, str] = {
    p.event_type: topic for topic, payloads in PUBLISHED_ON.items() for p in payloads
}


def missing_events(seqs: Mapping[str, Collection[int]]) -> list[tuple[str, int]]:
    """The numbers each producer (topic) skipped among an order's events in the trail: from 1
    up to the highest one it gave."""
    return [
        (producer, n)
        for producer, got in sorted(seqs.items())
        for n in range(1, max(got, default=0) + 1)
        if n not in got
    ]


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

# The service is over (for now): the order is no station's open work. A completed order waits
# for its return visit and may still be sent back for redo, which opens it again; a closed or
# cancelled one is final.
FINAL = frozenset({OrderStatus.CLOSED, OrderStatus.CLOSED_WITHOUT_FEEDBACK, OrderStatus.CANCELLED})
ENDED = FINAL | {OrderStatus.COMPLETED, OrderStatus.AWAITING_FEEDBACK}
# Where a completed order may go next: the loop after the service, nowhere else.
AFTER_SERVICE = frozenset(
    {
        OrderStatus.AWAITING_FEEDBACK,
        OrderStatus.SENT_BACK,
        OrderStatus.CLOSED,
        OrderStatus.CLOSED_WITHOUT_FEEDBACK,
    }
)

# The status an event moves an order to; events not listed (received, a re-sent dispatch, a
# return visit, a follow-up, supervision, a review) leave the status as it is. order.closed
# with ``without_feedback`` moves to closed_without_feedback (see _apply).
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
    "order.awaiting_feedback": OrderStatus.AWAITING_FEEDBACK,
    "order.sent_back": OrderStatus.SENT_BACK,
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
    send_back_no: int | None = None
    """Set for a redo (发回重办) after the order's send-back of this number."""


@dataclass(frozen=True)
class Feedback:
    """An answered return visit (回访); the comment is personal and never in the trail."""

    at: datetime
    source: str
    resolved: bool | None
    satisfaction: Satisfaction | None


@dataclass(frozen=True)
class RedoRound:
    """A redo after a send-back: its own accept and complete deadlines, counted afresh from the
    send-back, and when the station accepted and completed it again."""

    send_back_no: int
    dispatch_no: int
    station_id: str
    dispatched_at: datetime
    reason: str
    accept_by: datetime
    complete_by: datetime
    accepted_at: datetime | None = None
    completed_at: datetime | None = None

    def outcome(self, stage: Stage, now: datetime, ended_at: datetime | None) -> Outcome:
        """As :meth:`Timeline.stage_outcome`, for the redo's accept and complete stages."""
        if stage is Stage.ACCEPT:
            return stage_outcome(self.accept_by, self.accepted_at, now, ended_at)
        if stage is Stage.COMPLETE:
            return stage_outcome(self.complete_by, self.completed_at, now, ended_at)
        return "not_applicable"


StintEnd = Literal["completed", "rejected", "moved", "cancelled"]


@dataclass(frozen=True)
class Stint:
    """The time one station held the order: from a dispatch until the station completed the
    service, rejected the dispatch, or the order moved on (another dispatch, a completion
    elsewhere, a cancellation). The station is judged by its own deadlines, counted from this
    dispatch as the center counted them. A take-back (the station had accepted in time)
    continues the stint of the dispatch it accepted; a re-send is no new stint."""

    n: int
    dispatch_no: int
    round: int
    """0: the first service; n: the redo after send-back n."""
    station_id: str
    dispatched_at: datetime
    accept_by: datetime
    assign_by: datetime
    complete_by: datetime
    accepted_at: datetime | None = None
    assigned_at: datetime | None = None
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    end: StintEnd | None = None
    worker_id: str | None = None
    """The social worker last assigned in the stint (who completed it, when completed)."""

    @property
    def open(self) -> bool:
        return self.ended_at is None

    def stage(self, stage: Stage) -> tuple[datetime | None, datetime | None]:
        """The stage's deadline and when it was done (none for the center's dispatch)."""
        return {
            Stage.ACCEPT: (self.accept_by, self.accepted_at),
            Stage.ASSIGN: (self.assign_by, self.assigned_at),
            Stage.COMPLETE: (self.complete_by, self.completed_at),
        }.get(stage, (None, None))

    def outcome(self, stage: Stage, now: datetime) -> Outcome:
        """The stage's outcome for the station (:func:`stage_outcome`): a stint that ended
        before the deadline without the stage (a timely rejection, an operator's redispatch)
        is no breach; one that held the order past it is."""
        deadline, done = self.stage(stage)
        return stage_outcome(deadline, done, now, self.ended_at)

    def figure(self, stage: Stage, now: datetime) -> tuple[Outcome, datetime | None]:
        """The stage's outcome and when it fell (:func:`figure_at`)."""
        outcome = self.outcome(stage, now)
        return outcome, figure_at(outcome, *self.stage(stage))


def figure_at(
    outcome: Outcome, deadline: datetime | None, done: datetime | None
) -> datetime | None:
    """When a stage's figure falls, for the period it counts in: when it was done in time,
    else when its deadline passed (a late stage was breached then, whenever it was done);
    None for a stage that counts in no figure."""
    if outcome == "met":
        return done
    if outcome == "breached":
        return deadline
    return None


@dataclass(frozen=True)
class FollowUp:
    """A follow-up visit (跟进回访) the station owes by ``due_on``: set by a completion's
    ``follow_up_by`` or a visit's ``next_follow_up_by``; done by the next visit."""

    n: int
    station_id: str
    worker_id: str
    set_at: datetime
    due_on: date
    done_on: date | None = None
    done_at: datetime | None = None
    superseded_at: datetime | None = None
    """A redo reopened the order before the visit: it is owed no more (the station ends the
    task as superseded, and the redo's completion may owe a new one)."""

    def outcome(self, now: datetime) -> Outcome:
        """``met`` when visited on or before the due day, ``breached`` when visited later or
        still not visited after it (overdue), ``pending`` before then; ``not_applicable``
        when superseded by a redo before it was made."""
        if self.done_on is not None:
            return "met" if self.done_on <= self.due_on else "breached"
        if self.superseded_at is not None:
            return "not_applicable"
        return "breached" if now.astimezone(UTC).date() > self.due_on else "pending"

    @property
    def owed(self) -> bool:
        return self.done_on is None and self.superseded_at is None

    def overdue(self, now: datetime) -> bool:
        return self.done_on is None and self.outcome(now) == "breached"

    @property
    def deadline(self) -> datetime:
        """The end of the due day (UTC)."""
        return datetime.combine(self.due_on + timedelta(days=1), time(), UTC)


@dataclass(frozen=True)
class Review:
    """A supervisor's scores of a picked order (1-5 each); the comment is kept off the trail."""

    reviewer_id: str
    at: datetime
    timeliness: int
    professional_quality: int
    record_completeness: int


def stage_outcome(
    deadline: datetime | None, done: datetime | None, now: datetime, ended_at: datetime | None
) -> Outcome:
    """``met``, ``breached``, ``pending`` (open, deadline ahead) or ``not_applicable`` (no
    deadline known, or the order ended before the deadline without this stage)."""
    if deadline is None:
        return "not_applicable"
    if done is not None:
        return "met" if done <= deadline else "breached"
    if deadline < (ended_at or now):
        return "breached"
    return "pending" if ended_at is None else "not_applicable"


@dataclass(frozen=True)
class Timeline:
    order_id: str
    status: OrderStatus | None = None
    station_id: str | None = None
    worker_id: str | None = None
    category: str | None = None
    urgency: str | None = None
    deadlines: dict[Stage, datetime] = field(default_factory=dict)
    """The deadlines set at submission; a redo's fresh ones are its :class:`RedoRound`'s."""
    submitted_at: datetime | None = None
    """When the order was submitted; the times below are when it first reached each step."""
    dispatched_at: datetime | None = None
    received_at: datetime | None = None
    accepted_at: datetime | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    """When the service last ended (completed, closed, cancelled); None while it is open,
    again after a send-back."""
    dispatches: tuple[Dispatch, ...] = ()
    stints: tuple[Stint, ...] = ()
    last_event_at: datetime | None = None
    """When the latest of the order's events happened."""
    rejections: int = 0
    escalations: int = 0
    events: int = 0
    feedback_due_at: datetime | None = None
    feedbacks: tuple[Feedback, ...] = ()
    send_backs: int = 0
    supervision_opened_at: datetime | None = None
    supervision_station_id: str | None = None
    """The station whose work was sent back the third time: its supervisor closes it."""
    supervision_closed_at: datetime | None = None
    redos: tuple[RedoRound, ...] = ()
    follow_ups: tuple[FollowUp, ...] = ()
    review: Review | None = None

    @property
    def redispatches(self) -> int:
        """Dispatches after the first that are not redos (a rejection, an escalation)."""
        return max(sum(d.send_back_no is None for d in self.dispatches) - 1, 0)

    @property
    def served_at(self) -> datetime | None:
        """When the first service was completed."""
        first = next((s for s in self.stints if s.end == "completed"), None)
        return first.completed_at if first is not None else self.completed_at

    @property
    def served_by(self) -> str | None:
        """The station that completed the first service: whose work a review reviews (wherever
        a send-back took the order next). None before the first completion."""
        first = next((s for s in self.stints if s.end == "completed"), None)
        if first is not None:
            return first.station_id
        return self.station_id if self.completed_at is not None and not self.stints else None

    @property
    def feedback(self) -> Feedback | None:
        """The latest answered return visit: after a redo, the resident's last word."""
        return self.feedbacks[-1] if self.feedbacks else None

    @property
    def under_supervision(self) -> bool:
        return self.supervision_opened_at is not None and self.supervision_closed_at is None

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
        # The first service ended at its completion at the latest, whatever a redo reopened.
        end = self.completed_at or self.ended_at
        return stage_outcome(self.deadlines.get(stage), self.done_at(stage), now, end)

    def outcomes(self, stage: Stage, now: datetime) -> list[Outcome]:
        """The stage's outcome of the first service and of every redo (accept, complete)."""
        return [
            self.stage_outcome(stage, now),
            *(r.outcome(stage, now, self.ended_at) for r in self.redos),
        ]

    def breached(self, now: datetime) -> list[Stage]:
        return [stage for stage in Stage if self.stage_outcome(stage, now) == "breached"]

    def breaches(self, now: datetime) -> list[Breach]:
        """Every breach: of the first service's stages (round 0), of each redo's accept and
        complete (round: its send-back), of each follow-up owed (stage ``follow_up``)."""
        found = [Breach(s.value, 0, self.deadlines[s]) for s in self.breached(now)]
        for r in self.redos:
            for stage, deadline in ((Stage.ACCEPT, r.accept_by), (Stage.COMPLETE, r.complete_by)):
                if r.outcome(stage, now, self.ended_at) == "breached":
                    found.append(Breach(stage.value, r.send_back_no, deadline))
        found += [
            Breach(FOLLOW_UP, f.n, f.deadline)
            for f in self.follow_ups
            if f.outcome(now) == "breached"
        ]
        return found


FOLLOW_UP = "follow_up"


@dataclass(frozen=True)
class Breach:
    stage: str
    """A :class:`Stage`'s value, or :data:`FOLLOW_UP`."""
    round: int
    deadline: datetime


def _first(current: datetime | None, at: datetime) -> datetime:
    return at if current is None else current


# Events written in one transaction may carry the same time: break ties by lifecycle step.
LIFECYCLE_RANK: dict[str, float] = {
    **{kind: rank for rank, kind in enumerate(STATUS_AFTER)},
    "order.received": 2.5,
    # The center escalates and redispatches in one transaction: the escalation comes first.
    "order.escalated": 1.5,
    # The loop after completion (8): awaiting feedback, the answer, the send-back, supervision,
    # the redo's dispatch (see _sort_key), then closing (9).
    "order.awaiting_feedback": 8.2,
    "order.feedback_received": 8.3,
    "order.sent_back": 8.4,
    "order.supervision_opened": 8.5,
}
REDO_DISPATCH_RANK = 8.6


def _sort_key(event: dict[str, Any]) -> tuple[datetime, float, str]:
    kind = event["type"]
    rank = LIFECYCLE_RANK.get(kind, 99)
    if kind == "order.dispatched" and event["payload"].get("redo"):
        rank = REDO_DISPATCH_RANK
    return (datetime.fromisoformat(event["occurred_at"]), rank, str(event["event_id"]))


def project(order_id: str, events: Iterable[dict[str, Any]]) -> Timeline:
    """The timeline of one order from its (redacted, JSON-form) events."""
    unique = {str(e["event_id"]): e for e in events}
    t = Timeline(order_id=order_id)
    dispatches: dict[int, Dispatch] = {}
    ordered = sorted(unique.values(), key=_sort_key)
    for event in ordered:
        t = _apply(t, dispatches, event)
    last = datetime.fromisoformat(ordered[-1]["occurred_at"]) if ordered else None
    return replace(
        t, dispatches=tuple(dispatches[n] for n in sorted(dispatches)), last_event_at=last
    )


def _deadlines(p: dict[str, Any]) -> dict[Stage, datetime]:
    return {stage: datetime.fromisoformat(p["deadlines"][f"{stage.value}_by"]) for stage in Stage}


def _apply(t: Timeline, dispatches: dict[int, Dispatch], event: dict[str, Any]) -> Timeline:
    kind: str = event["type"]
    at = datetime.fromisoformat(event["occurred_at"])
    p: dict[str, Any] = event["payload"]
    t = replace(t, events=t.events + 1)
    if "deadlines" in p and not p.get("redo") and not t.redos:
        # The first service's deadlines; a redo carries its own (and so does a redispatch
        # during one), kept by its RedoRound.
        t = replace(t, deadlines=_deadlines(p))
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
        redo = p.get("redo")
        send_back_no = int(redo["send_back_no"]) if redo else None
        dispatches[no] = Dispatch(
            no, p["station_id"], at, reason=p.get("reason"), send_back_no=send_back_no
        )
        t = replace(t, dispatched_at=_first(t.dispatched_at, at), station_id=p["station_id"])
        accepted_at = datetime.fromisoformat(p["accepted_at"]) if p.get("accepted_at") else None
        t = _stint_dispatched(t, p, at, send_back_no, accepted_at)
        if redo and not any(r.send_back_no == send_back_no for r in t.redos):
            fresh = _deadlines(p)
            round_ = RedoRound(
                int(redo["send_back_no"]),
                no,
                p["station_id"],
                at,
                redo["reason"],
                fresh[Stage.ACCEPT],
                fresh[Stage.COMPLETE],
            )
            superseded = tuple(replace(f, superseded_at=at) if f.owed else f for f in t.follow_ups)
            t = replace(t, redos=(*t.redos, round_), follow_ups=superseded)
            return _move(t, OrderStatus.DISPATCHED, at, reopen=True)
        if redo:
            # A later dispatch of the same redo (after a rejection, an escalation, an operator's
            # redispatch, a take-back): the round moves to that station, accepted only when
            # the dispatch gives the order back to a station that had accepted it.
            last = t.redos[-1]
            moved = replace(
                last, dispatch_no=no, station_id=p["station_id"], accepted_at=accepted_at
            )
            t = replace(t, redos=(*t.redos[:-1], moved))
        elif accepted_at is not None:
            t = replace(t, accepted_at=_first(t.accepted_at, accepted_at))
        if accepted_at is not None:
            # Back to a station that accepted an earlier dispatch in time: accepted then.
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
        t = _stint_ended(t, at, "rejected", lambda s: s.dispatch_no == no)
    elif kind == "order.escalated":
        t = replace(t, escalations=t.escalations + 1)
        if t.status is not OrderStatus.DISPATCHED:
            # The station's accept came first, though the center learnt of it after it
            # escalated: the center applies it (or takes the order back) all the same.
            return t
    elif kind == "order.accepted":
        t = replace(t, accepted_at=_first(t.accepted_at, at), station_id=p["station_id"])
        t = _redo_done(t, "accepted_at", at)
        t = _stint_step(t, "accepted_at", at)
    elif kind == "order.assigned":
        t = replace(t, assigned_at=_first(t.assigned_at, at), worker_id=p["worker_id"])
        t = _stint_worker(_stint_step(t, "assigned_at", at), p["worker_id"])
    elif kind == "order.started":
        t = replace(t, started_at=_first(t.started_at, at), worker_id=p["worker_id"])
        t = _stint_worker(t, p["worker_id"])
    elif kind == "order.completed":
        if t.status in ENDED:
            return t  # the same service reported done again
        # Whatever dispatch it crossed, the service was delivered by the completing station
        # (the center keeps the order there).
        t = replace(
            t,
            completed_at=_first(t.completed_at, at),
            worker_id=p["worker_id"],
            station_id=p["station_id"],
        )
        t = _redo_done(t, "completed_at", at, p["station_id"])
        t = _stint_completed(t, p["station_id"], p["worker_id"], at)
        if p.get("follow_up_by"):
            t = _owe_follow_up(t, p["station_id"], p["worker_id"], at, p["follow_up_by"])
    elif kind == "order.awaiting_feedback":
        t = replace(t, feedback_due_at=datetime.fromisoformat(p["feedback_due_at"]))
    elif kind == "order.feedback_received":
        if p.get("reached", True) and (p.get("resolved") is not None or p.get("satisfaction")):
            satisfaction = Satisfaction(p["satisfaction"]) if p.get("satisfaction") else None
            answer = Feedback(at, p["source"], p.get("resolved"), satisfaction)
            t = replace(t, feedbacks=(*t.feedbacks, answer))
    elif kind == "order.sent_back":
        t = replace(t, send_backs=max(t.send_backs, int(p["send_back_no"])))
    elif kind == "order.supervision_opened":
        if t.supervision_opened_at is None:
            t = replace(t, supervision_opened_at=at, supervision_station_id=p["station_id"])
    elif kind == SUPERVISION_CLOSED:
        t = replace(t, supervision_closed_at=_first(t.supervision_closed_at, at))
    elif kind == REVIEWED:
        if t.review is None:
            review = Review(
                p["reviewer_id"],
                at,
                int(p["timeliness"]),
                int(p["professional_quality"]),
                int(p["record_completeness"]),
            )
            t = replace(t, review=review)
    elif kind == "order.followed_up":
        t = _followed_up(t, p, at)
    elif kind == "order.closed" and p.get("without_feedback"):
        return _move(t, OrderStatus.CLOSED_WITHOUT_FEEDBACK, at)
    elif kind == "order.cancelled" and t.status not in FINAL:
        t = _stint_ended(t, at, "cancelled", lambda s: True)

    return _move(t, STATUS_AFTER.get(kind), at)


def _stint_dispatched(
    t: Timeline,
    p: dict[str, Any],
    at: datetime,
    send_back_no: int | None,
    accepted_at: datetime | None,
) -> Timeline:
    """A new dispatch ends the stint of the station that held the order and starts one; a
    take-back (``accepted_at``) continues the stint in which the station accepted."""
    station_id = p["station_id"]
    t = _stint_ended(t, at, "moved", lambda s: True)
    if accepted_at is not None:
        earlier = [s for s in t.stints if s.station_id == station_id]
        if earlier:
            back = replace(earlier[-1], accepted_at=accepted_at, ended_at=None, end=None)
            return replace(t, stints=tuple(back if s.n == back.n else s for s in t.stints))
    own = p.get("station_deadlines") or p["deadlines"]
    by = {stage: datetime.fromisoformat(own[f"{stage.value}_by"]) for stage in Stage}
    round_ = send_back_no if send_back_no is not None else (t.stints[-1].round if t.stints else 0)
    stint = Stint(
        n=len(t.stints) + 1,
        dispatch_no=int(p["dispatch_no"]),
        round=round_,
        station_id=station_id,
        dispatched_at=at,
        accept_by=by[Stage.ACCEPT],
        assign_by=by[Stage.ASSIGN],
        complete_by=by[Stage.COMPLETE],
        accepted_at=accepted_at,
    )
    return replace(t, stints=(*t.stints, stint))


def _stint_ended(
    t: Timeline, at: datetime, end: StintEnd, which: Callable[[Stint], bool]
) -> Timeline:
    """End the open stint (if ``which`` says it is the one)."""
    return replace(
        t,
        stints=tuple(
            replace(s, ended_at=at, end=end) if s.open and which(s) else s for s in t.stints
        ),
    )


def _stint_step(t: Timeline, step: Literal["accepted_at", "assigned_at"], at: datetime) -> Timeline:
    """The station holding the order accepted or assigned it (the first time in its stint)."""
    return replace(
        t,
        stints=tuple(
            _stint_with(s, step, at) if s.open and getattr(s, step) is None else s for s in t.stints
        ),
    )


def _stint_worker(t: Timeline, worker_id: str) -> Timeline:
    return replace(
        t, stints=tuple(replace(s, worker_id=worker_id) if s.open else s for s in t.stints)
    )


def _stint_with(s: Stint, step: Literal["accepted_at", "assigned_at"], at: datetime) -> Stint:
    return replace(s, accepted_at=at) if step == "accepted_at" else replace(s, assigned_at=at)


def _stint_completed(t: Timeline, station_id: str, worker_id: str, at: datetime) -> Timeline:
    """The completing station's latest stint in which it accepted and did not reject (else
    its latest such, else its latest) ends completed; when the completion crossed a
    redispatch, the stint it crossed ends, moved."""
    theirs = [s for s in t.stints if s.station_id == station_id]
    if not theirs:
        return t
    mine = [s for s in theirs if s.end != "rejected"] or theirs
    accepted = [s for s in mine if s.accepted_at is not None]
    done = replace(
        (accepted or mine)[-1], completed_at=at, ended_at=at, end="completed", worker_id=worker_id
    )
    t = _stint_ended(t, at, "moved", lambda s: s.n != done.n)
    return replace(t, stints=tuple(done if s.n == done.n else s for s in t.stints))


def _redo_done(
    t: Timeline,
    step: Literal["accepted_at", "completed_at"],
    at: datetime,
    station_id: str | None = None,
) -> Timeline:
    """A station's accept or completion after a redo dispatch is the redo's (the latest); a
    completion (``station_id``) ends the redo at the station that did the work."""
    if not t.redos:
        return t
    last = t.redos[-1]
    if getattr(last, step) is not None or at < last.dispatched_at:
        return t
    done = (
        replace(last, accepted_at=at)
        if step == "accepted_at"
        else replace(last, completed_at=at, station_id=station_id or last.station_id)
    )
    return replace(t, redos=(*t.redos[:-1], done))


def _owe_follow_up(
    t: Timeline, station_id: str, worker_id: str, at: datetime, due: str
) -> Timeline:
    owed = FollowUp(len(t.follow_ups) + 1, station_id, worker_id, at, date.fromisoformat(due))
    return replace(t, follow_ups=(*t.follow_ups, owed))


def _followed_up(t: Timeline, p: dict[str, Any], at: datetime) -> Timeline:
    """A visit does the earliest follow-up still owed, and may owe the next one."""
    follow_ups = list(t.follow_ups)
    open_ = [f for f in follow_ups if f.owed]
    if open_:
        first = open_[0]
        follow_ups[first.n - 1] = replace(
            first, done_on=date.fromisoformat(p["visited_on"]), done_at=at
        )
    t = replace(t, follow_ups=tuple(follow_ups))
    if p.get("next_follow_up_by"):
        t = _owe_follow_up(t, p["station_id"], p["worker_id"], at, p["next_follow_up_by"])
    return t


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
        if kind == "order.completed":
            # The center takes a completion from whichever station did the work, until the
            # order was served (a second report of the service: see _apply).
            return False
        if t.status in ENDED:
            return True
        return t.station_id is not None and p["station_id"] != t.station_id
    if kind == "order.rejected":
        return bool(dispatches) and int(p["dispatch_no"]) != max(dispatches)
    return False


def _move(
    t: Timeline, status: OrderStatus | None, at: datetime, *, reopen: bool = False
) -> Timeline:
    """Move to ``status``. A final order (closed, cancelled) stays as it is; a completed one
    goes on only through the loop after the service (:data:`AFTER_SERVICE`), or, sent back,
    to its redo (``reopen``)."""
    if status is None or t.status in FINAL:
        return t
    if t.status in ENDED and status not in AFTER_SERVICE and status not in FINAL:
        return t
    if t.status is OrderStatus.SENT_BACK and status is OrderStatus.DISPATCHED and not reopen:
        return t
    ended_at = (t.ended_at or at) if status in ENDED else None
    return replace(t, status=status, ended_at=ended_at)


# -- The audit's own entries ----------------------------------------------------------------
# A supervisor's review and the close of a supervision are appended by the audit itself to
# the order's chain (same HMAC, same transaction as the table that keeps their free text).
# They come from no topic, so the inbox does not account for them (verify.py knows).

REVIEWED = "order.reviewed"
SUPERVISION_CLOSED = "order.supervision_closed"


class OrderReviewed(EventPayload):
    """A supervisor scored an order picked for review (1-5 each)."""

    event_type = REVIEWED
    station_id: str
    reviewer_id: str
    timeliness: int = Field(ge=1, le=5)
    professional_quality: int = Field(ge=1, le=5)
    record_completeness: int = Field(ge=1, le=5)
    comment: str | None = personal(default=None)


class OrderSupervisionClosed(EventPayload):
    """The station's supervisor closed the supervision (督办) of an order, with a note."""

    event_type = SUPERVISION_CLOSED
    station_id: str
    supervisor_id: str
    note: str = personal()


AUDIT_OWN = frozenset({REVIEWED, SUPERVISION_CLOSED})
_OWN_ENVELOPES: dict[type[EventPayload], type[Envelope[Any]]] = {
    OrderReviewed: Envelope[OrderReviewed],
    OrderSupervisionClosed: Envelope[OrderSupervisionClosed],
}


def own_entry(
    payload: OrderReviewed | OrderSupervisionClosed, order_id: uuid.UUID, reader_id: str
) -> Envelope[Any]:
    return _OWN_ENVELOPES[type(payload)](
        event_id=uuid.uuid4(),
        type=payload.event_type,
        schema_version=payload.schema_version,
        occurred_at=datetime.now(UTC),
        order_id=order_id,
        actor=Actor(kind="system", id=f"audit:{reader_id}"),
        correlation_id=str(order_id),
        payload=payload,
    )


def picked_for_review(order_id: str, share: float) -> bool:
    """Whether a completed order is among the ``share`` picked for review: a fixed function of
    the order id (so a replay, a rebuild, another replica picks the same) that nobody chooses."""
    digest = hashlib.sha256(f"review:{order_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


# -- Readers and what they see --------------------------------------------------------------

ReaderRole = Literal["evaluator", "supervisor", "station_manager"]
READER_ROLES: tuple[ReaderRole, ...] = ("evaluator", "supervisor", "station_manager")


@dataclass(frozen=True)
class Reader:
    """An evaluator sees every station (or, bound to a county, its ``stations``); a
    supervisor the stations they are bound to (一站一督导); a station manager their own."""

    id: str
    role: ReaderRole
    station_id: str | None = None
    """A station manager's station."""
    stations: tuple[str, ...] = ()
    """A supervisor's stations; an evaluator's when bound to a county (none: all)."""

    @property
    def is_evaluator(self) -> bool:
        return self.role == "evaluator"

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    @property
    def sees_everything(self) -> bool:
        """An evaluator bound to no stations: the whole deployment (may verify the trail)."""
        return self.is_evaluator and not self.stations

    @property
    def scope(self) -> frozenset[str] | None:
        """The stations the reader is limited to; None for every station."""
        if self.sees_everything:
            return None
        if self.is_evaluator or self.is_supervisor:
            return frozenset(self.stations)
        return frozenset() if self.station_id is None else frozenset({self.station_id})

    def sees_station(self, station_id: str | None) -> bool:
        scope = self.scope
        return scope is None or (station_id is not None and station_id in scope)

    def supervises(self, station_id: str | None) -> bool:
        """May review the station's orders and close their supervision."""
        return self.is_supervisor and station_id is not None and station_id in self.stations


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


# What a reader who does not see every station the order was sent to does not see of it: the
# order-level times (the first time it reached each step, at whichever station).
ORDER_LEVEL = ("worker_id", *STEP_TIMES)


@dataclass(frozen=True)
class SeenTimeline:
    """What one reader may see of an order's timeline."""

    timeline: Timeline
    """Cut to the reader's stations' parts when the order was also at other stations."""
    stages: dict[Stage, StageResult]
    """The order's stages (from submission): only for a reader who sees every station."""
    dispatches: tuple[Dispatch, ...]
    """The dispatches to the reader's stations only."""
    stints: tuple[Stint, ...] = ()
    """The reader's stations' stints, each judged by its own deadlines."""


def seen_by(reader: Reader, t: Timeline, now: datetime) -> SeenTimeline | None:
    """None when the reader may see nothing of the order: neither held by nor ever sent to
    their station. A reader who sees every station the order was sent to sees it all; any
    other sees their stations' parts only (dispatches, stints, redos they did, the return
    visits of the rounds they served, their follow-ups, their supervision and review), the
    order's status and station only while one of theirs holds it, and nothing of what another
    station did with it."""
    own = tuple(d for d in t.dispatches if reader.sees_station(d.station_id))
    stints = tuple(s for s in t.stints if reader.sees_station(s.station_id))
    if not own and not reader.sees_station(t.station_id):
        return None
    sent_to = {d.station_id for d in t.dispatches} | {s.station_id for s in t.stints}
    if t.station_id is not None:
        sent_to.add(t.station_id)
    if all(reader.sees_station(s) for s in sent_to):
        stages = {
            stage: StageResult(
                t.deadlines.get(stage), t.done_at(stage), t.stage_outcome(stage, now)
            )
            for stage in Stage
        }
        return SeenTimeline(t, stages, own, stints)
    return SeenTimeline(_their_part(reader, t, own), {}, own, stints)


def _their_part(reader: Reader, t: Timeline, own: tuple[Dispatch, ...]) -> Timeline:
    holds = reader.sees_station(t.station_id)
    last = t.stints[-1] if t.stints else None
    worked = last is not None and (last.assigned_at or last.completed_at) is not None
    rounds = [r for r in service_rounds(t) if reader.sees_station(r.station_id)]
    hidden: dict[str, Any] = dict.fromkeys(ORDER_LEVEL)
    if holds and worked:
        hidden.pop("worker_id")
    supervised = reader.sees_station(t.supervision_station_id)
    return replace(
        t,
        **hidden,
        status=t.status if holds else None,
        station_id=t.station_id if holds else None,
        feedback_due_at=t.feedback_due_at if holds else None,
        rejections=sum(
            1 for d in t.dispatches if d.rejected_at and reader.sees_station(d.station_id)
        ),
        feedbacks=tuple(f for f in t.feedbacks if any(f is r.answer for r in rounds)),
        send_backs=sum(1 for r in rounds if r.sent_back),
        redos=tuple(r for r in t.redos if reader.sees_station(r.station_id)),
        follow_ups=tuple(f for f in t.follow_ups if reader.sees_station(f.station_id)),
        stints=tuple(s for s in t.stints if reader.sees_station(s.station_id)),
        supervision_opened_at=t.supervision_opened_at if supervised else None,
        supervision_station_id=t.supervision_station_id if supervised else None,
        supervision_closed_at=t.supervision_closed_at if supervised else None,
        review=t.review if reader.sees_station(t.served_by) else None,
    )


# -- Report figures -------------------------------------------------------------------------
# Every grouping is made of stints (the times a station held an order), so a reader sees, and
# a station is judged by, its own part only:
# - accept, assign and complete are on time when done by the stint's own deadlines (counted
#   from its dispatch), breached when done late or not done when the deadline passed while
#   the station held the order; durations are from the stint's dispatch; p50 and p90
#   interpolate linearly. A stint ended before a deadline without the stage counts in neither.
# - A stint belongs to its station, to the worker last assigned in it, to the order's category
#   and urgency. Rejection rate: stints rejected / stints. Redispatched: orders the group
#   received from another station. Open backlog: open stints, aged from their dispatch.
# - The center's row (evaluators): dispatch on time against the order's deadline (durations
#   from submission), and the orders waiting at the center (no station holds them).

UNASSIGNED = "none"


class GroupBy(StrEnum):
    STATION = auto()
    CATEGORY = auto()
    URGENCY = auto()
    WORKER = auto()


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


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def group_of(order: Timeline, stint: Stint, group_by: GroupBy) -> str:
    """The group a stint counts in."""
    value = {
        GroupBy.STATION: stint.station_id,
        GroupBy.WORKER: stint.worker_id,
        GroupBy.CATEGORY: order.category,
        GroupBy.URGENCY: order.urgency,
    }[group_by]
    return value or UNASSIGNED


def _stage_figures(outcomes: Sequence[Outcome], durations: Sequence[float]) -> StageFigures:
    on_time, breached = outcomes.count("met"), outcomes.count("breached")
    return StageFigures(
        done=len(durations),
        on_time=on_time,
        breached=breached,
        on_time_rate=_rate(on_time, on_time + breached),
        p50_seconds=percentile(durations, 0.5),
        p90_seconds=percentile(durations, 0.9),
    )


NO_STAGE = _stage_figures([], [])


def stage_figures(orders: Sequence[Timeline], stage: Stage, now: datetime) -> StageFigures:
    """The stage of each order against the order's deadline, durations from submission."""
    return _stage_figures(
        [o.stage_outcome(stage, now) for o in orders],
        [
            (done - o.submitted_at).total_seconds()
            for o in orders
            if (done := o.done_at(stage)) is not None and o.submitted_at is not None
        ],
    )


def stint_stage_figures(stints: Sequence[Stint], stage: Stage, now: datetime) -> StageFigures:
    """The stage of each stint against the stint's own deadline, durations from its dispatch."""
    durations = []
    for s in stints:
        _, done = s.stage(stage)
        if done is not None:
            durations.append((done - s.dispatched_at).total_seconds())
    return _stage_figures([s.outcome(stage, now) for s in stints], durations)


# The row of the center's own figures (dispatch, waits at the center), for evaluators.
CENTER_GROUP = "center"


def figures_for(
    reader: Reader, orders: Sequence[Timeline], group_by: GroupBy, now: datetime
) -> list[GroupFigures]:
    """Per group, of the stints of the stations the reader sees (the rules above); then, for
    evaluators, the center's row."""
    held: dict[str, list[tuple[Timeline, Stint]]] = defaultdict(list)
    for o in orders:
        for s in o.stints:
            if reader.sees_station(s.station_id):
                held[group_of(o, s, group_by)].append((o, s))
    groups = [_stint_group(name, held[name], now) for name in sorted(held)]
    if reader.is_evaluator and orders:
        groups.append(_center_group(orders, now))
    return groups


def _stint_group(name: str, held: Sequence[tuple[Timeline, Stint]], now: datetime) -> GroupFigures:
    stints = [s for _, s in held]
    orders = {o.order_id for o, _ in held}
    came_after_another = {
        o.order_id
        for o, s in held
        if any(e.n < s.n and e.station_id != s.station_id for e in o.stints)
    }
    rejected = sum(1 for s in stints if s.end == "rejected")
    ages = [(now - s.dispatched_at).total_seconds() for s in stints if s.open]
    return GroupFigures(
        group=name,
        orders=len(orders),
        completed=len({o.order_id for o, s in held if s.end == "completed"}),
        cancelled=len({o.order_id for o, s in held if s.end == "cancelled"}),
        stages={
            stage: NO_STAGE if stage is Stage.DISPATCH else stint_stage_figures(stints, stage, now)
            for stage in Stage
        },
        dispatches=len(stints),
        rejections=rejected,
        rejection_rate=_rate(rejected, len(stints)),
        redispatched_orders=len(came_after_another),
        redispatch_rate=_rate(len(came_after_another), len(orders)),
        open_backlog=len(ages),
        oldest_open_age_seconds=max(ages) if ages else None,
    )


def _center_group(orders: Sequence[Timeline], now: datetime) -> GroupFigures:
    stints = [s for o in orders for s in o.stints]
    rejected = sum(1 for s in stints if s.end == "rejected")
    dispatched = [o for o in orders if o.stints]
    redispatched = sum(1 for o in dispatched if o.redispatches)
    waiting = [o for o in orders if o.ended_at is None and not any(s.open for s in o.stints)]
    ages = [
        (now - since).total_seconds()
        for o in waiting
        if (since := o.stints[-1].ended_at if o.stints else o.submitted_at) is not None
    ]
    return GroupFigures(
        group=CENTER_GROUP,
        orders=len(orders),
        completed=sum(1 for o in orders if o.completed_at is not None),
        cancelled=sum(1 for o in orders if o.status == "cancelled"),
        stages={
            stage: stage_figures(orders, stage, now) if stage is Stage.DISPATCH else NO_STAGE
            for stage in Stage
        },
        dispatches=len(stints),
        rejections=rejected,
        rejection_rate=_rate(rejected, len(stints)),
        redispatched_orders=redispatched,
        redispatch_rate=_rate(redispatched, len(dispatched)),
        open_backlog=len(waiting),
        oldest_open_age_seconds=max(ages) if ages else None,
    )


# -- Evaluation indicators ------------------------------------------------------------------
# Each figure is charged to whoever held the order when it was made (docs/domain.md gives
# each indicator's Chinese name, numerator, denominator, attribution and period):
# - per stint (a station's time with the order, its deadlines counted from its dispatch):
#   on-time acceptance (按时签收率) and completion (按时办结率): stages done by the stint's
#   deadline / stages on time or breached; a stint that ended before a deadline without the
#   stage (a timely rejection, an operator's redispatch) counts in neither. Rejection rate
#   (退单率): stints the station rejected / stints;
# - per service round (the first service, each redo), charged to the station that completed
#   it: the round's return-visit answer (satisfaction 满意率 and resolved 解决率 of the
#   answered rounds; first-visit satisfaction 首次满意率 of the first rounds answered),
#   send-back rate (发回重办率): rounds sent back / rounds completed;
# - supervision (督办): to the station whose work was sent back the third time;
# - follow-ups: to the station that owes them; owed (due; one a redo superseded before its
#   visit is owed no more), visited by the due day (on time), later (late), not visited after
#   the due day (overdue); their on-time rate is on time / (on time + late + overdue);
# - review coverage: reviewed / picked (completed orders the random share picked), of the
#   orders whose first service the station completed; mean rubric scores of the reviewed ones;
# - the center's own row: on-time dispatch (按时派单率) from submission, the waits at the
#   center between stations (after a rejection, until the next dispatch), and the return-visit
#   rate (回访率): rounds answered / rounds whose feedback window has closed.
# A rate or mean with nothing to count is None (null), and neither passes nor fails.

Direction = Literal["at_least", "at_most"]

INDICATORS: dict[str, Direction] = {
    "on_time_acceptance_rate": "at_least",
    "on_time_completion_rate": "at_least",
    "rejection_rate": "at_most",
    "first_visit_satisfaction_rate": "at_least",
    "satisfaction_rate": "at_least",
    "resolved_rate": "at_least",
    "send_back_rate": "at_most",
    "follow_up_on_time_rate": "at_least",
    "review_coverage": "at_least",
    "mean_timeliness_score": "at_least",
    "mean_professional_quality_score": "at_least",
    "mean_record_completeness_score": "at_least",
}
CENTER_INDICATORS: dict[str, Direction] = {
    "on_time_dispatch_rate": "at_least",
    "return_visit_rate": "at_least",
}

DEFAULT_TARGETS: dict[str, float] = {
    "on_time_acceptance_rate": 0.95,
    "on_time_completion_rate": 0.9,
    "rejection_rate": 0.1,
    "first_visit_satisfaction_rate": 0.9,
    "satisfaction_rate": 0.9,
    "resolved_rate": 0.9,
    "send_back_rate": 0.05,
    "follow_up_on_time_rate": 0.9,
    "review_coverage": 1.0,
    "mean_timeliness_score": 3.5,
    "mean_professional_quality_score": 3.5,
    "mean_record_completeness_score": 3.5,
    "on_time_dispatch_rate": 0.95,
    "return_visit_rate": 0.8,
}


@dataclass(frozen=True)
class Indicator:
    value: float | None
    target: float
    direction: Direction
    passed: bool | None
    """None when the value is (nothing to count)."""


def indicator(value: float | None, target: float, direction: Direction) -> Indicator:
    if value is None:
        return Indicator(None, target, direction, None)
    passed = value >= target if direction == "at_least" else value <= target
    return Indicator(value, target, direction, passed)


@dataclass(frozen=True)
class ServiceRound:
    """One round of service of an order: the first (0) or the redo after send-back n (n),
    completed by ``station_id``; the round's return-visit answer (the first answered visit
    after it, before the next round), and whether it was sent back."""

    order_id: str
    round: int
    station_id: str
    completed_at: datetime
    answer: Feedback | None
    sent_back: bool
    sent_back_at: datetime | None
    """When it was sent back (its redo's dispatch)."""
    last: bool
    """The order's latest round."""


def service_rounds(t: Timeline) -> list[ServiceRound]:
    """The order's completed rounds, in order."""
    starts: dict[int, datetime] = {}
    for s in t.stints:
        starts.setdefault(s.round, s.dispatched_at)
    done = [s for s in t.stints if s.end == "completed" and s.completed_at is not None]
    rounds = []
    for s in done:
        assert s.completed_at is not None
        begins = starts[s.round] if s.round else None
        until = min((at for r, at in starts.items() if r > s.round), default=None)
        answers = [
            f
            for f in t.feedbacks
            if (begins is None or f.at >= begins) and (until is None or f.at < until)
        ]
        rounds.append(
            ServiceRound(
                t.order_id,
                s.round,
                s.station_id,
                s.completed_at,
                answers[0] if answers else None,
                sent_back=t.send_backs > s.round,
                sent_back_at=starts.get(s.round + 1),
                last=until is None,
            )
        )
    return rounds


@dataclass(frozen=True)
class StationEvaluation:
    station: str
    orders: int
    """Orders the station held at all (a stint)."""
    stints: int
    rejections: int
    completed: int
    """Service rounds the station completed."""
    accepts_on_time: int
    accepts_late: int
    completions_on_time: int
    completions_late: int
    with_feedback: int
    """Of the rounds it completed, those with an answered return visit."""
    satisfied: int
    resolved: int
    first_visits: int
    """First rounds it completed with an answered return visit."""
    first_visits_satisfied: int
    send_backs: int
    """Rounds it completed that were sent back for redo."""
    supervision_opened: int
    under_supervision: int
    follow_ups_due: int
    follow_ups_done_on_time: int
    follow_ups_done_late: int
    follow_ups_overdue: int
    picked_for_review: int
    reviewed: int
    indicators: dict[str, Indicator]


def _mean(values: Sequence[int]) -> float | None:
    return sum(values) / len(values) if values else None


def _satisfied(answer: Feedback | None) -> bool:
    return answer is not None and answer.satisfaction is not None and answer.satisfaction.satisfied


Period = tuple[datetime, datetime]
"""``[from, to)``: a figure counts in the period its own event falls in."""


def _within(at: datetime | None, period: Period | None) -> bool:
    if period is None:
        return True
    return at is not None and period[0] <= at < period[1]


def evaluate_station(
    station: str,
    orders: Sequence[Timeline],
    now: datetime,
    targets: Mapping[str, float],
    review_share: float,
    period: Period | None = None,
) -> StationEvaluation:
    """The station's figures from ``orders`` (which may hold other stations' parts too), each
    counted in the period of its own event (``period``; None: every one): a stage when it was
    done in time or its deadline passed, a stint when it was dispatched, a rejection when it
    was made, a round when it was completed, a send-back when it was made, an answer when it
    was given, a supervision when it was opened, a follow-up when it was visited in time or
    its due day passed, a review's pick when the first service was completed."""
    stints = [s for o in orders for s in o.stints if s.station_id == station]
    dispatched = [s for s in stints if _within(s.dispatched_at, period)]

    def count(stage: Stage, outcome: Outcome) -> int:
        figures = (s.figure(stage, now) for s in stints)
        return sum(1 for out, at in figures if out == outcome and _within(at, period))

    rounds = [r for o in orders for r in service_rounds(o) if r.station_id == station]
    completed = [r for r in rounds if _within(r.completed_at, period)]
    answered = [r for r in rounds if r.answer is not None and _within(r.answer.at, period)]
    first = [r for r in answered if r.round == 0]
    satisfied = sum(1 for r in answered if _satisfied(r.answer))
    first_satisfied = sum(1 for r in first if _satisfied(r.answer))
    resolved = sum(1 for r in answered if r.answer is not None and r.answer.resolved)
    sent_back = sum(1 for r in rounds if r.sent_back and _within(r.sent_back_at, period))
    rejections = sum(1 for s in stints if s.end == "rejected" and _within(s.ended_at, period))
    follow_ups = [
        (f, out)
        for o in orders
        for f in o.follow_ups
        if f.station_id == station
        and (f.done_on is not None or f.superseded_at is None)
        and (out := f.outcome(now)) != "not_applicable"
        and _within(f.done_at if out == "met" else f.deadline, period)
    ]
    on_time = sum(1 for f, out in follow_ups if out == "met")
    late = sum(1 for f, out in follow_ups if out == "breached" and f.done_on is not None)
    overdue = sum(1 for f, _ in follow_ups if f.overdue(now))
    served = [o for o in orders if o.served_by == station and _within(o.served_at, period)]
    picked = [o for o in served if picked_for_review(o.order_id, review_share)]
    reviews = [o.review for o in picked if o.review is not None]
    supervised = [
        o
        for o in orders
        if o.supervision_station_id == station and _within(o.supervision_opened_at, period)
    ]
    accepts = (count(Stage.ACCEPT, "met"), count(Stage.ACCEPT, "breached"))
    completions = (count(Stage.COMPLETE, "met"), count(Stage.COMPLETE, "breached"))
    values: dict[str, float | None] = {
        "on_time_acceptance_rate": _rate(accepts[0], sum(accepts)),
        "on_time_completion_rate": _rate(completions[0], sum(completions)),
        "rejection_rate": _rate(rejections, len(dispatched)),
        "first_visit_satisfaction_rate": _rate(first_satisfied, len(first)),
        "satisfaction_rate": _rate(satisfied, len(answered)),
        "resolved_rate": _rate(resolved, len(answered)),
        "send_back_rate": _rate(sent_back, len(completed)),
        "follow_up_on_time_rate": _rate(on_time, on_time + late + overdue),
        "review_coverage": _rate(len(reviews), len(picked)),
        "mean_timeliness_score": _mean([r.timeliness for r in reviews]),
        "mean_professional_quality_score": _mean([r.professional_quality for r in reviews]),
        "mean_record_completeness_score": _mean([r.record_completeness for r in reviews]),
    }
    return StationEvaluation(
        station=station,
        orders=sum(
            1
            for o in orders
            if any(s.station_id == station and _within(s.dispatched_at, period) for s in o.stints)
        ),
        stints=len(dispatched),
        rejections=rejections,
        completed=len(completed),
        accepts_on_time=accepts[0],
        accepts_late=accepts[1],
        completions_on_time=completions[0],
        completions_late=completions[1],
        with_feedback=len(answered),
        satisfied=satisfied,
        resolved=resolved,
        first_visits=len(first),
        first_visits_satisfied=first_satisfied,
        send_backs=sent_back,
        supervision_opened=len(supervised),
        under_supervision=sum(1 for o in supervised if o.under_supervision),
        follow_ups_due=len(follow_ups),
        follow_ups_done_on_time=on_time,
        follow_ups_done_late=late,
        follow_ups_overdue=overdue,
        picked_for_review=len(picked),
        reviewed=len(reviews),
        indicators={
            name: indicator(values[name], targets[name], direction)
            for name, direction in INDICATORS.items()
        },
    )


@dataclass(frozen=True)
class CenterEvaluation:
    """The dispatch center's own figures: the time orders waited for it, and its return
    visits."""

    orders: int
    dispatches_on_time: int
    dispatches_late: int
    waits: int
    """Times an order waited at the center between stations (after a rejection)."""
    wait_p90_seconds: float | None
    visits_due: int
    """Service rounds whose return-visit window has closed."""
    visited: int
    indicators: dict[str, Indicator]


def center_waits(t: Timeline, now: datetime) -> list[tuple[datetime, float]]:
    """When the order began to wait at the center after each rejection, and for how many
    seconds, until the next dispatch (or its end, or now)."""
    waits = []
    for i, s in enumerate(t.stints):
        if s.end != "rejected" or s.ended_at is None:
            continue
        nxt = t.stints[i + 1].dispatched_at if i + 1 < len(t.stints) else None
        until = nxt or t.ended_at or now
        waits.append((s.ended_at, max((until - s.ended_at).total_seconds(), 0.0)))
    return waits


def visit_window_closed_at(t: Timeline, r: ServiceRound, now: datetime) -> datetime | None:
    """When the round's return-visit window closed: its answer, or the due time that passed
    unanswered; None while it is open."""
    if r.answer is not None:
        return r.answer.at
    if r.last and t.feedback_due_at is not None:
        closed = t.status is OrderStatus.CLOSED_WITHOUT_FEEDBACK or t.feedback_due_at <= now
        return t.feedback_due_at if closed else None
    return None


def evaluate_center(
    orders: Sequence[Timeline],
    now: datetime,
    targets: Mapping[str, float],
    period: Period | None = None,
) -> CenterEvaluation:
    """The center's figures, each in the period of its event: a dispatch when it was made in
    time or its deadline passed, a wait when it began, a return visit when its window closed."""
    dispatch = [
        (out, figure_at(out, o.deadlines.get(Stage.DISPATCH), o.dispatched_at))
        for o in orders
        if (out := o.stage_outcome(Stage.DISPATCH, now))
    ]
    on_time = sum(1 for out, at in dispatch if out == "met" and _within(at, period))
    late = sum(1 for out, at in dispatch if out == "breached" and _within(at, period))
    waits = [w for o in orders for at, w in center_waits(o, now) if _within(at, period)]
    due = [
        r
        for o in orders
        for r in service_rounds(o)
        if (closed := visit_window_closed_at(o, r, now)) is not None and _within(closed, period)
    ]
    visited = sum(1 for r in due if r.answer is not None)
    values = {
        "on_time_dispatch_rate": _rate(on_time, on_time + late),
        "return_visit_rate": _rate(visited, len(due)),
    }
    return CenterEvaluation(
        orders=sum(1 for o in orders if _within(o.submitted_at, period)),
        dispatches_on_time=on_time,
        dispatches_late=late,
        waits=len(waits),
        wait_p90_seconds=percentile(waits, 0.9),
        visits_due=len(due),
        visited=visited,
        indicators={
            name: indicator(values[name], targets[name], direction)
            for name, direction in CENTER_INDICATORS.items()
        },
    )


def evaluation(
    reader: Reader,
    orders: Iterable[Timeline],
    now: datetime,
    targets: Mapping[str, float],
    review_share: float,
    station: str | None = None,
    period: Period | None = None,
) -> list[StationEvaluation]:
    """Each station's evaluation the reader may see (``station``: that one only): every
    station that held one of the orders; figures in ``period`` only (:func:`evaluate_station`)."""
    by_station: dict[str, list[Timeline]] = defaultdict(list)
    for o in orders:
        for name in dict.fromkeys(s.station_id for s in o.stints):
            if reader.sees_station(name) and station in (None, name):
                by_station[name].append(o)
    return [
        evaluate_station(name, by_station[name], now, targets, review_share, period)
        for name in sorted(by_station)
    ]


# -- Snapshots of closed months -------------------------------------------------------------
# Once a month and its feedback window have passed, its evaluation is kept as it is: events
# that arrive later change the projection, never that month's figures.


def month_period(month: date, zone: str) -> Period:
    """The month that begins on ``month`` (its first day) in the time zone, as instants."""
    tz = ZoneInfo(zone)
    start = datetime(month.year, month.month, 1, tzinfo=tz)
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    end = datetime(following.year, following.month, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def month_of(period: Period, zone: str) -> date | None:
    """The month ``period`` is exactly (its first day), or None."""
    local = period[0].astimezone(ZoneInfo(zone))
    month = date(local.year, local.month, 1)
    return month if month_period(month, zone) == period else None


def closed_months(first: datetime, now: datetime, zone: str, after: timedelta) -> list[date]:
    """The months from the one holding ``first`` whose end lies ``after`` or more before
    ``now``, oldest first."""
    local = first.astimezone(ZoneInfo(zone))
    month = date(local.year, local.month, 1)
    months = []
    while month_period(month, zone)[1] + after <= now:
        months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months
