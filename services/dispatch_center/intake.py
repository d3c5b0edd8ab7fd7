"""Intake: a reported need becomes an order, routed and dispatched in one statement; and what
an integration may read back of its orders."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services.dispatch_center import callbacks, domain, store
from services.dispatch_center.api.schemas import IntakeRequest
from services.dispatch_center.domain import Integration, Order, TimelineEntry
from services.dispatch_center.settings import CenterSettings
from shared.db import Pool
from shared.domain import OrderStatus
from shared.errors import Conflict, InvalidField, NotFound
from shared.events import Actor, CaseDetails


@dataclass(frozen=True)
class IntakeResult:
    order_id: uuid.UUID
    status: OrderStatus
    created: bool


def request_hash(request: IntakeRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit(
    pool: Pool, settings: CenterSettings, integration: Integration, request: IntakeRequest
) -> IntakeResult:
    """Two statements: the community with its stations, then the order inserted already
    routed, with its timeline, callbacks and events (one more to read a repeated request)."""
    fingerprint = request_hash(request)
    if request.callback_url is not None:
        await _check_callback_url(settings, str(request.callback_url))
    async with pool.acquire() as conn:
        found = await store.candidates(conn, request.location.community_code, request.category)
        stations = domain.checked_location(request.location.township_code, found).stations
        order = _new_order(settings, integration, request, fingerprint)
        actor = Actor(kind="integration", id=integration.id)
        change = domain.submit_change(order, actor) + domain.route_change(
            settings, order, stations, order.submitted_at
        )
        if not await store.insert(conn, order, change):
            earlier = await store.order_by_external_id(conn, integration.id, request.external_id)
            assert earlier is not None
            return _repeated(earlier, fingerprint)
    assert change.status is not None  # submitted, then dispatched or unroutable
    return IntakeResult(order_id=order.id, status=change.status, created=True)


def _repeated(earlier: Order, fingerprint: str) -> IntakeResult:
    """A request with an external_id sent before: the same order when it is the same body."""
    if earlier.request_hash != fingerprint:
        raise Conflict(
            "external_id was used before with a different request body",
            current={"status": earlier.status.value, "version": earlier.version},
        )
    return IntakeResult(order_id=earlier.id, status=earlier.status, created=False)


async def _check_callback_url(settings: CenterSettings, url: str) -> None:
    try:
        await callbacks.target(settings, url)
    except callbacks.RefusedUrl as exc:
        raise InvalidField(
            ("body", "callback_url"), str(exc), type="callback_url_refused"
        ) from None


def _new_order(
    settings: CenterSettings, integration: Integration, request: IntakeRequest, fingerprint: str
) -> Order:
    """The new order, as submitted (before routing)."""
    now = datetime.now(UTC)
    deadlines = domain.deadlines_for(settings, request.urgency, now)
    return Order(
        id=uuid.uuid4(),
        integration_id=integration.id,
        external_id=request.external_id,
        request_hash=fingerprint,
        status=OrderStatus.SUBMITTED,
        version=1,
        station_id=None,
        dispatch_no=0,
        category=request.category,
        urgency=request.urgency,
        beneficiary_group=request.beneficiary.group,
        township_code=request.location.township_code,
        community_code=request.location.community_code,
        reported_at=request.reported_at,
        submitted_at=now,
        dispatch_by=deadlines.dispatch_by,
        accept_by=deadlines.accept_by,
        assign_by=deadlines.assign_by,
        complete_by=deadlines.complete_by,
        callback_url=str(request.callback_url) if request.callback_url else None,
        case_details=_case_details(request).model_dump(mode="json"),
    )


def _case_details(request: IntakeRequest) -> CaseDetails:
    return CaseDetails(
        beneficiary_name=request.beneficiary.name,
        beneficiary_phone=request.beneficiary.phone,
        address=request.location.address,
        reporter_name=request.reporter.name,
        reporter_phone=request.reporter.phone,
        reporter_role=request.reporter.role,
        description=request.description,
        consent_to_share=request.beneficiary.consent_to_share,
    )


async def get_request(
    pool: Pool, integration: Integration, order_id: uuid.UUID
) -> tuple[Order, list[TimelineEntry]]:
    """One of the integration's orders with its timeline; 404 for any other."""
    async with pool.acquire() as conn:
        order = await store.order(conn, order_id, integration.id)
        if order is None:
            raise NotFound("no such request")
        return order, await store.timeline(conn, order_id)
