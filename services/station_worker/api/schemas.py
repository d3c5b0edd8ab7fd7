"""The dashboard API's request and response bodies."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from services.station_worker.domain import Role
from shared.domain import BeneficiaryGroup, Category, OrderStatus, Urgency
from shared.events import CaseDetails, Deadlines, Redo
from shared.strings import FreeText, SingleLine

RejectReason = Literal[
    "outside_coverage", "no_capacity", "not_our_service", "duplicate", "resident_declined", "other"
]
Outcome = Literal["served", "referred", "resident_declined", "resident_unreachable"]
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(value: object) -> object:
    """A day is a ``YYYY-MM-DD`` string: no timestamps, numbers or booleans."""
    if isinstance(value, date) or (isinstance(value, str) and DAY.fullmatch(value)):
        return value
    raise ValueError("expected a day as YYYY-MM-DD")


Day = Annotated[
    date, BeforeValidator(_day), Field(description="a calendar day, `YYYY-MM-DD` (UTC)")
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RejectBody(Body):
    reason_code: RejectReason
    note: Annotated[FreeText, Field(max_length=2000)] | None = None


class AssignBody(Body):
    worker_id: SingleLine = Field(min_length=1, max_length=200)


class CompleteBody(Body):
    outcome: Outcome
    service_minutes: int = Field(ge=0, le=24 * 60)
    summary: FreeText = Field(min_length=1, max_length=8000)
    follow_up_needed: bool
    follow_up_by: Day | None = Field(
        default=None,
        description="a follow-up visit is owed by this day (from the completion's day to a year"
        " after): the completing worker gets a follow-up task; implies follow_up_needed",
    )
    follow_up_plan: Annotated[FreeText, Field(min_length=1, max_length=4000)] | None = Field(
        default=None, description="personal data: what the follow-up is for (needs follow_up_by)"
    )


class VisitBody(Body):
    visited_on: Day = Field(description="the day of the visit: not in the future")
    summary: FreeText = Field(min_length=1, max_length=8000, description="personal data")
    next_follow_up_by: Day | None = Field(
        default=None, description="the next visit is due by then; null: the task ends"
    )


class FollowUpWorkerBody(Body):
    worker_id: SingleLine = Field(min_length=1, max_length=200)


class WorkerBody(Body):
    worker_id: SingleLine = Field(min_length=1, max_length=200, description="the worker's staff id")
    skills: list[Category] = Field(description="the service categories they can serve")
    capacity: int = Field(ge=0, le=100, description="the most active orders they can carry")
    on_duty: bool = True

    @field_validator("skills")
    @classmethod
    def _unique(cls, skills: list[Category]) -> list[Category]:
        return sorted(set(skills))


class Worker(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    worker_id: str
    name: str
    skills: list[Category]
    capacity: int
    on_duty: bool
    active_orders: int


class SuggestedWorker(BaseModel):
    worker_id: str
    name: str
    skill_match: bool
    active_orders: int
    capacity: int


class Me(BaseModel):
    id: str
    name: str
    station_id: str
    role: Role


class HistoryEntry(BaseModel):
    status: OrderStatus | str
    at: datetime
    actor: str
    note: str | None


class FollowUpDue(BaseModel):
    """An order's open follow-up task, as the queue shows it."""

    worker_id: str
    due_on: date
    overdue: bool = Field(description="its due day has passed")
    worker_active: bool = Field(
        description="false when the worker is no longer on the staff: a manager decides"
    )


class QueueItem(BaseModel):
    """An order in the queue listing; its case details are on the order itself."""

    order_id: uuid.UUID
    station_id: str
    status: OrderStatus
    dispatch_no: int
    category: Category
    urgency: Urgency
    beneficiary_group: BeneficiaryGroup
    community_code: str
    submitted_at: datetime
    received_at: datetime
    deadlines: Deadlines
    due_at: datetime | None = Field(description="the deadline of the current stage")
    overdue: bool
    worker_id: str | None
    version: int
    redo: Redo | None = Field(
        description="set when the order was sent back for redo (发回重办) after its return visit"
    )
    follow_up: FollowUpDue | None = Field(description="its open follow-up task, if any")


class QueuePage(BaseModel):
    orders: list[QueueItem]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class StationOrder(QueueItem):
    case: CaseDetails | None = Field(
        description="personal data: only for the station's managers and the assigned worker"
        " (null otherwise, and once erased)"
    )
    case_withheld: bool = Field(description="true when the caller may not see the case details")
    case_erased_at: datetime | None = Field(
        description="when the case details were erased, some time after the order ended"
    )
    history: list[HistoryEntry]
    follow_up_task: FollowUpTask | None = Field(
        description="the order's latest follow-up task at this station (open or ended)"
    )


class Visit(BaseModel):
    visited_on: date
    summary: str | None = Field(description="personal data: null for those who may not see it")
    next_follow_up_by: date | None
    worker_id: str
    actor: str
    at: datetime


class FollowUpTask(BaseModel):
    order_id: uuid.UUID
    worker_id: str
    worker_active: bool
    due_on: date
    overdue: bool
    completed_on: date
    plan: str | None = Field(description="personal data: null for those who may not see it")
    opened_at: datetime
    ended_at: datetime | None
    end_reason: Literal["done", "superseded"] | None
    version: int
    visits: list[Visit]


class FollowUpItem(BaseModel):
    """An open follow-up task in the station's list (no personal data)."""

    order_id: uuid.UUID
    worker_id: str
    worker_active: bool
    needs_manager: bool = Field(description="the worker is gone: a manager reassigns the task")
    due_on: date
    overdue: bool
    opened_at: datetime
    visits: int
    status: OrderStatus
    category: Category
    urgency: Urgency
    community_code: str
    dispatch_no: int
    version: int


class FollowUpsPage(BaseModel):
    follow_ups: list[FollowUpItem]


StationOrder.model_rebuild()
