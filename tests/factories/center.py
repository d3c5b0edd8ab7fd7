"""One order's events as production makes them: the center's own domain functions decide every
center step (dispatch, redispatch, escalation, take-back, return visit, send-back), and the
station's steps are the events the station worker publishes.

For the audit's tests: whatever history a test drives here is one the center can produce, so a
redispatch after a send-back carries ``redo``, a take-back carries ``accepted_at``, and so on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.dispatch_center import domain
from services.dispatch_center.domain import Change, Feedback, Order, apply
from services.dispatch_center.settings import CenterSettings
from shared.domain import BeneficiaryGroup, Category, OrderStatus, Satisfaction, Stage, Urgency
from shared.events import (
    Actor,
    Envelope,
    EventPayload,
    OrderAccepted,
    OrderAssigned,
    OrderCompleted,
    OrderReceived,
    OrderRejected,
    OrderStarted,
    new_event,
)

BASE = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
STAFF = Actor(kind="station_staff", id="staff")
OPERATOR = Actor(kind="operator", id="op")
INTEGRATION = Actor(kind="integration", id="intg")
# Short windows so that histories of a few hours cross deadlines: accept in 1 h, assign in 2 h,
# complete in 6 h (urgent); the order may be redispatched automatically 3 times.
SETTINGS = CenterSettings(
    max_redispatches=3,
    resend_interval_s=60,
    feedback_timeout_s=24 * 3600,
    deadlines={
        Urgency.URGENT: {
            Stage.DISPATCH: timedelta(minutes=30),
            Stage.ACCEPT: timedelta(hours=1),
            Stage.ASSIGN: timedelta(hours=2),
            Stage.COMPLETE: timedelta(hours=6),
        }
    },
)
LEARNT_AFTER = 0.01
"""Minutes after a station's step that the center reacts to it."""
CASE = {
    "beneficiary_name": "A. Resident",
    "beneficiary_phone": None,
    "address": "1 Road",
    "reporter_name": "R. Porter",
    "reporter_phone": "+86 123456",
    "reporter_role": "grid_member",
    "description": "needs help",
    "consent_to_share": True,
}


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


