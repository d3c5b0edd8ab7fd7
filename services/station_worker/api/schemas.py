"""The dashboard API's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.station_worker.domain import Role
from shared.domain import BeneficiaryGroup, Category, OrderStatus, Urgency
from shared.events import CaseDetails, Deadlines
from shared.strings import FreeText, SingleLine

RejectReason = Literal[
    "outside_coverage", "no_capacity", "not_our_service", "duplicate", "resident_declined", "other"
]
Outcome = Literal["served", "referred", "resident_declined", "resident_unreachable"]


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
