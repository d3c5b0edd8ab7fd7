"""Every lifecycle event of every order, from the center and the stations, into the trail."""

from __future__ import annotations

from typing import Any

from services.audit import trail
from services.audit.settings import AuditSettings
from shared.consumer import Applier
from shared.db import Connection
from shared.events import KNOWN_TYPES, Envelope


class TrailWriter:
    def __init__(self, hmac_key: bytes) -> None:
        self._key = hmac_key

    def handles(self, event_type: str) -> bool:
        return event_type in KNOWN_TYPES

    async def apply(self, conn: Connection, events: list[Envelope[Any]]) -> None:
        await trail.append(conn, self._key, events)


def applier(settings: AuditSettings) -> Applier:
    """Every event of every order goes into the trail."""
    return TrailWriter(settings.hmac_key)
