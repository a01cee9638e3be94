"""Reading stored fixes (the write path lives in the ingest pipeline's persist stage)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from correction_monitor.domain.fixes import TrackPoint

TRACK = """
SELECT ts, lon_e7, lat_e7, accuracy_m, flags, device_id FROM fixes
WHERE subject_id = $1 AND ts >= $2 AND ts < $3
ORDER BY ts, device_id, client_key
LIMIT $4
"""


async def track(
    conn: asyncpg.Connection, subject_id: int, start: datetime, end: datetime, limit: int
) -> list[TrackPoint]:
    """A subject's first ``limit`` fixes in ``[start, end)``, time-ordered."""
    return [
        TrackPoint(r["ts"], r["lon_e7"], r["lat_e7"], r["accuracy_m"], r["flags"], r["device_id"])
        for r in await conn.fetch(TRACK, subject_id, start, end, limit)
    ]
