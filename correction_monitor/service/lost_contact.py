"""Lost contact (失联): silence longer than the level's threshold, by the server clock.

A sweep opens a ``lost_contact`` alert for each subject whose last accepted fix (or, never
heard from, whose device enrolment) is older than the threshold; the committer closes it when
accepted fixes resume and adds the lost time to the subject's 脱离监管 clock (RULES.md §1).
A device that reports only rejected fixes is not in contact: only accepted fixes count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from correction_monitor.adapters import alerts, outbox
from correction_monitor.domain.alerts import (
    SEVERITY,
    AlertOp,
    AlertOpen,
    AlertType,
    lost_contact_key,
)
from correction_monitor.policy import Policy

CANDIDATES = """
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


async def sweep(pool: asyncpg.Pool, policy: Policy, now: datetime | None = None) -> int:
    """Open lost-contact alerts that are due; returns how many were opened.

    The job registry runs it in one process at a time (service/jobs.py); two sweeps at once
    would still open one alert per silence (``MARK_LOST`` and the alert's unique episode).
    """
    now = now or datetime.now(UTC)
    shortest = min(level.lost_contact_after_s for level in policy.levels.values())
    opened = 0
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(CANDIDATES, now - timedelta(seconds=shortest))
        ops: list[AlertOp] = []
        for row in rows:
            level = policy.level(row["supervision_level"])
            silent_s = (now - row["last_contact"]).total_seconds()
            if silent_s <= level.lost_contact_after_s:
                continue
            await conn.execute(ENSURE_STATE_ROW, row["id"])
            if await conn.fetchval(MARK_LOST, row["id"], row["last_contact"]) is None:
                continue
            clock_s = row["lost_total_s"] + silent_s
            ops.append(
                AlertOpen(
                    subject_id=row["id"],
                    org_unit_id=row["org_unit_id"],
                    type=AlertType.LOST_CONTACT,
                    severity=SEVERITY[AlertType.LOST_CONTACT],
                    fence_id=None,
                    episode_key=lost_contact_key(row["last_contact"]),
                    started_at=row["last_contact"],
                    evidence={
                        "last_contact_at": row["last_contact"].isoformat(),
                        "silent_s": round(silent_s),
                        "policy": {
                            "supervision_level": row["supervision_level"],
                            "lost_contact_after_s": level.lost_contact_after_s,
                        },
                        "lost_contact_clock_s": round(clock_s),
                        "beyond_10_days": clock_s > policy.lost_contact_warning_after_s,
                        "beyond_1_month": clock_s > policy.lost_contact_revocation_after_s,
                        "action": policy.lost_contact_action,
                        "article": policy.lost_contact_article,
                    },
                )
            )
        changes = await alerts.apply(conn, ops)
        await outbox.append(conn, [alerts.event_of(c) for c in changes])
        opened = len(changes)
    return opened
