"""Who calls: staff authenticate with a bearer token bound to one station."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Response

from services.station_worker import store
from services.station_worker.actions import Attempt
from services.station_worker.api.schemas import StationOrder
from services.station_worker.domain import StaffMember, require_manager, require_station
from services.station_worker.settings import StationSettings
from shared.bearer import bearer_principal
from shared.db import Pool
from shared.errors import InvalidField
from shared.runtime import PoolDep, Runtime, current_runtime

StationRuntime = Annotated[Runtime[StationSettings], Depends(current_runtime)]
CurrentStaff = Annotated[
    StaffMember, Depends(bearer_principal(store.STAFF, store.STAFF_COLUMNS, store.staff_member))
]


async def own_station(station_id: str, staff: CurrentStaff) -> StaffMember:
    """The staff member, when ``station_id`` is their own station; 404 otherwise."""
    require_station(staff, station_id)
    return staff


StationStaff = Annotated[StaffMember, Depends(own_station)]


async def station_manager(staff: StationStaff) -> StaffMember:
    """A manager of the station in the path; 403 for its social workers."""
    require_manager(staff, "manage social workers")
    return staff


StationManager = Annotated[StaffMember, Depends(station_manager)]


def etag(version: int) -> str:
    return f'"{version}"'


async def expected_version(
    if_match: Annotated[
        str | None,
        Header(description='the order\'s version as its ETag (`"3"`): 409 if it changed since'),
    ] = None,
) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise InvalidField(("header", "if-match"), 'expected an ETag like "3"')
    return int(value)


@dataclass(frozen=True)
class OrderAction:
    """A staff member acting on the order in the path (at the version of its If-Match)."""

    pool: Pool
    attempt: Attempt
    response: Response

    def done(self, order: StationOrder) -> StationOrder:
        """The changed order, its ETag on the response."""
        self.response.headers["ETag"] = etag(order.version)
        return order


async def order_action(
    order_id: uuid.UUID,
    staff: CurrentStaff,
    pool: PoolDep,
    version: Annotated[int | None, Depends(expected_version)],
    response: Response,
) -> OrderAction:
    return OrderAction(pool, Attempt(staff, order_id, version), response)


Acting = Annotated[OrderAction, Depends(order_action)]
