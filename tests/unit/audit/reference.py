"""A reference for the evaluation's figures, written apart from the audit (it imports nothing
of services.audit): it reads one order's events in the order they happened (as the center made
them) and charges each figure as docs/domain.md's table says.

Each figure counts in the period of its own event (docs/domain.md, "Periods"). Only what the
property tests generate is covered: no follow-ups, no reviews.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Period = tuple[datetime, datetime]
SATISFIED = {"satisfied", "very_satisfied"}


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass
class _Stint:
    station: str
    dispatch_no: int
    round: int
    dispatched: datetime
    accept_by: datetime
    complete_by: datetime
    accepted: datetime | None = None
    completed: datetime | None = None
    end: datetime | None = None
    rejected: bool = False


@dataclass
class _Round:
    number: int
    station: str | None = None
    completed: datetime | None = None
    answer: dict[str, Any] | None = None
    answered: datetime | None = None
    sent_back: datetime | None = None


@dataclass
class _Order:
    submitted: datetime | None = None
    dispatch_by: datetime | None = None
    first_dispatch: datetime | None = None
    stints: list[_Stint] = field(default_factory=list)
    rounds: list[_Round] = field(default_factory=lambda: [_Round(0)])
    served: bool = False
    ended: datetime | None = None
    send_backs: int = 0
    supervision_station: str | None = None
    supervision_opened: datetime | None = None
    feedback_due: datetime | None = None
    closed_without_feedback: bool = False

    def open_stint(self) -> _Stint | None:
        return next((s for s in self.stints if s.end is None), None)


def _read(events: list[dict[str, Any]]) -> _Order:
    o = _Order()
    for e in events:
        kind, p, at = e["type"], e["payload"], _t(e["occurred_at"])
        if kind == "order.submitted":
            o.submitted = at
            o.dispatch_by = _t(p["deadlines"]["dispatch_by"])
        elif kind == "order.dispatched" and not p.get("resend_of"):
            o.dispatch_by = o.dispatch_by or _t(p["deadlines"]["dispatch_by"])
            o.first_dispatch = o.first_dispatch or at
            if (held := o.open_stint()) is not None:
                held.end = at
            if p.get("redo"):
                number = p["redo"]["send_back_no"]
                if o.rounds[-1].number != number:
                    o.rounds.append(_Round(number))
            if p.get("accepted_at"):
                back = [s for s in o.stints if s.station == p["station_id"]][-1]
                back.accepted, back.end = _t(p["accepted_at"]), None
                continue
            own = p["station_deadlines"]
            o.stints.append(
                _Stint(
                    p["station_id"],
                    p["dispatch_no"],
                    o.rounds[-1].number,
                    at,
                    _t(own["accept_by"]),
                    _t(own["complete_by"]),
                )
            )
        elif kind == "order.rejected":
            held = o.open_stint()
            if held is not None and held.dispatch_no == p["dispatch_no"]:
                held.end, held.rejected = at, True
        elif kind == "order.accepted":
            held = o.open_stint()
            if held is not None and held.station == p["station_id"] and held.accepted is None:
                held.accepted = at
        elif kind == "order.completed" and not o.served:
            o.served, o.ended = True, at
            for s in o.stints:
                if s.end is None:
                    s.end = at
            theirs = [s for s in o.stints if s.station == p["station_id"]]
            kept = [s for s in theirs if not s.rejected] or theirs
            mine = ([s for s in kept if s.accepted is not None] or kept)[-1]
            mine.completed, mine.end = at, at
            o.rounds[-1].station, o.rounds[-1].completed = p["station_id"], at
        elif kind == "order.awaiting_feedback":
            o.feedback_due = _t(p["feedback_due_at"])
        elif kind == "order.feedback_received":
            answered = p.get("reached", True) and (
                p.get("resolved") is not None or p.get("satisfaction")
            )
            if answered and o.rounds[-1].answer is None:
                o.rounds[-1].answer, o.rounds[-1].answered = p, at
        elif kind == "order.sent_back":
            o.send_backs, o.served, o.ended = p["send_back_no"], False, None
            o.rounds[-1].sent_back = at
        elif kind == "order.supervision_opened" and o.supervision_opened is None:
            o.supervision_station, o.supervision_opened = p["station_id"], at
        elif kind == "order.closed" and p.get("without_feedback"):
            o.closed_without_feedback = True
        elif kind == "order.cancelled":
            o.ended = o.ended or at
            if (held := o.open_stint()) is not None:
                held.end = at
    return o


def _outcome(deadline: datetime, done: datetime | None, end: datetime | None, now: datetime) -> str:
    if done is not None:
        return "met" if done <= deadline else "breached"
    return "breached" if deadline < (end or now) else "neither"


def _when(outcome: str, deadline: datetime, done: datetime | None) -> datetime | None:
    """When a stage's figure falls: when done in time, else when its deadline passed."""
    return done if outcome == "met" else deadline


