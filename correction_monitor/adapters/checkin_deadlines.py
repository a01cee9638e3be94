"""Check-in deadlines in PostgreSQL: closing missed windows and finding due reminders, in bulk.

The pending rows of ``checkins`` are the durable timers: the partial index
``checkins_closing`` (``closes_at`` of pending rows) is the queue of deadlines, and a row
leaves it in the same statement that settles it. Every statement here works on a batch of
rows claimed with ``FOR UPDATE SKIP LOCKED``, so any number of processes share the work
without waiting on each other, and a row an answer holds is left for the next sweep (it will
not be pending by then, or it will be taken then).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from correction_monitor.domain.alerts import AlertType
from correction_monitor.domain.checkin_deadlines import (
    MISSED_KEY_PREFIX,
    DueReminder,
    LevelTerms,
    MissedWindow,
)


def _iso(column: str) -> str:
    """SQL rendering ``column`` (timestamptz) as ``domain.timeutil.iso`` does: UTC with
    ``Z``, microseconds only when there are any."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"""to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS')"""
        f" || CASE WHEN date_trunc('second', {column}) = {column} THEN ''"
        f" ELSE to_char({utc}, '.US') END || 'Z'"
    )


# One statement: claim the due pending windows (oldest deadline first, skipping rows others
# hold), mark them missed, and open one alert per window (the episode key names the
# check-in, so the unique key makes a repeat a no-op). $3..$5 give each supervision level's
# severity and the policy the evidence quotes.
CLOSE_DUE = f"""
WITH due AS (
    SELECT id FROM checkins
    WHERE status = 'pending' AND closes_at <= $1
    ORDER BY closes_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), missed AS (
    UPDATE checkins c SET status = 'missed'
    FROM due WHERE c.id = due.id
    RETURNING c.id, c.subject_id, c.org_unit_id, c.kind, c.opens_at, c.closes_at,
              c.reminded_at
), terms AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::jsonb[]) AS t(level, severity, policy)
), opened AS (
    INSERT INTO alerts (subject_id, org_unit_id, type, severity, fence_id, episode_key,
                        started_at, detected_at, evidence)
    SELECT m.subject_id, m.org_unit_id, $6, t.severity, NULL, $7 || m.id, m.closes_at, $1,
           jsonb_build_object(
               'checkin_id', m.id,
               'kind', m.kind,
               'opens_at', {_iso("m.opens_at")},
               'closes_at', {_iso("m.closes_at")},
               'reminded_at', {_iso("m.reminded_at")},
               'supervision_level', s.supervision_level,
               'policy', t.policy)
    FROM missed m
    JOIN subjects s ON s.id = m.subject_id
    JOIN terms t ON t.level = s.supervision_level
    ORDER BY m.id
    ON CONFLICT (subject_id, type, episode_key) DO NOTHING
    RETURNING id, subject_id, episode_key
)
SELECT m.id AS checkin_id, m.subject_id, m.org_unit_id, o.id AS alert_id
FROM missed m
LEFT JOIN opened o ON o.subject_id = m.subject_id AND o.episode_key = $7 || m.id
ORDER BY m.id
"""

