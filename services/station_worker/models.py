from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from shared.domain import BeneficiaryGroup, Category, OrderStatus, Urgency
from shared.events import CaseDetails, Deadlines


class HistoryEntry(BaseModel):
    status: OrderStatus | str
    at: datetime
    actor: str
    note: str | None


class StationOrder(BaseModel):
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
    case: CaseDetails
    worker_id: str | None
    version: int
    history: list[HistoryEntry]
