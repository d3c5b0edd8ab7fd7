"""Intake: a reported need becomes an order, routed and dispatched in one transaction."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services.dispatch_center import lifecycle
from services.dispatch_center.auth import Integration
from services.dispatch_center.deadlines import deadlines_for
from services.dispatch_center.models import IntakeRequest, RequestView, TimelineEntry
from services.dispatch_center.settings import CenterSettings
from shared import outbox, topics
from shared.db import Connection, Pool
from shared.domain import OrderStatus
from shared.events import Actor, CaseDetails, Deadlines, Location, OrderSubmitted, new_event


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
    fingerprint = request_hash(request)
    async with pool.acquire() as conn, conn.transaction():
        place = await conn.fetchrow(
            "SELECT township_code FROM communities WHERE code = $1",
            request.location.community_code,
        )
        if place is None:
            raise InvalidField(
                ("body", "location", "community_code"), "unknown community", "unknown_community"
            )
        if place["township_code"] != request.location.township_code:
            raise InvalidField(
                ("body", "location", "township_code"),
                "the community is not in this township",
                "township_mismatch",
            )
        now = datetime.now(UTC)
        deadlines = deadlines_for(settings, request.urgency, now)
        order_id = uuid.uuid4()
        inserted = await conn.fetchval(
            """INSERT INTO orders (id, integration_id, external_id, request_hash, status,
                   category, urgency, beneficiary_group, township_code, community_code,
                   reported_at, submitted_at, dispatch_by, accept_by, assign_by, complete_by,
                   callback_url, case_details)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                   $17, $18)
               ON CONFLICT (integration_id, external_id) DO NOTHING
               RETURNING id""",
            order_id,
            integration.id,
            request.external_id,
            fingerprint,
            OrderStatus.SUBMITTED,
            request.category,
            request.urgency,
            request.beneficiary.group,
            request.location.township_code,
            request.location.community_code,
            request.reported_at,
            now,
            deadlines.dispatch_by,
            deadlines.accept_by,
            deadlines.assign_by,
            deadlines.complete_by,
            str(request.callback_url) if request.callback_url else None,
            _case_details(request).model_dump(mode="json"),
        )
        if inserted is None:
            return await _existing(conn, integration, request.external_id, fingerprint)

        actor = Actor(kind="integration", id=integration.id)
        await outbox.add(
            conn,
            topics.CENTER_EVENTS,
            new_event(
                OrderSubmitted(
                    integration_id=integration.id,
                    external_id=request.external_id,
                    category=request.category,
                    urgency=request.urgency,
                    beneficiary_group=request.beneficiary.group,
                    location=Location(
                        township_code=request.location.township_code,
                        community_code=request.location.community_code,
                    ),
                    reported_at=request.reported_at,
                    deadlines=deadlines,
                ),
                order_id=order_id,
                actor=actor,
                correlation_id=str(order_id),
                occurred_at=now,
            ),
        )
        order = await lifecycle.lock(conn, order_id)
        assert order is not None
        await lifecycle.record_status(
            conn, order, OrderStatus.SUBMITTED, station_id=None, reason=None, actor=actor, at=now
        )
        await lifecycle.route_new(conn, settings, order, now)
        status = await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
        return IntakeResult(order_id=order_id, status=OrderStatus(status), created=True)


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
