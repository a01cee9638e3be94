"""Durable timers in PostgreSQL (``timers``): set transactionally, taken with SKIP LOCKED.

Why not a job-queue library: a deadline here must be set in the very transaction of the
change that needs it (on the caller's connection), fire against an injectable clock (tests
move time; a queue that compares with the database's ``now()`` cannot be tested without
waiting), and its handler's effects must commit together with its firing, so that a handler
that only writes to PostgreSQL runs exactly once. A row per deadline, named by
``(kind, key)``, does all three in a few statements; see docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from correction_monitor.domain.timers import DueTimer, Timer

SCHEDULE = """
INSERT INTO timers (kind, key, due_at, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[])
ON CONFLICT (kind, key) DO UPDATE SET
    due_at = EXCLUDED.due_at, payload = EXCLUDED.payload, fired_at = NULL, attempts = 0,
    last_error = NULL
"""
CANCEL = "DELETE FROM timers WHERE kind = $1 AND key = $2 AND fired_at IS NULL"
TAKE_DUE = """
SELECT id, kind, key, due_at, payload, attempts FROM timers
WHERE fired_at IS NULL AND due_at <= $1 AND kind = ANY($3::text[])
ORDER BY due_at, id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
MARK_FIRED = "UPDATE timers SET fired_at = $2 WHERE id = $1"
MARK_FAILED = """
UPDATE timers SET attempts = attempts + 1, last_error = $2, due_at = $3 WHERE id = $1
"""
GET = """
SELECT id, kind, key, due_at, payload, attempts, fired_at, last_error FROM timers
WHERE kind = $1 AND key = $2
"""
PENDING = "SELECT count(*) FROM timers WHERE fired_at IS NULL"
PURGE_FIRED = "DELETE FROM timers WHERE fired_at < $1"


async def schedule(conn: asyncpg.Connection, timers: Sequence[Timer]) -> None:
    """Set (or move) each timer; part of the caller's transaction."""
    if not timers:
        return
    await conn.execute(
        SCHEDULE,
        [t.kind for t in timers],
        [t.key for t in timers],
        [t.due_at for t in timers],
        [t.payload for t in timers],
    )


async def cancel(conn: asyncpg.Connection, kind: str, key: str) -> bool:
    """Drop a timer that has not fired; True when there was one."""
    return str(await conn.execute(CANCEL, kind, key)) != "DELETE 0"


async def take_due(
    conn: asyncpg.Connection, now: datetime, limit: int, kinds: Sequence[str]
) -> list[DueTimer]:
    """Lock up to ``limit`` due timers of ``kinds`` for this transaction (timers others hold
    are skipped)."""
    rows = await conn.fetch(TAKE_DUE, now, limit, list(kinds))
    return [DueTimer(**dict(r)) for r in rows]


async def mark_fired(conn: asyncpg.Connection, timer_id: int, at: datetime) -> None:
    await conn.execute(MARK_FIRED, timer_id, at)


async def mark_failed(
    conn: asyncpg.Connection, timer_id: int, error: str, retry_at: datetime
) -> None:
    await conn.execute(MARK_FAILED, timer_id, error[:2000], retry_at)


async def get(conn: asyncpg.Connection, kind: str, key: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(GET, kind, key)
    return row


async def pending(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(PENDING)
    return value


async def purge_fired(conn: asyncpg.Connection, before: datetime) -> int:
    """Forget timers that fired before ``before``; returns how many."""
    return int(str(await conn.execute(PURGE_FIRED, before)).split()[-1])


class PostgresTimers:
    """The timers of one unit of work's transaction (``uow.timers``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def take_due(self, now: datetime, limit: int, kinds: Sequence[str]) -> list[DueTimer]:
        return await take_due(self._conn, now, limit, kinds)

    async def mark_fired(self, timer_id: int, at: datetime) -> None:
        await mark_fired(self._conn, timer_id, at)

    async def mark_failed(self, timer_id: int, error: str, retry_at: datetime) -> None:
        await mark_failed(self._conn, timer_id, error, retry_at)

    async def cancel(self, kind: str, key: str) -> bool:
        return await cancel(self._conn, kind, key)
