"""Per-subject evaluation state (``subject_eval_state``) and devices' last-seen times, as the
ingest commit reads and writes them.

A subject's row holds its evaluation state (a JSON value, see ``ingest/evaluate.py``), the
newest stored fix's time and its contact bookkeeping. A commit group locks its subjects'
rows first, in subject order, and saves them last: two processes committing fixes of the
same subject take turns, without deadlocks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

ENSURE_STATE_ROWS = """
INSERT INTO subject_eval_state (subject_id) SELECT unnest($1::int[]) ON CONFLICT DO NOTHING
"""
LOCK_STATES = """
SELECT subject_id, state, max_fix_ts, lost_contact_since, lost_contact_total_s
FROM subject_eval_state WHERE subject_id = ANY($1::int[]) ORDER BY subject_id FOR UPDATE
"""
SAVE_STATES = """
UPDATE subject_eval_state s SET
    state = u.state,
    max_fix_ts = GREATEST(s.max_fix_ts, u.max_fix_ts),
    last_contact_at = COALESCE(u.contact_at, s.last_contact_at),
    lost_contact_since = CASE WHEN u.contact_at IS NULL THEN s.lost_contact_since END,
    lost_contact_total_s = s.lost_contact_total_s + u.lost_contact_add_s,
    updated_at = now()
FROM unnest($1::int[], $2::jsonb[], $3::timestamptz[], $4::timestamptz[], $5::float8[])
    AS u(subject_id, state, max_fix_ts, contact_at, lost_contact_add_s)
WHERE s.subject_id = u.subject_id
"""
DEVICE_SEEN = "UPDATE devices SET last_seen_at = $2 WHERE id = ANY($1::int[])"
DEVICE_SEEN_WITH_OTHERS = """
WITH seen AS (
    UPDATE devices SET last_seen_at = $2 WHERE id = ANY($1::int[])
    RETURNING id, subject_id, platform
)
SELECT s.subject_id, s.id AS device_id, s.platform,
       o.id AS other_id, o.platform AS other_platform, o.last_seen_at AS other_seen_at
FROM seen s
JOIN devices o ON o.subject_id = s.subject_id AND o.id <> s.id
WHERE o.revoked_at IS NULL AND o.last_seen_at >= $3
ORDER BY s.subject_id, s.id, o.id
"""
DEVICE_SEEN_EVERY_S = 60.0
_SEEN_REMEMBERED = 500_000


async def lock(conn: asyncpg.Connection, subject_ids: list[int]) -> dict[int, asyncpg.Record]:
    """Lock the subjects' rows (``FOR UPDATE``, in subject order) and return them by subject:
    ``state``, ``max_fix_ts``, ``lost_contact_since``, ``lost_contact_total_s``. Creates the
    rows of subjects that have none yet. ``subject_ids`` are sorted."""
    rows = {r["subject_id"]: r for r in await conn.fetch(LOCK_STATES, subject_ids)}
    if len(rows) < len(subject_ids):  # subjects created before their state row
        await conn.execute(ENSURE_STATE_ROWS, subject_ids)
        rows = {r["subject_id"]: r for r in await conn.fetch(LOCK_STATES, subject_ids)}
    return rows


async def save(
    conn: asyncpg.Connection,
    subject_ids: list[int],
    states: list[dict[str, Any]],
    max_fix_ts: list[datetime | None],
    contact_at: list[datetime | None],
    lost_contact_add_s: list[float],
) -> None:
    """Save each subject's new state (parallel lists, one entry per subject): its evaluation
    state, its newest fix stored now (None: none), the moment of contact (None: no accepted
    fix, so no contact), and the silent time (seconds) that contact ended."""
    await conn.execute(SAVE_STATES, subject_ids, states, max_fix_ts, contact_at, lost_contact_add_s)


class LastSeen:
    """Devices' ``last_seen_at`` (a console field), written at most once a minute per device:
    writing it on every commit would write one row per device per commit for nothing."""

    def __init__(self) -> None:
        self._written: dict[int, datetime] = {}

    async def touch(
        self,
        conn: asyncpg.Connection,
        device_ids: set[int],
        now: datetime,
        others_since: datetime | None = None,
    ) -> list[asyncpg.Record]:
        """Record that the devices reported at ``now``, where their row is over a minute old.

        With ``others_since``, the same statement also returns, for each device written, the
        other unrevoked devices of its subject last heard from at or after that moment
        (``subject_id``, ``device_id``, ``platform``, ``other_id``, ``other_platform``,
        ``other_seen_at``; the ``new_device`` integrity rule): no query of its own, and at
        most once a minute per device."""
        due = []
        for device_id in sorted(device_ids):
            seen = self._written.get(device_id)
            if seen is None or (now - seen).total_seconds() >= DEVICE_SEEN_EVERY_S:
                self._written[device_id] = now
                due.append(device_id)
        if len(self._written) > _SEEN_REMEMBERED:
            self._written.clear()
        if not due:
            return []
        if others_since is None:
            await conn.execute(DEVICE_SEEN, due, now)
            return []
        rows: list[asyncpg.Record] = await conn.fetch(
            DEVICE_SEEN_WITH_OTHERS, due, now, others_since
        )
        return rows
