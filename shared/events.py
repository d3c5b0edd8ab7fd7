"""Event contracts: one envelope for every event, one payload model per (type, schema version).

Fields marked ``personal=True`` hold personal data of residents. They travel only to the
service that needs them (the station) and are dropped by :meth:`Envelope.redacted`, which is
what the audit trail stores.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar

import pydantic_core
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from shared import topics
from shared.domain import BeneficiaryGroup, Category, ReporterRole, Satisfaction, Stage, Urgency


def personal(**kwargs: Any) -> Any:
    """A field that holds personal data: never logged, dropped from redacted events."""
    return Field(json_schema_extra={"personal": True}, **kwargs)


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Actor(Contract):
    kind: Literal["integration", "operator", "station_staff", "system"]
    id: str

    @property
    def text(self) -> str:
        """The one way an actor is written as text (a history's ``actor`` column): kind:id."""
        return f"{self.kind}:{self.id}"


SYSTEM = Actor(kind="system", id="swdispatch")


class Deadlines(Contract):
    dispatch_by: AwareDatetime
    accept_by: AwareDatetime
    assign_by: AwareDatetime
    complete_by: AwareDatetime

    def for_stage(self, stage: Stage) -> datetime:
        return {
            Stage.DISPATCH: self.dispatch_by,
            Stage.ACCEPT: self.accept_by,
            Stage.ASSIGN: self.assign_by,
            Stage.COMPLETE: self.complete_by,
        }[stage]

    def shifted(self, by: timedelta) -> Deadlines:
        """The accept, assign and complete deadlines ``by`` later (dispatch_by as it is): the
        same windows counted from a later start."""
        return self.model_copy(
            update={
                "accept_by": self.accept_by + by,
                "assign_by": self.assign_by + by,
                "complete_by": self.complete_by + by,
            }
        )


class Location(Contract):
    township_code: str
    community_code: str


class CaseDetails(Contract):
    """What a social worker needs to find and help the resident."""

    beneficiary_name: str
    beneficiary_phone: str | None
    address: str
    reporter_name: str
    reporter_phone: str
    reporter_role: ReporterRole
    description: str
    consent_to_share: bool


class EventPayload(Contract):
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class OrderSubmitted(EventPayload):
    """The center took a request in: the order exists, its deadlines are set."""

    event_type = "order.submitted"
    integration_id: str
    external_id: str
    category: Category
    urgency: Urgency
    beneficiary_group: BeneficiaryGroup
    location: Location
    reported_at: AwareDatetime
    deadlines: Deadlines


class Redo(Contract):
    """Why a dispatch is a redo (发回重办): the order was sent back after its return visit."""

    send_back_no: int = Field(ge=1, description="1 for the first send-back of the order")
    reason: str = Field(description="the operator's reason for the send-back")
    resolved: bool | None = Field(description="what the return visit found: was the need met")
    satisfaction: Satisfaction | None


class OrderDispatched(EventPayload):
    """The center sent the order to a station (again, for a redispatch or a resend)."""

    event_type = "order.dispatched"
    station_id: str
    dispatch_no: int = Field(ge=1, description="1 for the first dispatch, +1 per redispatch")
    reason: str | None = None
    resend_of: uuid.UUID | None = Field(
        default=None,
        description="set when the center re-sends an unacknowledged dispatch: the event id of "
        "the original; same dispatch_no, so the station changes nothing but acknowledges again",
    )
    accepted_at: AwareDatetime | None = Field(
        default=None,
        description="set when the station accepted an earlier dispatch of the order before its "
        "deadline and the center had redispatched it meanwhile: the order goes back to that "
        "station already accepted (at this time), and the redispatch is withdrawn",
    )
    redo: Redo | None = Field(
        default=None,
        description="set when the dispatch follows a send-back for redo; its accept and complete "
        "deadlines are counted afresh from the send-back",
    )
    station_deadlines: Deadlines | None = Field(
        default=None,
        description="the deadlines this dispatch's station is held to: the order's windows "
        "counted from this dispatch (its accept_by is when the center escalates it), where "
        "``deadlines`` count from submission (or the send-back). A take-back carries those of "
        "the dispatch the station accepted. None in events made before it was added",
    )
    category: Category
    urgency: Urgency
    beneficiary_group: BeneficiaryGroup
    location: Location
    submitted_at: AwareDatetime
    deadlines: Deadlines
    case: CaseDetails = personal()


class OrderUnroutable(EventPayload):
    """No station covers the order's community: it waits for an operator."""

    event_type = "order.unroutable"
    location: Location
    reason: str


class OrderEscalated(EventPayload):
    """A stage's deadline passed (or a station rejected) and the center took the order
    back from the station; ``stage`` says which clock ran out."""

    event_type = "order.escalated"
    stage: Stage
    station_id: str | None
    reason: str


class OrderCancelled(EventPayload):
    """An operator cancelled the order; it ends here."""

    event_type = "order.cancelled"
    station_id: str | None
    reason: str


class OrderAwaitingFeedback(EventPayload):
    """The station completed the order; the center waits for the return visit (回访) until
    ``feedback_due_at``, when it closes the order without feedback."""

    event_type = "order.awaiting_feedback"
    station_id: str
    feedback_due_at: AwareDatetime


class OrderFeedbackReceived(EventPayload):
    """A return visit's result: from the reporter's integration, or from an operator who made
    the visit or call. ``reached`` false (the operator reached nobody) carries no answer and
    leaves the order waiting."""

    event_type = "order.feedback_received"
    station_id: str
    source: Literal["integration", "operator"]
    reached: bool = True
    resolved: bool | None = None
    satisfaction: Satisfaction | None = None
    comment: str | None = personal(default=None)


class OrderSentBack(EventPayload):
    """An operator sent the order back for redo (发回重办) after a return visit found the need
    unmet or the resident dissatisfied; an order.dispatched with ``redo`` follows."""

    event_type = "order.sent_back"
    station_id: str = Field(description="the station that served the order")
    to_station_id: str = Field(description="the station that redoes it")
    send_back_no: int = Field(ge=1)
    reason: str


class OrderSupervisionOpened(EventPayload):
    """The order was sent back for the third time: it is under supervision (督办) until the
    station's supervisor closes it with a note."""

    event_type = "order.supervision_opened"
    station_id: str
    send_backs: int
    reason: str


class OrderClosed(EventPayload):
    """The order is closed (resolved at the return visit, or without feedback in time):
    nothing more happens to it."""

    event_type = "order.closed"
    station_id: str | None
    without_feedback: bool = False


class StationEvent(EventPayload):
    """An event of the station that holds the order."""

    station_id: str


class WorkerEvent(StationEvent):
    """A step of the social worker the order is assigned to."""

    worker_id: str


class OrderReceived(StationEvent):
    """The station has the dispatch numbered ``dispatch_no`` (its acknowledgement)."""

    event_type = "order.received"
    dispatch_no: int


class OrderAccepted(StationEvent):
    """The station signed for the order (接单/签收): it will serve it."""

    event_type = "order.accepted"


class OrderRejected(StationEvent):
    """The station refused the dispatch with a coded reason; the center
    redispatches or holds the order."""

    event_type = "order.rejected"
    dispatch_no: int
    reason_code: str
    note: str | None = personal(default=None)


class OrderAssigned(WorkerEvent):
    """A manager gave the order to one of the station's social workers."""

    event_type = "order.assigned"


class OrderStarted(WorkerEvent):
    """The assigned social worker began the service."""

    event_type = "order.started"


class OrderCompleted(WorkerEvent):
    """The service is done (办结), with its record."""

    event_type = "order.completed"
    outcome: str
    service_minutes: int
    follow_up_needed: bool
    summary: str = personal()
    follow_up_by: date | None = Field(
        default=None, description="when the station owes the resident a follow-up visit"
    )
    follow_up_plan: str | None = personal(default=None)


class OrderFollowedUp(WorkerEvent):
    """A social worker made a follow-up visit (跟进回访) of a completed order."""

    event_type = "order.followed_up"
    visited_on: date
    summary: str = personal()
    next_follow_up_by: date | None = Field(
        default=None, description="the next follow-up visit due; None: no more follow-ups"
    )


# The deployment's own chain in the audit trail, in place of an order: who made, rotated or
# revoked which credential, when, with which scope.
DEPLOYMENT_ID = uuid.UUID(int=0)


class CredentialChanged(EventPayload):
    """A credential made, rotated or revoked (its order_id: ``DEPLOYMENT_ID``); the actor is
    who did it. Never the secret itself."""

    credential_id: str
    change: Literal["created", "rotated", "revoked"]
    role: str | None = None
    stations: list[str] | None = Field(
        default=None, description="its scope; null: every station (an integration: none)"
    )
    expires_at: AwareDatetime | None = None
    previous_works_until: AwareDatetime | None = Field(
        default=None, description="after a rotation with an overlap: the old one works until"
    )


class IntegrationKeyChanged(CredentialChanged):
    event_type = "integration.key_changed"


class OperatorTokenChanged(CredentialChanged):
    event_type = "operator.token_changed"


class StaffTokenChanged(CredentialChanged):
    event_type = "staff.token_changed"


class ReaderTokenChanged(CredentialChanged):
    event_type = "reader.token_changed"


# Which topic carries which events (documented by ``swdispatch asyncapi``).
PUBLISHED_ON: dict[str, tuple[type[EventPayload], ...]] = {
    topics.CENTER_EVENTS: (
        OrderSubmitted,
        OrderDispatched,
        OrderUnroutable,
        OrderEscalated,
        OrderCancelled,
        OrderAwaitingFeedback,
        OrderFeedbackReceived,
        OrderSentBack,
        OrderSupervisionOpened,
        OrderClosed,
        IntegrationKeyChanged,
        OperatorTokenChanged,
    ),
    topics.STATION_EVENTS: (
        OrderReceived,
        OrderAccepted,
        OrderRejected,
        OrderAssigned,
        OrderStarted,
        OrderCompleted,
        OrderFollowedUp,
        StaffTokenChanged,
    ),
    topics.AUDIT_EVENTS: (ReaderTokenChanged,),
}
PAYLOAD_TYPES: dict[tuple[str, int], type[EventPayload]] = {
    (cls.event_type, cls.schema_version): cls
    for payloads in PUBLISHED_ON.values()
    for cls in payloads
}
KNOWN_TYPES = frozenset(event_type for event_type, _ in PAYLOAD_TYPES)

P = TypeVar("P", bound=EventPayload)


class Envelope(Contract, Generic[P]):
    event_id: uuid.UUID
    type: str
    schema_version: int
    occurred_at: AwareDatetime
    order_id: uuid.UUID
    actor: Actor
    correlation_id: str
    seq: int | None = Field(
        default=None,
        ge=1,
        description="the producer's number for the order's events: 1, 2, 3 ... per order and "
        "topic, so a gap shows a missing event; None in events made before it was added",
    )
    payload: P

    def to_json(self) -> str:
        return self.model_dump_json()

    def redacted(self) -> dict[str, Any]:
        """The event as JSON-ready data without the fields that hold personal data."""
        data = self.model_dump(mode="json")
        payload_type = type(self.payload)
        data["payload"] = {
            name: value
            for name, value in data["payload"].items()
            if not _is_personal(payload_type, name)
        }
        return data


def _is_personal(model: type[BaseModel], field_name: str) -> bool:
    extra = model.model_fields[field_name].json_schema_extra
    return isinstance(extra, dict) and extra.get("personal") is True


# Each envelope class made once and held: pydantic keeps parametrized classes only weakly, and
# making one again costs more than validating an event.
ENVELOPE_TYPES: dict[type[EventPayload], type[Envelope[Any]]] = {
    cls: Envelope[cls]  # type: ignore[valid-type]
    for cls in PAYLOAD_TYPES.values()
}


def new_event(
    payload: P,
    *,
    order_id: uuid.UUID,
    actor: Actor,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> Envelope[P]:
    envelope: type[Envelope[P]] = ENVELOPE_TYPES[type(payload)]
    return envelope(
        event_id=uuid.uuid4(),
        type=payload.event_type,
        schema_version=payload.schema_version,
        occurred_at=occurred_at or datetime.now(UTC),
        order_id=order_id,
        actor=actor,
        correlation_id=correlation_id or str(uuid.uuid4()),
        payload=payload,
    )


class UndecodableEvent(Exception):
    """A message that is not an event this code knows; it belongs in the dead-letter topic."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Head(BaseModel):
    type: str
    schema_version: int


def decode(body: bytes) -> Envelope[Any]:
    """Parse one message into its typed envelope, or raise :class:`UndecodableEvent`."""
    try:
        # pydantic's parser, not json.loads: it stops at a nesting depth of 200, at numbers over
        # 4,300 digits and at lone surrogates with a ValueError, where json.loads would raise
        # RecursionError, or let a surrogate through to fail where the event is written out.
        raw = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        # Its messages name what and where ("... at line 1 column 202"), never the input.
        reason = "too_deep" if str(exc).startswith("recursion limit") else "not_json"
        raise UndecodableEvent(reason, str(exc)[:200]) from None
    if not isinstance(raw, dict):
        raise UndecodableEvent("invalid_envelope", "the message is not a JSON object")
    try:
        head = _Head.model_validate(raw)
    except ValidationError as exc:
        raise UndecodableEvent("invalid_envelope", _describe(exc)) from None
    payload_type = PAYLOAD_TYPES.get((head.type, head.schema_version))
    if payload_type is None:
        if head.type in KNOWN_TYPES:
            raise UndecodableEvent(
                "unsupported_schema_version", f"{head.type} v{head.schema_version}"
            )
        raise UndecodableEvent("unknown_event_type", head.type[:100])
    try:
        return ENVELOPE_TYPES[payload_type].model_validate(raw)
    except ValidationError as exc:
        raise UndecodableEvent("invalid_envelope", _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """Field locations and messages only: the input values may hold personal data."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )[:1000]
