"""Which stage an order waits on, and its deadline (shared/domain.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import (
    OrderStatus,
    Stage,
    current_deadline,
    current_deadline_sql,
    current_stage,
)

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
DEADLINES = {stage: T0 + timedelta(hours=i + 1) for i, stage in enumerate(Stage)}


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        (OrderStatus.SUBMITTED, Stage.DISPATCH),
        (OrderStatus.UNROUTABLE, Stage.DISPATCH),
        (OrderStatus.REJECTED, Stage.DISPATCH),
        (OrderStatus.ESCALATED, Stage.DISPATCH),
        (OrderStatus.DISPATCHED, Stage.ACCEPT),
        (OrderStatus.ACCEPTED, Stage.ASSIGN),
        (OrderStatus.ASSIGNED, Stage.COMPLETE),
        (OrderStatus.IN_SERVICE, Stage.COMPLETE),
        (OrderStatus.COMPLETED, None),
        (OrderStatus.CLOSED, None),
        (OrderStatus.CANCELLED, None),
    ],
)
def test_each_status_waits_on_its_stage(status: OrderStatus, stage: Stage | None) -> None:
    assert current_stage(status) == stage
    assert current_deadline(status, DEADLINES) == (None if stage is None else DEADLINES[stage])


def test_an_unknown_deadline_is_none() -> None:
    assert current_deadline("dispatched", {Stage.DISPATCH: T0}) is None


def test_the_sql_says_what_the_function_says() -> None:
    sql = current_deadline_sql({Stage.ACCEPT: "accept_by"}, status="o.status", otherwise="X")
    expected = "CASE o.status WHEN 'dispatched' THEN accept_by ELSE X END"
    assert sql.split() == expected.split()
