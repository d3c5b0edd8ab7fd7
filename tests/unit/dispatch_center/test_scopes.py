"""An operator's station scope (one deployment, many counties), the pure rules: which
stations a scoped operator covers, how a scope is stored, where they may send an order."""

from __future__ import annotations

import pytest

from services.dispatch_center import domain
from services.dispatch_center.domain import Operator
from shared.errors import Forbidden, InvalidField

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


ALL = domain.Scope(None, None)
A = domain.Scope(frozenset({"st-a1", "st-a2"}), frozenset({"TS-A"}))


def _refused(scope: domain.Scope, unknown: list[str], *named: domain.Named) -> InvalidField | None:
    try:
        domain.check_named(scope, unknown, named)
    except InvalidField as e:
        return e
    return None


def test_a_station_outside_the_scope_is_as_unknown_as_a_missing_one() -> None:
    fallbacks = domain.Named(("body", "fallbacks"), stations=("st-a1", "st-b1", "st-a2"))
    assert _refused(ALL, [], fallbacks) is None
    outside = _refused(A, [], fallbacks)
    assert outside is not None
    assert (outside.loc, outside.type) == (("body", "fallbacks"), "unknown_station")
    gone = _refused(ALL, ["st-gone"], domain.Named.station(("body", "station_id"), "st-gone"))
    assert gone is not None
    assert (gone.loc, str(gone)) == (("body", "station_id"), "no station with this id")
    assert _refused(A, [], domain.Named.station(("body", "station_id"), None)) is None


def test_a_township_outside_the_scope_is_refused_whatever_the_object_is() -> None:
    # An operator's own station moved into another county's township would widen the scope.
    elsewhere = domain.Named(("body", "township_code"), township="TS-B")
    refused = _refused(A, [], elsewhere)
    assert refused is not None
    assert (refused.loc, refused.type) == (("body", "township_code"), "out_of_scope")
    assert _refused(A, [], domain.Named(("body", "township_code"), township="TS-A")) is None
    assert _refused(ALL, [], elsewhere) is None


def test_the_first_field_outside_is_named() -> None:
    refused = _refused(
        A,
        [],
        domain.Named(("body", "township_code"), township="TS-A"),
        domain.Named.station(("body", "station_id"), "st-b1"),
        domain.Named(("body", "fallbacks"), stations=("st-b2",)),
    )
    assert refused is not None
    assert refused.loc == ("body", "station_id")


def test_only_an_unscoped_operator_manages_the_deployments_integrations() -> None:
    assert domain.may_manage_deployment(EVERYWHERE) is EVERYWHERE
    with pytest.raises(Forbidden):
        domain.may_manage_deployment(COUNTY_A)
