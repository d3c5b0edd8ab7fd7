"""Which dispatch an ``order.accepted`` belongs to, and whether it still counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.dispatch_center.lifecycle import AcceptOutcome, accept_outcome
from shared.domain import OrderStatus

DEADLINE = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)


def order(status: OrderStatus, station: str, **columns: Any) -> dict[str, Any]:
    return {
        "status": status,
        "station_id": station,
        "escalated_station_id": None,
        "escalated_accept_due_at": None,
        **columns,
    }


ESCALATED_TO_B = {"escalated_station_id": "st-a", "escalated_accept_due_at": DEADLINE}
ON_TIME, LATE = DEADLINE - timedelta(minutes=1), DEADLINE + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("row", "station", "at", "outcome"),
    [
        # The station holding the dispatch, dispatched or escalated with no other station left.
        (order(OrderStatus.DISPATCHED, "st-a"), "st-a", ON_TIME, AcceptOutcome.APPLY),
        (order(OrderStatus.ESCALATED, "st-a"), "st-a", LATE, AcceptOutcome.APPLY),
        (order(OrderStatus.ACCEPTED, "st-a"), "st-a", ON_TIME, AcceptOutcome.DROP),
        (order(OrderStatus.CANCELLED, "st-a"), "st-a", ON_TIME, AcceptOutcome.DROP),
        # Escalated from A to B: A's accept before A's deadline wins, a late one is dropped.
        (
            order(OrderStatus.DISPATCHED, "st-b", **ESCALATED_TO_B),
            "st-a",
            ON_TIME,
            AcceptOutcome.TAKE_BACK,
        ),
        (
            order(OrderStatus.DISPATCHED, "st-b", **ESCALATED_TO_B),
            "st-a",
            DEADLINE,
            AcceptOutcome.TAKE_BACK,
        ),
        (order(OrderStatus.DISPATCHED, "st-b", **ESCALATED_TO_B), "st-a", LATE, AcceptOutcome.DROP),
        # ... B rejected it meanwhile and it waits for an operator: A still wins.
        (
            order(OrderStatus.REJECTED, "st-b", **ESCALATED_TO_B),
            "st-a",
            ON_TIME,
            AcceptOutcome.TAKE_BACK,
        ),
        # ... but not once B has accepted, nor after a cancel.
        (
            order(OrderStatus.ACCEPTED, "st-b", **ESCALATED_TO_B),
            "st-a",
            ON_TIME,
            AcceptOutcome.DROP,
        ),
        (
            order(OrderStatus.CANCELLED, "st-b", **ESCALATED_TO_B),
            "st-a",
            ON_TIME,
            AcceptOutcome.DROP,
        ),
        # A station the order was never escalated from.
        (
            order(OrderStatus.DISPATCHED, "st-b", **ESCALATED_TO_B),
            "st-c",
            ON_TIME,
            AcceptOutcome.DROP,
        ),
        (order(OrderStatus.DISPATCHED, "st-b"), "st-a", ON_TIME, AcceptOutcome.DROP),
    ],
)
def test_an_accept_applies_wins_back_the_order_or_is_dropped(
    row: dict[str, Any], station: str, at: datetime, outcome: AcceptOutcome
) -> None:
    assert accept_outcome(row, station, at) is outcome
