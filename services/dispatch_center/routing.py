"""Which stations may take an order, best first.

The township's category override (e.g. the station with a rehabilitation team takes every
rehabilitation order of its township), then the station covering the community, then the
community's fallbacks in their order. Only active stations count.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from shared.db import Connection


@dataclass(frozen=True)
class Candidates:
    township_code: str
    """The community's township, for intake to check the request's location against."""
    stations: list[str]


async def candidates(
    conn: Connection,
    community_code: str,
    category: str,
    exclude: Collection[str] = (),
) -> Candidates | None:
    """The community's stations for this category; None when the community is unknown."""
    rows = await conn.fetch(
        """SELECT c.township_code, ranked.station_id
           FROM communities c
           LEFT JOIN LATERAL (
               SELECT r.station_id, r.rank, r.position FROM (
                   SELECT station_id, 0 AS rank, 0 AS position FROM coverage_overrides
                   WHERE township_code = c.township_code AND category = $2
                   UNION ALL
                   SELECT station_id, 1, 0 FROM coverage WHERE community_code = c.code
                   UNION ALL
                   SELECT station_id, 2, position FROM coverage_fallbacks
                   WHERE community_code = c.code
               ) r
               JOIN stations s ON s.id = r.station_id AND s.active
           ) ranked ON true
           WHERE c.code = $1
           ORDER BY ranked.rank, ranked.position""",
        community_code,
        category,
    )
    if not rows:
        return None
    ordered: list[str] = []
    for row in rows:
        station_id: str | None = row["station_id"]
        if station_id is not None and station_id not in ordered and station_id not in exclude:
            ordered.append(station_id)
    return Candidates(township_code=rows[0]["township_code"], stations=ordered)
