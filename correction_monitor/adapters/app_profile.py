"""What the subject's app is shown of its own rules beyond the subject's row, in PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg

OWN_SCHEDULE = "SELECT windows FROM checkin_schedules WHERE subject_id = $1"


async def own_schedule(conn: asyncpg.Connection, subject_id: int) -> list[dict[str, Any]] | None:
    """The subject's own check-in windows as stored (a list of ``{"days","start","end"}``,
    or an object holding one under ``"windows"``); None when it has none."""
    stored: Any = await conn.fetchval(OWN_SCHEDULE, subject_id)
    if stored is None:
        return None
    windows = stored.get("windows") if isinstance(stored, dict) else stored
    return list(windows) if isinstance(windows, list) else None


class PostgresProfiles:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def own_schedule(self, subject_id: int) -> list[dict[str, Any]] | None:
        return await own_schedule(self._conn, subject_id)
