"""Intake: a reported need becomes an order, routed and dispatched in one statement."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.dispatch_center import callbacks, lifecycle, routing
from services.dispatch_center.auth import Integration
from services.dispatch_center.deadlines import deadlines_for
from services.dispatch_center.models import IntakeRequest, RequestView, TimelineEntry
from services.dispatch_center.settings import CenterSettings
from shared.db import Connection, Pool
from shared.domain import OrderStatus
from shared.events import Actor, CaseDetails, Deadlines


class InvalidField(Exception):
    """Input that is well-formed but names something that does not exist (422)."""

    def __init__(self, loc: tuple[str, ...], msg: str, kind: str) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind


class ConflictingRequest(Exception):
    """The same external_id came before with a different body (409)."""


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
        found = await routing.candidates(conn, request.location.community_code, request.category)
        stations = _checked_location(request, found).stations
        order = _new_order(settings, integration, request, fingerprint)
        actor = Actor(kind="integration", id=integration.id)
        change = lifecycle.submit_change(order, actor) + lifecycle.route_change(
            settings, order, stations, order["submitted_at"]
        )
        if not await lifecycle.insert(conn, order, change):
            return await _existing(conn, integration, request.external_id, fingerprint)
    assert change.status is not None  # submitted, then dispatched or unroutable
    return IntakeResult(order_id=order["id"], status=change.status, created=True)


async def _check_callback_url(settings: CenterSettings, url: str) -> None:
    try:
        await callbacks.target(settings, url)
    except callbacks.RefusedUrl as exc:
        raise InvalidField(("body", "callback_url"), str(exc), "callback_url_refused") from None


def _checked_location(
    request: IntakeRequest, found: routing.Candidates | None
) -> routing.Candidates:
    """The community's candidates, once it exists and lies in the request's township."""
    if found is None:
        raise InvalidField(
            ("body", "location", "community_code"), "unknown community", "unknown_community"
        )
    if found.township_code != request.location.township_code:
        raise InvalidField(
            ("body", "location", "township_code"),
            "the community is not in this township",
            "township_mismatch",
        )
    return found


def _new_order(
    settings: CenterSettings, integration: Integration, request: IntakeRequest, fingerprint: str
) -> dict[str, Any]:
    """The new order's columns, as submitted (before routing)."""
    now = datetime.now(UTC)
    deadlines = deadlines_for(settings, request.urgency, now)
    return {
        "id": uuid.uuid4(),
        "integration_id": integration.id,
        "external_id": request.external_id,
        "request_hash": fingerprint,
        "status": OrderStatus.SUBMITTED,
        "version": 1,
        "station_id": None,
        "dispatch_no": 0,
        "tried_stations": [],
        "category": request.category,
        "urgency": request.urgency,
        "beneficiary_group": request.beneficiary.group,
        "township_code": request.location.township_code,
        "community_code": request.location.community_code,
        "reported_at": request.reported_at,
        "submitted_at": now,
        "dispatch_by": deadlines.dispatch_by,
        "accept_by": deadlines.accept_by,
        "assign_by": deadlines.assign_by,
        "complete_by": deadlines.complete_by,
        "callback_url": str(request.callback_url) if request.callback_url else None,
        "case_details": _case_details(request).model_dump(mode="json"),
    }


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


async def _existing(
    conn: Connection, integration: Integration, external_id: str, fingerprint: str
) -> IntakeResult:
    row = await conn.fetchrow(
        "SELECT id, status, request_hash FROM orders"
        " WHERE integration_id = $1 AND external_id = $2",
        integration.id,
        external_id,
    )
    assert row is not None
    if row["request_hash"] != fingerprint:
        raise ConflictingRequest(external_id)
    return IntakeResult(order_id=row["id"], status=OrderStatus(row["status"]), created=False)


async def get_request(
    pool: Pool, integration: Integration, order_id: uuid.UUID
) -> RequestView | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT id, external_id, status, station_id, category, urgency, submitted_at,
                      dispatch_by, accept_by, assign_by, complete_by
               FROM orders WHERE id = $1 AND integration_id = $2""",
            order_id,
            integration.id,
        )
        if row is None:
            return None
        timeline = await conn.fetch(
            "SELECT status, at, station_id, reason FROM order_timeline"
            " WHERE order_id = $1 ORDER BY id",
            order_id,
        )
    return RequestView(
        order_id=row["id"],
        external_id=row["external_id"],
        status=row["status"],
        station_id=row["station_id"],
        category=row["category"],
        urgency=row["urgency"],
        submitted_at=row["submitted_at"],
        deadlines=Deadlines(
            dispatch_by=row["dispatch_by"],
            accept_by=row["accept_by"],
            assign_by=row["assign_by"],
            complete_by=row["complete_by"],
        ),
        timeline=[TimelineEntry(**dict(t)) for t in timeline],
    )
