from __future__ import annotations

from datetime import datetime

from services.dispatch_center.settings import CenterSettings
from shared.domain import Stage, Urgency
from shared.events import Deadlines


def deadlines_for(settings: CenterSettings, urgency: Urgency, submitted_at: datetime) -> Deadlines:
    """Every stage's deadline, measured from submission."""
    offsets = settings.deadline_offsets(urgency)
    return Deadlines(
        dispatch_by=submitted_at + offsets[Stage.DISPATCH],
        accept_by=submitted_at + offsets[Stage.ACCEPT],
        assign_by=submitted_at + offsets[Stage.ASSIGN],
        complete_by=submitted_at + offsets[Stage.COMPLETE],
    )
