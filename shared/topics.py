"""Every topic name, defined once. Each service publishes to its own topic; the order id is
the key, so one order's events stay in one partition and in order."""

from __future__ import annotations

CENTER_EVENTS = "swd.center.order-events"
STATION_EVENTS = "swd.station.order-events"
# The audit's own: its readers' credentials (the deployment's chain of the trail).
AUDIT_EVENTS = "swd.audit.events"

ALL = (CENTER_EVENTS, STATION_EVENTS, AUDIT_EVENTS)

# What each service's consumer group reads. The audit reads both topics in one group: the topics
# have the same partition count and key, so one order's center and station events land in the
# same partition number and so with the same consumer, which applies them one batch at a time.
READ_BY = {
    "dispatch_center": (STATION_EVENTS,),
    "station_worker": (CENTER_EVENTS,),
    "audit": (CENTER_EVENTS, STATION_EVENTS, AUDIT_EVENTS),
}


def consumer_group(service: str) -> str:
    return f"swd.{service}"


def dead_letter(topic: str) -> str:
    return f"{topic}.dlq"


# The consumer groups that read each topic.
READERS = {
    topic: [consumer_group(service) for service, read in READ_BY.items() if topic in read]
    for topic in ALL
}

# The header `swdispatch dlq replay` puts on a re-driven message:
# "<dlq topic>:<partition>:<offset>".
REPLAYED_FROM_HEADER = "swd-replayed-from"
