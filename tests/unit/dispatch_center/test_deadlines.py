from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dispatch_center.domain import deadlines_for
from services.dispatch_center.settings import CenterSettings
from shared.domain import Urgency

SUBMITTED = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("urgency", "dispatch", "accept", "assign", "complete"),
    [
        (
            Urgency.EMERGENCY,
            timedelta(minutes=5),
            timedelta(minutes=30),
            timedelta(hours=1),
            timedelta(hours=24),
        ),
        (
            Urgency.URGENT,
            timedelta(minutes=30),
            timedelta(hours=4),
            timedelta(hours=8),
            timedelta(days=3),
        ),
        (
            Urgency.ROUTINE,
            timedelta(hours=4),
            timedelta(hours=24),
            timedelta(hours=48),
            timedelta(days=15),
        ),
    ],
)
def test_default_deadlines_are_those_of_the_domain(
    urgency: Urgency,
    dispatch: timedelta,
    accept: timedelta,
    assign: timedelta,
    complete: timedelta,
) -> None:
    d = deadlines_for(CenterSettings(), urgency, SUBMITTED)
    assert (d.dispatch_by, d.accept_by, d.assign_by, d.complete_by) == (
        SUBMITTED + dispatch,
        SUBMITTED + accept,
        SUBMITTED + assign,
        SUBMITTED + complete,
    )


def test_deadlines_are_configurable_per_urgency_and_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWD_DEADLINES", '{"emergency": {"accept": 60}}')
    d = deadlines_for(CenterSettings(), Urgency.EMERGENCY, SUBMITTED)
    assert d.accept_by == SUBMITTED + timedelta(seconds=60)
    assert d.dispatch_by == SUBMITTED + timedelta(minutes=5)
