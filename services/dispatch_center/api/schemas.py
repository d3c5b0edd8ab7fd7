"""The center's API schemas. Unknown fields are rejected (422) so callers cannot set what is
ours."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    StringConstraints,
    field_validator,
)

from shared.domain import (
    BeneficiaryGroup,
    Category,
    OrderStatus,
    ReporterRole,
    Satisfaction,
    Urgency,
)
from shared.events import Deadlines
from shared.strings import FreeText, SingleLine

Text = Annotated[SingleLine, StringConstraints(min_length=1, max_length=200)]
Code = Annotated[SingleLine, StringConstraints(min_length=1, max_length=64)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 -]{4,19}$")]

# Clocks of integrations drift; a report a little "in the future" is still accepted.
CLOCK_SKEW = timedelta(minutes=2)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reporter(Strict):
    id: Code
    name: Text
    role: ReporterRole
    phone: Phone


class Beneficiary(Strict):
    name: Text
    group: BeneficiaryGroup
    phone: Phone | None = None
    consent_to_share: bool


class RequestLocation(Strict):
    township_code: Code
    community_code: Code
    address: Annotated[SingleLine, StringConstraints(min_length=1, max_length=300)]


class IntakeRequest(Strict):
    external_id: Annotated[SingleLine, StringConstraints(min_length=1, max_length=128)]
    reporter: Reporter
    beneficiary: Beneficiary
    location: RequestLocation
    category: Category
    urgency: Urgency
    description: Annotated[FreeText, StringConstraints(min_length=1, max_length=4000)]
    reported_at: AwareDatetime
    callback_url: HttpUrl | None = None

    @field_validator("reported_at")
    @classmethod
    def not_in_future(cls, value: datetime) -> datetime:
        if value > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("reported_at is in the future")
        return value


class TimelineEntry(BaseModel):
    status: OrderStatus
    at: datetime
    station_id: str | None
    reason: str | None


class IntakeResponse(BaseModel):
    order_id: uuid.UUID
    status: OrderStatus
    link: str


class RequestView(BaseModel):
    order_id: uuid.UUID
    external_id: str
    status: OrderStatus
    station_id: str | None
    category: Category
    urgency: Urgency
    submitted_at: datetime
    deadlines: Deadlines
    timeline: list[TimelineEntry] = Field(default_factory=list)


# The return visit's comment: personal data (never logged; the audit redacts it).
Comment = Annotated[FreeText, StringConstraints(max_length=2000)]


class FeedbackBody(Strict):
    """The reporter's answer at the return visit (回访)."""

    resolved: StrictBool = Field(description="was the need met")
    satisfaction: Satisfaction
    comment: Comment | None = None


# --- Operator API ---------------------------------------------------------------------------

Reason = Annotated[FreeText, StringConstraints(min_length=1, max_length=500)]
Name = Annotated[SingleLine, StringConstraints(min_length=1, max_length=200)]


class OrderSummary(BaseModel):
    """An order as operators see it: no personal data."""

    order_id: uuid.UUID
    integration_id: str
    external_id: str
    status: OrderStatus
    station_id: str | None
    dispatch_no: int
    category: Category
    urgency: Urgency
    township_code: str
    community_code: str
    submitted_at: datetime
    deadlines: Deadlines
    overdue: bool
    awaiting_operator: bool
    hold_reason: str | None
    redispatches: int
    resends: int
    feedback_due_at: datetime | None = Field(
        description="awaiting feedback: closed without feedback then"
    )
    send_backs: int


class OperatorTimelineEntry(TimelineEntry):
    actor: str | None


class OrderDetail(OrderSummary):
    tried_stations: list[str]
    timeline: list[OperatorTimelineEntry]


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class RedispatchBody(Strict):
    station_id: Code
    reason: Reason


class ReasonBody(Strict):
    reason: Reason


class ReturnVisitBody(Strict):
    """An operator's return visit or call: whom it reached, and then the answers."""

    reached: StrictBool
    resolved: StrictBool | None = Field(default=None, description="required when reached")
    satisfaction: Satisfaction | None = Field(default=None, description="required when reached")
    comment: Comment | None = None


class SendBackBody(Strict):
    reason: Reason
    station_id: Code | None = Field(
        default=None, description="the station that redoes the order; null: the one that served it"
    )


class StationBody(Strict):
    name: Name
    township_code: Code
    active: bool = True
    reason: Reason


class StationView(BaseModel):
    id: str
    name: str
    township_code: str
    active: bool


class CommunityBody(Strict):
    name: Name
    township_code: Code
    station_id: Code | None = Field(description="the covering station; null: none")
    fallbacks: list[Code] = Field(default_factory=list, max_length=10)
    reason: Reason


class CommunityView(BaseModel):
    code: str
    name: str
    township_code: str
    station_id: str | None
    fallbacks: list[str]


class OverrideBody(Strict):
    station_id: Code | None = Field(description="null removes the override")
    reason: Reason


class OverrideView(BaseModel):
    township_code: str
    category: Category
    station_id: str


class CoverageView(BaseModel):
    communities: list[CommunityView]
    overrides: list[OverrideView]


class IntegrationBody(Strict):
    name: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9 ._-]{1,64}$")
    ]
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    reason: Reason


class IntegrationCreated(BaseModel):
    id: str
    api_key: str = Field(description="for X-API-Key; shown only now")
    callback_secret: str = Field(description="verifies status callbacks; shown only now")


class OperatorView(BaseModel):
    id: str
    name: str
    role: str
    stations: list[str] | None = Field(description="the operator's scope; null: every station")
    created_at: datetime
    revoked_at: datetime | None


class IntegrationView(BaseModel):
    id: str
    name: str
    rate_limit_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None
