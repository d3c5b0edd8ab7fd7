"""The audit API's response shapes (the report's figures and the verification are the
domain's own dataclasses)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.audit.domain import GroupBy, GroupFigures, Outcome, SeenTimeline
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

    @classmethod
    def of(cls, seen: SeenTimeline) -> OrderTimeliness:
        t = seen.timeline
        fields = {name: getattr(t, name) for name in cls.model_fields if hasattr(t, name)}
        return cls.model_validate(
            fields
            | {
                "stages": {stage: vars(r) for stage, r in seen.stages.items()},
                "dispatches": [vars(d) for d in seen.dispatches],
            }
        )


class TimelinessReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    group_by: GroupBy
    as_of: datetime
    groups: list[GroupFigures]
