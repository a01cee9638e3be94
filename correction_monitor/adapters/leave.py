"""Leave (外出) in PostgreSQL: applications, decisions and the subject's reports."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from correction_monitor.domain.leave import ApprovedLeave

APPROVED_OVERLAPPING = """
SELECT id, starts_at, ends_at, destination_fence_id FROM leaves
WHERE subject_id = $1 AND status = 'approved' AND starts_at <= $3 AND ends_at >= $2
ORDER BY starts_at, id
"""


async def approved_leaves(
    conn: asyncpg.Connection, subject_id: int, start: datetime, end: datetime
) -> list[ApprovedLeave]:
    """The subject's approved leaves whose span meets ``[start, end]``, by start."""
    rows = await conn.fetch(APPROVED_OVERLAPPING, subject_id, start, end)
    return [
        ApprovedLeave(r["id"], r["starts_at"], r["ends_at"], r["destination_fence_id"])
        for r in rows
    ]
