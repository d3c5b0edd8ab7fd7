"""Build one order's lifecycle events, at chosen times, for the audit tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from shared import topics
from shared.domain import Stage
from shared.events import (
    SYSTEM,
    Actor,
    Deadlines,
    Envelope,
    EventPayload,
    Location,
    OrderAccepted,
    OrderAssigned,
    OrderAwaitingFeedback,
    OrderCancelled,
    OrderClosed,
    OrderCompleted,
    OrderDispatched,
    OrderEscalated,
    OrderFeedbackReceived,
    OrderFollowedUp,
    OrderReceived,
    OrderRejected,
    OrderSentBack,
    OrderStarted,
    OrderSubmitted,
    OrderSupervisionOpened,
    Redo,
    new_event,
)
from tests.factories.events import case_details

LOCATION = Location(township_code="TS-LH", community_code="LH-HAIYUN")
STAFF = Actor(kind="station_staff", id="test-staff")
OPERATOR = Actor(kind="operator", id="test-operator")
# Personal text the tests look for in the trail (it must never be there).
SECRET = "PERSONAL-DO-NOT-STORE"


@dataclass
class OrderScript:
    """One order; each method adds an event ``minutes`` after submission."""

    submitted_at: datetime
    urgency: str = "routine"
    category: str = "elder_care"
    deadlines_min: dict[Stage, float] = field(
        default_factory=lambda: {
            Stage.DISPATCH: 240,
            Stage.ACCEPT: 1440,
            Stage.ASSIGN: 2880,
            Stage.COMPLETE: 21600,
        }
    )
    order_id: uuid.UUID = field(default_factory=uuid.uuid4)
    events: list[tuple[str, Envelope[Any]]] = field(default_factory=list)
    dispatch_no: int = 0
    send_back_no: int = 0
    station_deadlines: Deadlines | None = None
    """The last dispatch's station's own deadlines: the order's windows counted from it."""

    @property
    def deadlines(self) -> Deadlines:
        at = {s: self.submitted_at + timedelta(minutes=m) for s, m in self.deadlines_min.items()}
        return Deadlines(
            dispatch_by=at[Stage.DISPATCH],
            accept_by=at[Stage.ACCEPT],
            assign_by=at[Stage.ASSIGN],
            complete_by=at[Stage.COMPLETE],
        )

    def _add(
        self, topic: str, payload: EventPayload, minutes: float, actor: Actor = SYSTEM
    ) -> OrderScript:
        self.events.append(
            (
                topic,
                new_event(
                    payload,
                    order_id=self.order_id,
                    actor=actor,
                    occurred_at=self.submitted_at + timedelta(minutes=minutes),
                ),
            )
        )
        return self

    def submitted(self) -> OrderScript:
        return self._add(
            topics.CENTER_EVENTS,
            OrderSubmitted(
                integration_id="test",
                external_id=str(self.order_id),
                category=self.category,
                urgency=self.urgency,
                beneficiary_group="elderly_in_hardship",
                location=LOCATION,
                reported_at=self.submitted_at,
                deadlines=self.deadlines,
            ),
            0,
        )

    def dispatched(
        self,
        station: str,
        minutes: float,
        *,
        resend: bool = False,
        accepted_at_minutes: float | None = None,
    ) -> OrderScript:
        if not resend:
            self.dispatch_no += 1
            self.station_deadlines = self.deadlines.shifted(timedelta(minutes=minutes))
        original = next(
            (
                e.event_id
                for _, e in reversed(self.events)
                if isinstance(e.payload, OrderDispatched)
                and e.payload.dispatch_no == self.dispatch_no
            ),
            None,
        )
        return self._add(
            topics.CENTER_EVENTS,
            OrderDispatched(
                station_id=station,
                dispatch_no=self.dispatch_no,
                reason="rejected by the station" if self.dispatch_no > 1 else None,
                resend_of=original if resend else None,
                accepted_at=None
                if accepted_at_minutes is None
                else self.submitted_at + timedelta(minutes=accepted_at_minutes),
                category=self.category,
                urgency=self.urgency,
                beneficiary_group="elderly_in_hardship",
                location=LOCATION,
                submitted_at=self.submitted_at,
                deadlines=self.deadlines,
                station_deadlines=self.station_deadlines,
                case=case_details(),
            ),
            minutes,
        )

    def received(self, station: str, minutes: float) -> OrderScript:
        return self._add(
            topics.STATION_EVENTS,
            OrderReceived(station_id=station, dispatch_no=self.dispatch_no),
            minutes,
        )

    def rejected(self, station: str, minutes: float) -> OrderScript:
        return self._add(
            topics.STATION_EVENTS,
            OrderRejected(
                station_id=station,
                dispatch_no=self.dispatch_no,
                reason_code="out_of_capacity",
                note="private note",
            ),
            minutes,
            STAFF,
        )

    def escalated(self, station: str, minutes: float) -> OrderScript:
        return self._add(
            topics.CENTER_EVENTS,
            OrderEscalated(stage=Stage.ACCEPT, station_id=station, reason="not accepted in time"),
            minutes,
        )

    def accepted(self, station: str, minutes: float) -> OrderScript:
        return self._add(topics.STATION_EVENTS, OrderAccepted(station_id=station), minutes, STAFF)

    def assigned(self, station: str, worker: str, minutes: float) -> OrderScript:
        return self._add(
            topics.STATION_EVENTS,
            OrderAssigned(station_id=station, worker_id=worker),
            minutes,
            STAFF,
        )

    def started(self, station: str, worker: str, minutes: float) -> OrderScript:
        return self._add(
            topics.STATION_EVENTS, OrderStarted(station_id=station, worker_id=worker), minutes
        )

    def completed(
        self, station: str, worker: str, minutes: float, *, follow_up_by: date | None = None
    ) -> OrderScript:
        return self._add(
            topics.STATION_EVENTS,
            OrderCompleted(
                station_id=station,
                worker_id=worker,
                outcome="served",
                service_minutes=60,
                follow_up_needed=follow_up_by is not None,
                summary=f"summary {SECRET}",
                follow_up_by=follow_up_by,
                follow_up_plan=None if follow_up_by is None else f"plan {SECRET}",
            ),
            minutes,
        )

    def closed(
        self, station: str, minutes: float, *, without_feedback: bool = False
    ) -> OrderScript:
        return self._add(
            topics.CENTER_EVENTS,
            OrderClosed(station_id=station, without_feedback=without_feedback),
            minutes,
        )

    def awaiting_feedback(self, station: str, minutes: float, days: float = 7) -> OrderScript:
        due = self.submitted_at + timedelta(minutes=minutes, days=days)
        return self._add(
            topics.CENTER_EVENTS,
            OrderAwaitingFeedback(station_id=station, feedback_due_at=due),
            minutes,
        )

    def feedback(
        self,
        station: str,
        minutes: float,
        *,
        resolved: bool | None = True,
        satisfaction: str | None = "satisfied",
        source: str = "integration",
        reached: bool = True,
    ) -> OrderScript:
        return self._add(
            topics.CENTER_EVENTS,
            OrderFeedbackReceived(
                station_id=station,
                source=source,
                reached=reached,
                resolved=resolved if reached else None,
                satisfaction=satisfaction if reached else None,
                comment=f"comment {SECRET}",
            ),
            minutes,
            OPERATOR if source == "operator" else SYSTEM,
        )

    def sent_back(
        self,
        station: str,
        minutes: float,
        *,
        to_station: str | None = None,
        accept_min: float = 60,
        complete_min: float = 1440,
        supervision: bool = False,
    ) -> OrderScript:
        """The send-back and, at the same time, the redo's dispatch with deadlines counted
        from now (and, with ``supervision``, its opening)."""
        self.send_back_no += 1
        to = to_station or station
        reason = "the resident was not satisfied"
        self._add(
            topics.CENTER_EVENTS,
            OrderSentBack(
                station_id=station, to_station_id=to, send_back_no=self.send_back_no, reason=reason
            ),
            minutes,
            OPERATOR,
        )
        if supervision:
            self._add(
                topics.CENTER_EVENTS,
                OrderSupervisionOpened(
                    station_id=station, send_backs=self.send_back_no, reason=reason
                ),
                minutes,
            )
        self.dispatch_no += 1
        at = self.submitted_at + timedelta(minutes=minutes)
        fresh = self.deadlines.model_copy(
            update={
                "accept_by": at + timedelta(minutes=accept_min),
                "complete_by": at + timedelta(minutes=complete_min),
            }
        )
        return self._add(
            topics.CENTER_EVENTS,
            OrderDispatched(
                station_id=to,
                dispatch_no=self.dispatch_no,
                reason="sent back for redo",
                redo=Redo(
                    send_back_no=self.send_back_no,
                    reason=reason,
                    resolved=False,
                    satisfaction="dissatisfied",
                ),
                category=self.category,
                urgency=self.urgency,
                beneficiary_group="elderly_in_hardship",
                location=LOCATION,
                submitted_at=self.submitted_at,
                deadlines=fresh,
                case=case_details(),
            ),
            minutes,
        )

    def followed_up(
        self,
        station: str,
        worker: str,
        minutes: float,
        visited_on: date,
        next_by: date | None = None,
    ) -> OrderScript:
        return self._add(
            topics.STATION_EVENTS,
            OrderFollowedUp(
                station_id=station,
                worker_id=worker,
                visited_on=visited_on,
                summary=f"visit {SECRET}",
                next_follow_up_by=next_by,
            ),
            minutes,
            STAFF,
        )

    def cancelled(self, station: str | None, minutes: float) -> OrderScript:
        return self._add(
            topics.CENTER_EVENTS, OrderCancelled(station_id=station, reason="withdrawn"), minutes
        )

    def redacted(self) -> list[dict[str, Any]]:
        return [e.redacted() for _, e in self.events]
