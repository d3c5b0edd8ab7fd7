"""Intake API schemas. Unknown fields are rejected (422) so callers cannot set what is ours."""

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
    StringConstraints,
    field_validator,
)

from shared.domain import BeneficiaryGroup, Category, OrderStatus, ReporterRole, Urgency
from shared.events import Deadlines

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
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
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class IntakeRequest(Strict):
    external_id: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)
    ]
    reporter: Reporter
    beneficiary: Beneficiary
    location: RequestLocation
    category: Category
    urgency: Urgency
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)
    ]
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