# The pending windows whose next reminder is due at $1: for each, the shortest of its
# level's leads ($2, $3) whose moment (closes_at - lead) has come, unless a reminder was
# sent at or after that moment. Only windows still open or yet to open (closes_at > $1) and
# at most the longest lead ($4) away. A challenge is a surprise: it is never announced
# before it opens, so its reminder is due only when that moment falls inside the window.
# {reminded} picks the windows never reminded (through the partial index
# checkins_reminding, which a window leaves when reminded, so the sweep every few seconds
# never rescans them) or, for levels with more than one lead, those reminded already.
_DUE_REMINDERS = """
WITH terms AS (
    SELECT * FROM unnest($2::text[], $3::float8[]) AS t(level, lead_s)
)
SELECT c.id, c.subject_id, c.kind, c.opens_at, c.closes_at, l.lead_s, u.timezone
FROM checkins c
JOIN subjects s ON s.id = c.subject_id
JOIN org_units u ON u.id = s.org_unit_id
CROSS JOIN LATERAL (
    SELECT min(t.lead_s) AS lead_s FROM terms t
    WHERE t.level = s.supervision_level
      AND c.closes_at - make_interval(secs => t.lead_s) <= $1
) l
WHERE c.status = 'pending'
  AND {reminded}
  AND c.closes_at > $1
  AND c.closes_at <= $1 + make_interval(secs => $4)
  AND l.lead_s IS NOT NULL
  AND (c.reminded_at IS NULL OR c.reminded_at < c.closes_at - make_interval(secs => l.lead_s))
  AND (c.kind = 'scheduled' OR c.opens_at < c.closes_at - make_interval(secs => l.lead_s))
ORDER BY c.closes_at
LIMIT $5
FOR UPDATE OF c SKIP LOCKED
"""
DUE_FIRST_REMINDERS = _DUE_REMINDERS.format(reminded="c.reminded_at IS NULL")
DUE_LATER_REMINDERS = _DUE_REMINDERS.format(reminded="c.reminded_at IS NOT NULL")
MARK_REMINDED = """
UPDATE checkins SET reminded_at = $2 WHERE id = ANY($1::bigint[]) AND status = 'pending'
"""


async def close_due(
    conn: asyncpg.Connection, now: datetime, limit: int, terms: Sequence[LevelTerms]
) -> list[MissedWindow]:
    """Close up to ``limit`` pending windows whose ``closes_at`` is at or before ``now`` as
    missed, each opening its ``missed_checkin`` alert (detected at ``now``); the windows
    closed, oldest deadline first. The caller appends the alerts' events last in its
    transaction."""
    rows = await conn.fetch(
        CLOSE_DUE,
        now,
        limit,
        [t.level for t in terms],
        [t.severity for t in terms],
        [t.policy for t in terms],
        AlertType.MISSED_CHECKIN.value,
        MISSED_KEY_PREFIX,
    )
    return [
        MissedWindow(r["checkin_id"], r["subject_id"], r["org_unit_id"], r["alert_id"])
        for r in rows
    ]


def _reminder(r: asyncpg.Record) -> DueReminder:
    return DueReminder(
        r["id"],
        r["subject_id"],
        r["kind"],
        r["opens_at"],
        r["closes_at"],
        float(r["lead_s"]),
        r["timezone"],
    )


async def due_reminders(
    conn: asyncpg.Connection, now: datetime, leads: Sequence[tuple[str, float]], limit: int
) -> list[DueReminder]:
    """Lock and return up to ``limit`` pending windows whose next reminder is due at ``now``
    (``leads``: each level's leads, seconds before ``closes_at``); first reminders first,
    then later ones when some level has more than one lead."""
    if not leads:
        return []
    levels, seconds = [level for level, _ in leads], [lead for _, lead in leads]
    args = (levels, seconds, max(seconds))
    rows = await conn.fetch(DUE_FIRST_REMINDERS, now, *args, limit)
    if len(rows) < limit and len(levels) > len(set(levels)):
        rows += await conn.fetch(DUE_LATER_REMINDERS, now, *args, limit - len(rows))
    return [_reminder(r) for r in rows]


async def mark_reminded(conn: asyncpg.Connection, checkin_ids: Sequence[int], at: datetime) -> None:
    await conn.execute(MARK_REMINDED, list(checkin_ids), at)


class PostgresCheckinDeadlines:
    """The deadline sweep's reads and writes in one unit of work's transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def close_due(
        self, now: datetime, limit: int, terms: Sequence[LevelTerms]
    ) -> list[MissedWindow]:
        return await close_due(self._conn, now, limit, terms)

    async def due_reminders(
        self, now: datetime, leads: Sequence[tuple[str, float]], limit: int
    ) -> list[DueReminder]:
        return await due_reminders(self._conn, now, leads, limit)

    async def mark_reminded(self, checkin_ids: Sequence[int], at: datetime) -> None:
        await mark_reminded(self._conn, checkin_ids, at)
