"""An operator's station scope (one deployment, many counties), the pure rules: which
stations a scoped operator covers, how a scope is stored, where they may send an order."""

from __future__ import annotations

import pytest

from services.dispatch_center import domain
from services.dispatch_center.domain import Operator
from shared.errors import InvalidField

EVERYWHERE = Operator(id="o", name="O", role="operator")
COUNTY_A = Operator(id="a", name="A", role="operator", stations=("st-a1", "st-a2"))


def test_an_unscoped_operator_covers_every_station() -> None:
    assert EVERYWHERE.stations is None
    assert EVERYWHERE.covers("st-a1")
    assert EVERYWHERE.covers("st-b1")
    assert EVERYWHERE.covers("never-heard-of")


def test_a_scoped_operator_covers_only_their_stations() -> None:
    assert COUNTY_A.covers("st-a1")
    assert COUNTY_A.covers("st-a2")
    assert not COUNTY_A.covers("st-b1")
    assert not COUNTY_A.covers("st-a")  # no prefix matching
    assert not COUNTY_A.covers("")


def test_a_scope_is_stored_once_per_station_and_sorted() -> None:
    assert domain.station_scope(None) is None
    assert domain.station_scope(["st-b", "st-a", "st-b"]) == ("st-a", "st-b")
    assert domain.station_scope(iter(["st-x"])) == ("st-x",)


def test_an_empty_scope_is_refused_rather_than_seeing_nothing() -> None:
    with pytest.raises(InvalidField) as refused:
        domain.station_scope([])
    assert refused.value.loc == ("stations",)


@pytest.mark.parametrize(
    ("operator", "station", "active", "usable"),
    [
        (EVERYWHERE, "st-b1", True, True),
        (EVERYWHERE, "st-b1", False, False),
        (COUNTY_A, "st-a1", True, True),
        (COUNTY_A, "st-a1", False, False),
        (COUNTY_A, "st-b1", True, False),
        (COUNTY_A, "st-b1", False, False),
    ],
)
def test_an_order_goes_only_to_an_active_station_in_scope(
    operator: Operator, station: str, active: bool, usable: bool
) -> None:
    assert domain.station_usable(operator, station, active) is usable


def test_a_scope_is_part_of_the_frozen_principal() -> None:
    with pytest.raises(AttributeError):
        COUNTY_A.stations = None  # type: ignore[misc]
    assert COUNTY_A.actor.text == "operator:a"


def test_a_station_outside_the_scope_is_as_unknown_as_a_missing_one() -> None:
    named = ["st-a1", "st-b1", "st-gone", "st-a2"]
    assert domain.unknown_to(EVERYWHERE, named, ["st-gone"]) == ["st-gone"]
    assert domain.unknown_to(COUNTY_A, named, ["st-gone"]) == ["st-b1", "st-gone"]
    assert domain.unknown_to(COUNTY_A, ["st-a1", "st-a2"], []) == []
    assert domain.unknown_to(COUNTY_A, [], []) == []
