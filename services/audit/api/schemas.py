"""The audit API's response shapes (the report's figures and the verification are the
domain's own dataclasses)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.audit.domain import (
    CenterEvaluation,
    GroupBy,
    GroupFigures,
    Outcome,
    SeenTimeline,
    StationEvaluation,
    Stint,
    Timeline,
)
from services.audit.reviews import Picked
from shared.domain import Stage


class TrailEntry(BaseModel):
    seq: int
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    station_id: str | None
    event: dict[str, Any]
    prev_hash: str
    hash: str


class StageView(BaseModel):
    deadline: datetime | None
    done_at: datetime | None
    outcome: Outcome


class DispatchView(BaseModel):
    dispatch_no: int
    station_id: str
    dispatched_at: datetime
    reason: str | None
    received_at: datetime | None
    rejected_at: datetime | None
    reject_reason_code: str | None
    send_back_no: int | None = Field(description="set for a redo after that send-back")


class RedoView(BaseModel):
    """A redo after a send-back, against its own fresh deadlines."""

    send_back_no: int
    dispatch_no: int
    station_id: str
    dispatched_at: datetime
    reason: str
    accept: StageView
    complete: StageView


class StintView(BaseModel):
    """The time one station held the order, judged by its own deadlines (from its dispatch)."""

    n: int
    dispatch_no: int
    round: int = Field(description="0: the first service; n: the redo after send-back n")
    station_id: str
    dispatched_at: datetime
    ended_at: datetime | None
    end: str | None = Field(description="completed, rejected, moved, cancelled; null: open")
    accept: StageView
    assign: StageView
    complete: StageView


class FollowUpView(BaseModel):
    """A follow-up visit owed by ``due_on``: met (visited by then), breached (later, or
    overdue), pending; not_applicable when a redo superseded it before the visit."""

    n: int
    station_id: str
    worker_id: str
    due_on: date
    done_on: date | None
    superseded_at: datetime | None = None
    outcome: Outcome


class FeedbackView(BaseModel):
    at: datetime
    source: str
    resolved: bool | None
    satisfaction: str | None


class OrderTimeliness(BaseModel):
    order_id: uuid.UUID
    status: str | None
    station_id: str | None
    worker_id: str | None
    category: str | None
    urgency: str | None
    submitted_at: datetime | None
    dispatched_at: datetime | None
    received_at: datetime | None
    accepted_at: datetime | None
    assigned_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    ended_at: datetime | None
    stages: dict[Stage, StageView]
    dispatches: list[DispatchView]
    redispatches: int
    rejections: int
    escalations: int
    feedback_due_at: datetime | None = None
    feedbacks: list[FeedbackView] = []
    send_backs: int = 0
    supervision_opened_at: datetime | None = None
    supervision_station_id: str | None = None
    supervision_closed_at: datetime | None = None
    redos: list[RedoView] = Field(default=[], description="the redos after send-backs")
    follow_ups: list[FollowUpView] = Field(default=[], description="the 'follow-up' stage")
    stints: list[StintView] = Field(
        default=[], description="each station's time with the order (the reader's stations')"
    )
    reviewed_at: datetime | None = None

    @classmethod
    def of(cls, seen: SeenTimeline) -> OrderTimeliness:
        t = seen.timeline
        fields = {
            name: getattr(t, name)
            for name in cls.model_fields
            if hasattr(t, name) and name not in _LOOP
        }
        now = datetime.now(UTC)
        return cls.model_validate(
            fields
            | _loop_of(t)
            | {
                "stages": {stage: vars(r) for stage, r in seen.stages.items()},
                "dispatches": [vars(d) for d in seen.dispatches],
                "stints": [_stint_view(s, now) for s in seen.stints],
            }
        )


def _stint_view(s: Stint, now: datetime) -> dict[str, Any]:
    stages = (Stage.ACCEPT, Stage.ASSIGN, Stage.COMPLETE)
    return {k: getattr(s, k) for k in StintView.model_fields if hasattr(s, k)} | {
        stage.value: StageView(
            deadline=s.stage(stage)[0], done_at=s.stage(stage)[1], outcome=s.outcome(stage, now)
        )
        for stage in stages
    }


_LOOP = (
    "feedback_due_at",
    "feedbacks",
    "send_backs",
    "supervision_opened_at",
    "supervision_station_id",
    "supervision_closed_at",
    "redos",
    "follow_ups",
)


def _loop_of(t: Timeline) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "feedback_due_at": t.feedback_due_at,
        "send_backs": t.send_backs,
        "supervision_opened_at": t.supervision_opened_at,
        "supervision_station_id": t.supervision_station_id,
        "supervision_closed_at": t.supervision_closed_at,
        "feedbacks": [vars(f) for f in t.feedbacks],
        "redos": [
            {
                **{k: getattr(r, k) for k in RedoView.model_fields if hasattr(r, k)},
                "accept": StageView(
                    deadline=r.accept_by,
                    done_at=r.accepted_at,
                    outcome=r.outcome(Stage.ACCEPT, now, t.ended_at),
                ),
                "complete": StageView(
                    deadline=r.complete_by,
                    done_at=r.completed_at,
                    outcome=r.outcome(Stage.COMPLETE, now, t.ended_at),
                ),
            }
            for r in t.redos
        ],
        "follow_ups": [
            {**{k: getattr(f, k) for k in FollowUpView.model_fields if hasattr(f, k)}}
            | {"outcome": f.outcome(now)}
            for f in t.follow_ups
        ],
        "reviewed_at": t.review.at if t.review else None,
    }


class TimelinessReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    group_by: GroupBy
    as_of: datetime
    groups: list[GroupFigures]


class EvaluationReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    as_of: datetime
    review_share: float
    stations: list[StationEvaluation]
    center: CenterEvaluation | None = Field(
        description="the dispatch center's own figures (on-time dispatch, waits at the center, "
        "return visits): for evaluators only"
    )
    snapshot: bool = Field(
        default=False,
        description="a closed month's figures as they were kept (as_of: when), never recomputed",
    )


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: uuid.UUID
    timeliness: int = Field(ge=1, le=5)
    professional_quality: int = Field(ge=1, le=5)
    record_completeness: int = Field(ge=1, le=5)
    comment: str | None = Field(
        default=None, max_length=2000, description="kept by the audit, not in the trail"
    )


class ReviewView(BaseModel):
    """An order picked for review, with its scores once reviewed (the comment stays with
    the audit)."""

    order_id: uuid.UUID
    station_id: str
    completed_at: datetime
    reviewer_id: str | None
    reviewed_at: datetime | None
    timeliness: int | None
    professional_quality: int | None
    record_completeness: int | None

    @classmethod
    def of(cls, picked: Picked) -> ReviewView:
        r = picked.review
        return cls(
            order_id=uuid.UUID(picked.order_id),
            station_id=picked.station_id,
            completed_at=picked.completed_at,
            reviewer_id=r and r.reviewer_id,
            reviewed_at=r and r.at,
            timeliness=r and r.timeliness,
            professional_quality=r and r.professional_quality,
            record_completeness=r and r.record_completeness,
        )


class CloseSupervision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000, description="kept off the trail")


class SupervisionView(BaseModel):
    order_id: uuid.UUID
    station_id: str | None
    status: str | None
    send_backs: int
    supervision_opened_at: datetime
    supervision_closed_at: datetime | None
    supervisor_id: str | None