@dataclass
class CenterOrder:
    """One order; every step happens ``minutes`` after :data:`BASE`."""

    settings: CenterSettings = field(default_factory=lambda: SETTINGS)
    order_id: uuid.UUID = field(default_factory=uuid.uuid4)
    submitted_minutes: float = 0
    order: Order = field(init=False)
    events: list[Envelope[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        submitted = at(self.submitted_minutes)
        deadlines = domain.deadlines_for(self.settings, Urgency.URGENT, submitted)
        self.order = Order(
            id=self.order_id,
            integration_id="intg",
            external_id=str(self.order_id),
            request_hash="h",
            status=OrderStatus.SUBMITTED,
            version=1,
            station_id=None,
            dispatch_no=0,
            category=Category.ELDER_CARE,
            urgency=Urgency.URGENT,
            beneficiary_group=BeneficiaryGroup.OTHERS,
            township_code="TS",
            community_code="C1",
            reported_at=submitted,
            submitted_at=submitted,
            dispatch_by=deadlines.dispatch_by,
            accept_by=deadlines.accept_by,
            assign_by=deadlines.assign_by,
            complete_by=deadlines.complete_by,
            callback_url=None,
            case_details=CASE,
        )

    # -- the center decides ----------------------------------------------------------------

    def _center(self, change: Change | None) -> CenterOrder:
        if change is not None:
            self.order = apply(self.order, change)
            self.events.extend(change.events)
        return self

    def submitted(self, *stations: str, minutes: float | None = None) -> CenterOrder:
        """Submitted and routed at once (to the first of ``stations``; none: unroutable)."""
        now = at(self.submitted_minutes if minutes is None else minutes)
        first = domain.submit_change(self.order, INTEGRATION)
        return self._center(
            domain.then(
                self.order,
                first,
                lambda o: domain.route_change(self.settings, o, list(stations), now),
            )
        )

    def escalated(self, minutes: float, *next_stations: str) -> CenterOrder:
        change = domain.escalate_change(self.settings, self.order, list(next_stations), at(minutes))
        return self._center(change)

    def redispatched(self, station: str, minutes: float) -> CenterOrder:
        """An operator sends the order to ``station``."""
        change = domain.operator_redispatch_change(
            self.settings,
            self.order,
            station,
            True,
            reason="operator's choice",
            actor=OPERATOR,
            now=at(minutes),
        )
        return self._center(change)

    def visited(
        self,
        minutes: float,
        *,
        resolved: bool = True,
        satisfaction: Satisfaction = Satisfaction.SATISFIED,
    ) -> CenterOrder:
        feedback = Feedback("operator", True, resolved, satisfaction, "comment")
        change = domain.feedback_change(self.order, feedback, actor=OPERATOR, at=at(minutes))
        return self._center(change)

    def sent_back(self, station: str, minutes: float) -> CenterOrder:
        change = domain.send_back_change(
            self.settings,
            self.order,
            station,
            True,
            reason="not resolved",
            actor=OPERATOR,
            now=at(minutes),
        )
        return self._center(change)

    def unanswered(self, minutes: float) -> CenterOrder:
        return self._center(domain.unanswered_change(self.order, at(minutes)))

    # -- the station acts, the center reacts -----------------------------------------------

    def _station(self, payload: EventPayload, minutes: float) -> Envelope[Any]:
        event = new_event(payload, order_id=self.order_id, actor=STAFF, occurred_at=at(minutes))
        self.events.append(event)
        return event

    def received(self, station: str, minutes: float) -> CenterOrder:
        self._station(
            OrderReceived(station_id=station, dispatch_no=self.order.dispatch_no), minutes
        )
        return self

    def accepted(self, station: str, minutes: float, learnt: float | None = None) -> CenterOrder:
        """The station accepts at ``minutes``; the center learns of it at ``learnt``."""
        event = self._station(OrderAccepted(station_id=station), minutes)
        now = at(minutes if learnt is None else learnt)
        return self._center(domain.accept_change(self.order, event, now))

    def rejected(self, station: str, minutes: float, *next_stations: str) -> CenterOrder:
        """The station rejects at ``minutes``; the center learns of it (and redispatches) a
        moment later, as its consumer does."""
        payload = OrderRejected(
            station_id=station,
            dispatch_no=self.order.dispatch_no,
            reason_code="out_of_area",
            note="not ours",
        )
        event = self._station(payload, minutes)
        if not domain.rejection_counts(self.order, payload):
            return self
        change = domain.reject_change(
            self.settings, self.order, event, list(next_stations), at(minutes + LEARNT_AFTER)
        )
        return self._center(change)

    def assigned(self, station: str, minutes: float, worker: str = "w1") -> CenterOrder:
        event = self._station(OrderAssigned(station_id=station, worker_id=worker), minutes)
        return self._center(domain.progress_change(self.settings, self.order, event, at(minutes)))

    def started(self, station: str, minutes: float, worker: str = "w1") -> CenterOrder:
        event = self._station(OrderStarted(station_id=station, worker_id=worker), minutes)
        return self._center(domain.progress_change(self.settings, self.order, event, at(minutes)))

    def completed(
        self, station: str, minutes: float, worker: str = "w1", learnt: float | None = None
    ) -> CenterOrder:
        payload = OrderCompleted(
            station_id=station,
            worker_id=worker,
            outcome="served",
            service_minutes=30,
            follow_up_needed=False,
            summary="done",
        )
        event = self._station(payload, minutes)
        now = at(minutes if learnt is None else learnt)
        return self._center(domain.progress_change(self.settings, self.order, event, now))

    def served(self, station: str, minutes: float, worker: str = "w1") -> CenterOrder:
        """Accepted, assigned, started and completed, a minute apart from ``minutes``."""
        self.accepted(station, minutes).assigned(station, minutes + 1, worker)
        return self.started(station, minutes + 2, worker).completed(station, minutes + 3, worker)

    def redacted(self) -> list[dict[str, Any]]:
        return [e.redacted() for e in self.events]