def _in(at: datetime | None, period: Period | None) -> bool:
    return period is None or (at is not None and period[0] <= at < period[1])


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def reference(
    orders: list[list[dict[str, Any]]], now: datetime, period: Period | None = None
) -> dict[str, dict[str, Any]]:
    """Per station (and ``"center"``), every figure the property tests compare, from each
    order's events in the order they happened, of ``period`` (None: all)."""
    read = [_read(events) for events in orders]
    stations: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for o in read:
        for station in {s.station for s in o.stints}:
            dispatched = any(s.station == station and _in(s.dispatched, period) for s in o.stints)
            stations[station]["orders"] += dispatched
        for s in o.stints:
            f = stations[s.station]
            f["stints"] += _in(s.dispatched, period)
            f["rejections"] += s.rejected and _in(s.end, period)
            for stage, deadline, done in (
                ("accepts", s.accept_by, s.accepted),
                ("completions", s.complete_by, s.completed),
            ):
                outcome = _outcome(deadline, done, s.end, now)
                counted = _in(_when(outcome, deadline, done), period)
                f[f"{stage}_on_time"] += outcome == "met" and counted
                f[f"{stage}_late"] += outcome == "breached" and counted
        for r in o.rounds:
            if r.station is None:
                continue
            f = stations[r.station]
            f["completed"] += _in(r.completed, period)
            f["send_backs"] += o.send_backs > r.number and _in(r.sent_back, period)
            if r.answer is not None and _in(r.answered, period):
                satisfied = r.answer.get("satisfaction") in SATISFIED
                f["with_feedback"] += 1
                f["satisfied"] += satisfied
                f["resolved"] += bool(r.answer.get("resolved"))
                if r.number == 0:
                    f["first_visits"] += 1
                    f["first_visits_satisfied"] += satisfied
        if o.supervision_station is not None:
            stations[o.supervision_station]["supervision_opened"] += _in(
                o.supervision_opened, period
            )
    result: dict[str, dict[str, Any]] = {}
    for name, f in stations.items():
        result[name] = dict(f) | {
            "on_time_acceptance_rate": _rate(
                f["accepts_on_time"], f["accepts_on_time"] + f["accepts_late"]
            ),
            "on_time_completion_rate": _rate(
                f["completions_on_time"], f["completions_on_time"] + f["completions_late"]
            ),
            "rejection_rate": _rate(f["rejections"], f["stints"]),
            "first_visit_satisfaction_rate": _rate(f["first_visits_satisfied"], f["first_visits"]),
            "satisfaction_rate": _rate(f["satisfied"], f["with_feedback"]),
            "resolved_rate": _rate(f["resolved"], f["with_feedback"]),
            "send_back_rate": _rate(f["send_backs"], f["completed"]),
        }
    result["center"] = _center(read, now, period)
    return result


def _center(read: list[_Order], now: datetime, period: Period | None) -> dict[str, Any]:
    on_time = late = due = visited = 0
    waits = 0
    for o in read:
        if o.dispatch_by is not None:
            outcome = _outcome(o.dispatch_by, o.first_dispatch, None, now)
            if o.first_dispatch is None and o.ended is not None and o.ended <= o.dispatch_by:
                outcome = "neither"
            counted = _in(_when(outcome, o.dispatch_by, o.first_dispatch), period)
            on_time += outcome == "met" and counted
            late += outcome == "breached" and counted
        waits += sum(1 for s in o.stints if s.rejected and _in(s.end, period))
        served = [r for r in o.rounds if r.station is not None]
        for r in served:
            if r.answer is not None:
                due += _in(r.answered, period)
                visited += _in(r.answered, period)
            elif r is o.rounds[-1] and (
                o.closed_without_feedback or (o.feedback_due is not None and o.feedback_due <= now)
            ):
                due += _in(o.feedback_due, period)
    return {
        "orders": sum(1 for o in read if _in(o.submitted, period)),
        "dispatches_on_time": on_time,
        "dispatches_late": late,
        "waits": waits,
        "visits_due": due,
        "visited": visited,
        "on_time_dispatch_rate": _rate(on_time, on_time + late),
        "return_visit_rate": _rate(visited, due),
    }
