"""The station worker's pieces that need no stack: queue cursors and the stream's fan-out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.station_worker.jobs import RESYNC, SUBSCRIBER_BUFFER, QueueHub
from shared.errors import InvalidField
from shared.paging import decode_cursor, encode_cursor


@pytest.mark.parametrize("due_at", [datetime(2026, 11, 23, 9, 30, tzinfo=UTC), None])
def test_a_cursor_round_trips(due_at: datetime | None) -> None:
    order_id = uuid.uuid4()
    assert decode_cursor(encode_cursor(due_at, order_id)) == (due_at, order_id)


@pytest.mark.parametrize("cursor", ["", "garbage", "W10", "WyJ4IiwgInkiXQ"])
def test_a_cursor_not_made_here_is_a_422_naming_the_parameter(cursor: str) -> None:
    with pytest.raises(InvalidField) as raised:
        decode_cursor(cursor)
    assert raised.value.loc == ("query", "cursor")


async def test_each_subscriber_gets_its_own_stations_changes_only() -> None:
    hub = QueueHub()
    with hub.subscribe("st-a") as a, hub.subscribe("st-b") as b:
        hub.publish("st-a", {"order_id": "1"})
        hub.publish("st-c", {"order_id": "2"})
        assert (a.qsize(), b.qsize()) == (1, 0)
        assert a.get_nowait() == {"order_id": "1"}
    hub.publish("st-a", {"order_id": "3"})  # nobody listens any more: dropped
    assert a.empty()


async def test_a_subscriber_that_falls_behind_is_told_to_reload() -> None:
    hub = QueueHub()
    with hub.subscribe("st-a") as slow:
        for i in range(SUBSCRIBER_BUFFER + 1):
            hub.publish("st-a", {"order_id": str(i)})
        assert slow.get_nowait() == RESYNC
        assert slow.empty()
        hub.resync_all()
        assert slow.get_nowait() == RESYNC
