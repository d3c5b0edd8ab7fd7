"""Events as the center sends them, for tests that publish straight to Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.events import (
    SYSTEM,
    CaseDetails,
    Deadlines,
    Envelope,
    Location,
    OrderDispatched,
    new_event,
)
from tests.helpers import remember_personal_data

LOCATION = Location(township_code="TS-LH", community_code="LH-HAIYUN")


def case_details() -> CaseDetails:
    """A resident's case; its personal data is remembered, so no log may show it."""
    case = CaseDetails(
        beneficiary_name="Gu Xiaolan",
        beneficiary_phone="+86 13911112222",
        address="No. 7, Test Lane",
        reporter_name="Qian Duoduo",
        reporter_phone="+86 13800000000",
        reporter_role="grid_member",
        description="lives alone, needs a visit",
        consent_to_share=True,
    )
    remember_personal_data(
        case.beneficiary_name,
        case.beneficiary_phone,
        case.address,
        case.reporter_name,
        case.reporter_phone,
    )
    return case


def dispatched(
    station_id: str,
    *,
    order_id: uuid.UUID | None = None,
    dispatch_no: int = 1,
    category: str = "elder_care",
    urgency: str = "routine",
    location: Location = LOCATION,
    accept_in: timedelta = timedelta(hours=24),
) -> Envelope[OrderDispatched]:
    now = datetime.now(UTC)
    return new_event(
        OrderDispatched(
            station_id=station_id,
            dispatch_no=dispatch_no,
            category=category,
            urgency=urgency,
            beneficiary_group="elderly_in_hardship",
            location=location,
            submitted_at=now,
            deadlines=Deadlines(
                dispatch_by=now,
                accept_by=now + accept_in,
                assign_by=now + accept_in + timedelta(hours=1),
                complete_by=now + accept_in + timedelta(days=2),
            ),
            case=case_details(),
        ),
        order_id=order_id or uuid.uuid4(),
        actor=SYSTEM,
    )
