"""Every topic name, defined once. Each service publishes to its own topic; the order id is
the key, so one order's events stay in one partition and in order."""

from __future__ import annotations

CENTER_EVENTS = "swd.center.order-events"
STATION_EVENTS = "swd.station.order-events"

ALL = (CENTER_EVENTS, STATION_EVENTS)


def dead_letter(topic: str) -> str:
    return f"{topic}.dlq"
