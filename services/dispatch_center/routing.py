"""Which stations may take an order, best first.

The township's category override (e.g. the station with a rehabilitation team takes every
rehabilitation order of its township), then the station covering the community, then the
community's fallbacks in their order. Only active stations count.
"""

from __future__ import annotations

from collections.abc import Collection

from shared.db import Connection


async def candidates(
    conn: Connection,
    community_code: str,
    category: str,
    exclude: Collection[str] = (),
) -> list[str]:
    rows = await conn.fetch(
        """SELECT station_id FROM (
               SELECT o.station_id, 0 AS rank, 0 AS position
               FROM communities c
               JOIN coverage_overrides o
                 ON o.township_code = c.township_code AND o.category = $2
               WHERE c.code = $1
               UNION ALL
               SELECT station_id, 1, 0 FROM coverage WHERE community_code = $1
               UNION ALL
               SELECT station_id, 2, position FROM coverage_fallbacks WHERE community_code = $1
           ) ranked
           JOIN stations s ON s.id = ranked.station_id AND s.active
           ORDER BY rank, position""",
        community_code,
        category,
    )
    ordered: list[str] = []
    for row in rows:
        station_id: str = row["station_id"]
        if station_id not in ordered and station_id not in exclude:
            ordered.append(station_id)
    return ordered
