"""Who has gone silent (失联): the lost-contact sweep's reads and marks, in PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from correction_monitor.domain.models import SilentSubject

SILENT = """
SELECT s.id, s.org_unit_id, s.supervision_level,
       COALESCE(e.last_contact_at, d.enrolled_at) AS last_contact,
       COALESCE(e.lost_contact_total_s, 0) AS lost_total_s
FROM subjects s
JOIN LATERAL (
    SELECT min(created_at) AS enrolled_at FROM devices
    WHERE subject_id = s.id AND revoked_at IS NULL
) d ON d.enrolled_at IS NOT NULL
LEFT JOIN subject_eval_state e ON e.subject_id = s.id
WHERE s.status = 'active' AND e.lost_contact_since IS NULL
  AND COALESCE(e.last_contact_at, d.enrolled_at) < $1
"""
ENSURE_STATE_ROW = """
INSERT INTO subject_eval_state (subject_id) VALUES ($1) ON CONFLICT DO NOTHING
"""
MARK_LOST = """
UPDATE subject_eval_state SET lost_contact_since = $2
WHERE subject_id = $1 AND lost_contact_since IS NULL
  AND (last_contact_at IS NULL OR last_contact_at <= $2)
RETURNING subject_id
"""


class PostgresContact:
    """Subjects' contact as the sweep sees it, in one unit of work's transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def silent_since(self, before: datetime) -> list[SilentSubject]:
        """Active subjects with an enrolled device, not already lost, whose last accepted
        fix (or, never heard from, whose enrolment) is older than ``before``."""
        rows = await self._conn.fetch(SILENT, before)
        return [
            SilentSubject(
                r["id"],
                r["org_unit_id"],
                r["supervision_level"],
                r["last_contact"],
                float(r["lost_total_s"]),
            )
            for r in rows
        ]

    async def mark_lost(self, subject_id: int, since: datetime) -> bool:
        """Record the silence that began at ``since``; False when it is recorded already or
        a fix came meanwhile (another sweep, or the committer, got there first)."""
        await self._conn.execute(ENSURE_STATE_ROW, subject_id)
        return await self._conn.fetchval(MARK_LOST, subject_id, since) is not None
