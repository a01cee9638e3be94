"""Check-ins in PostgreSQL: the windows and challenges (``checkins``), a subject's own
schedule (``checkin_schedules``), how far each subject is laid out (``checkin_layouts``)
and the draws of random challenges with their seeds (``checkin_draws``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from correction_monitor.domain.checkins import (
    AnswerTarget,
    Checkin,
    CheckinKind,
    CheckinStatus,
    Draw,
    NewCheckin,
    StoredSchedule,
)
from correction_monitor.domain.models import SupervisionLevel

_COLUMNS = """
id, subject_id, org_unit_id, kind, opens_at, closes_at, status, answered_at, reasons, answer,
photo_sha256, device_id, draw_id, issued_by, reviewed_by, reviewed_at, review_note
"""
# The advisory lock class of a subject's layout (the second key is the subject's id).
LAYOUT_LOCK_CLASS = 0x43484B  # "CHK"
LOCK_LAYOUT = "SELECT pg_advisory_xact_lock($1, $2)"
LAID_UNTIL = "SELECT laid_until FROM checkin_layouts WHERE subject_id = $1"
SET_LAID_UNTIL = """
INSERT INTO checkin_layouts (subject_id, laid_until, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (subject_id) DO UPDATE SET laid_until = EXCLUDED.laid_until,
    updated_at = EXCLUDED.updated_at
"""
# Active subjects whose term has not ended and whose layout is missing or short of $1.
BEHIND = """
SELECT s.id FROM subjects s LEFT JOIN checkin_layouts l ON l.subject_id = s.id
WHERE s.status = 'active' AND s.term_end >= $2::date
  AND (l.laid_until IS NULL OR l.laid_until < $1)
ORDER BY s.id LIMIT $3
"""
SCHEDULE = "SELECT windows, set_by, set_at FROM checkin_schedules WHERE subject_id = $1"
SET_SCHEDULE = """
INSERT INTO checkin_schedules (subject_id, windows, set_by, set_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (subject_id) DO UPDATE SET windows = EXCLUDED.windows, set_by = EXCLUDED.set_by,
    set_at = EXCLUDED.set_at
"""
CLEAR_SCHEDULE = "DELETE FROM checkin_schedules WHERE subject_id = $1 RETURNING subject_id"
# A window replaced before it opened is cancelled, never deleted (its row may carry a
# reminder's mark); laying it out again revives it.
INSERT = f"""
INSERT INTO checkins (subject_id, org_unit_id, kind, opens_at, closes_at, draw_id, issued_by,
    created_at)
SELECT * FROM unnest($1::int[], $2::int[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                     $6::bigint[], $7::int[], $8::timestamptz[])
ON CONFLICT (subject_id, kind, opens_at) DO UPDATE SET status = 'pending',
    closes_at = EXCLUDED.closes_at, draw_id = EXCLUDED.draw_id
    WHERE checkins.status = 'cancelled'
RETURNING {_COLUMNS}
"""
PENDING_AFTER = f"""
SELECT {_COLUMNS} FROM checkins
WHERE subject_id = $1 AND kind = $2 AND status = 'pending' AND opens_at > $3
ORDER BY opens_at
"""
CANCEL = (
    "UPDATE checkins SET status = 'cancelled' WHERE id = ANY($1::bigint[]) AND status = 'pending'"
)
# Drawn challenges not yet open whose draw was for another kind of period than the level's
# now (or any, when the level draws none).
CANCEL_STALE_CHALLENGES = """
UPDATE checkins c SET status = 'cancelled' FROM checkin_draws d
WHERE c.subject_id = $1 AND c.kind = 'challenge' AND c.status = 'pending' AND c.opens_at > $2
  AND c.draw_id = d.id AND ($3::text IS NULL OR d.period <> $3)
RETURNING c.id
"""
LIST = f"""
SELECT {_COLUMNS} FROM checkins
WHERE subject_id = $1 AND opens_at < $3 AND closes_at > $2 AND status <> 'cancelled'
  AND ($4::timestamptz IS NULL OR kind = 'scheduled' OR opens_at <= $4)
ORDER BY opens_at, id LIMIT $5
"""
GET = f"SELECT {_COLUMNS} FROM checkins WHERE id = $1"
GET_FOR_UPDATE = f"SELECT {_COLUMNS} FROM checkins WHERE id = $1 FOR UPDATE"
# The check-in an answer is for, locked, with what the answer needs of its subject: one
# round trip where two were.
ANSWER_TARGET = """
SELECT c.id, c.subject_id, c.org_unit_id, c.kind, c.opens_at, c.closes_at, c.status,
    c.answered_at, c.reasons, c.answer, c.photo_sha256, c.device_id, c.draw_id, c.issued_by,
    c.reviewed_by, c.reviewed_at, c.review_note,
    s.org_unit_id AS subject_org_unit_id, s.supervision_level, s.activity_area_id
FROM checkins c JOIN subjects s ON s.id = c.subject_id
WHERE c.id = $1
FOR UPDATE OF c
"""
ANSWER = f"""
UPDATE checkins SET status = $2, reasons = $3, answered_at = $4, answer = $5,
    photo_sha256 = $6, device_id = $7
WHERE id = $1 AND answered_at IS NULL AND status IN ('pending', 'missed')
RETURNING {_COLUMNS}
"""
REVIEW = f"""
UPDATE checkins SET status = $2, reviewed_by = $3, reviewed_at = $4, review_note = $5
WHERE id = $1 AND status = 'needs_review'
RETURNING {_COLUMNS}
"""
PHOTO_USED = """
SELECT id FROM checkins
WHERE subject_id = $1 AND photo_sha256 = $2 AND id <> $3 AND answered_at IS NOT NULL
ORDER BY answered_at, id LIMIT 1
"""
_DRAW_COLUMNS = """
id, subject_id, period, period_start, period_end, seed, algorithm, inputs, times, drawn_at
"""
DRAW = f"""
SELECT {_DRAW_COLUMNS} FROM checkin_draws
WHERE subject_id = $1 AND period = $2 AND period_start = $3
"""
INSERT_DRAW = f"""
INSERT INTO checkin_draws (subject_id, period, period_start, period_end, seed, algorithm,
    inputs, times, drawn_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (subject_id, period, period_start) DO NOTHING
RETURNING {_DRAW_COLUMNS}
"""
DRAWS = f"""
SELECT {_DRAW_COLUMNS} FROM checkin_draws WHERE subject_id = $1
ORDER BY period_start DESC, id DESC LIMIT $2
"""


def checkin_of(row: asyncpg.Record) -> Checkin:
    return Checkin(
        id=row["id"],
        subject_id=row["subject_id"],
        org_unit_id=row["org_unit_id"],
        kind=CheckinKind(row["kind"]),
        opens_at=row["opens_at"],
        closes_at=row["closes_at"],
        status=CheckinStatus(row["status"]),
        answered_at=row["answered_at"],
        reasons=tuple(row["reasons"]),
        answer=row["answer"],
        photo_sha256=row["photo_sha256"],
        device_id=row["device_id"],
        draw_id=row["draw_id"],
        issued_by=row["issued_by"],
        reviewed_by=row["reviewed_by"],
        reviewed_at=row["reviewed_at"],
        review_note=row["review_note"],
    )


def _draw(row: asyncpg.Record) -> Draw:
    return Draw(
        id=row["id"],
        subject_id=row["subject_id"],
        period=row["period"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        seed=row["seed"],
        algorithm=row["algorithm"],
        inputs=row["inputs"],
        times=list(row["times"]),
        drawn_at=row["drawn_at"],
    )


async def lock_layout(conn: asyncpg.Connection, subject_id: int) -> None:
    """Serialise the subject's layouts until the transaction ends."""
    await conn.execute(LOCK_LAYOUT, LAYOUT_LOCK_CLASS, subject_id)


async def laid_until(conn: asyncpg.Connection, subject_id: int) -> datetime | None:
    value: datetime | None = await conn.fetchval(LAID_UNTIL, subject_id)
    return value


async def set_laid_until(
    conn: asyncpg.Connection, subject_id: int, until: datetime, at: datetime
) -> None:
    await conn.execute(SET_LAID_UNTIL, subject_id, until, at)


async def subjects_behind(
    conn: asyncpg.Connection, before: datetime, today: date, limit: int
) -> list[int]:
    """Active subjects, their term not over by ``today``, laid out short of ``before``."""
    return [r["id"] for r in await conn.fetch(BEHIND, before, today, limit)]


async def schedule(conn: asyncpg.Connection, subject_id: int) -> StoredSchedule | None:
    row = await conn.fetchrow(SCHEDULE, subject_id)
    if row is None:
        return None
    return StoredSchedule(row["windows"], row["set_by"], row["set_at"])


async def set_schedule(
    conn: asyncpg.Connection,
    subject_id: int,
    windows: list[dict[str, Any]],
    officer_id: int | None,
    at: datetime,
) -> None:
    await conn.execute(SET_SCHEDULE, subject_id, windows, officer_id, at)


async def clear_schedule(conn: asyncpg.Connection, subject_id: int) -> bool:
    return await conn.fetchval(CLEAR_SCHEDULE, subject_id) is not None


async def insert(
    conn: asyncpg.Connection, new: Sequence[NewCheckin], at: datetime
) -> list[Checkin]:
    """Lay out ``new`` in one statement: the rows created (or revived from cancelled); a
    window already laid out is left as it is."""
    if not new:
        return []
    rows = await conn.fetch(
        INSERT,
        [n.subject_id for n in new],
        [n.org_unit_id for n in new],
        [n.kind.value for n in new],
        [n.opens_at for n in new],
        [n.closes_at for n in new],
        [n.draw_id for n in new],
        [n.issued_by for n in new],
        [at] * len(new),
    )
    return [checkin_of(r) for r in rows]


async def pending_after(
    conn: asyncpg.Connection, subject_id: int, kind: CheckinKind, after: datetime
) -> list[Checkin]:
    """The subject's pending check-ins of ``kind`` opening after ``after``."""
    return [checkin_of(r) for r in await conn.fetch(PENDING_AFTER, subject_id, kind.value, after)]


async def cancel(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(CANCEL, list(ids))


async def cancel_stale_challenges(
    conn: asyncpg.Connection, subject_id: int, after: datetime, keep_period: str | None
) -> int:
    rows = await conn.fetch(CANCEL_STALE_CHALLENGES, subject_id, after, keep_period)
    return len(rows)


async def list_for(
    conn: asyncpg.Connection,
    subject_id: int,
    start: datetime,
    end: datetime,
    *,
    challenges_opened_by: datetime | None,
    limit: int,
) -> list[Checkin]:
    """The subject's check-ins meeting ``[start, end)`` by opens_at, cancelled ones never;
    with ``challenges_opened_by``, challenges only once they have opened by then."""
    rows = await conn.fetch(LIST, subject_id, start, end, challenges_opened_by, limit)
    return [checkin_of(r) for r in rows]


async def get(conn: asyncpg.Connection, checkin_id: int, *, for_update: bool) -> Checkin | None:
    row = await conn.fetchrow(GET_FOR_UPDATE if for_update else GET, checkin_id)
    return checkin_of(row) if row is not None else None


async def answer_target(conn: asyncpg.Connection, checkin_id: int) -> AnswerTarget | None:
    """The check-in, locked until the transaction ends, and its subject's unit, level and
    activity area; None when there is no such check-in."""
    row = await conn.fetchrow(ANSWER_TARGET, checkin_id)
    if row is None:
        return None
    return AnswerTarget(
        checkin=checkin_of(row),
        org_unit_id=row["subject_org_unit_id"],
        supervision_level=SupervisionLevel(row["supervision_level"]),
        activity_area_id=row["activity_area_id"],
    )


async def answer(
    conn: asyncpg.Connection,
    checkin_id: int,
    *,
    status: CheckinStatus,
    reasons: Sequence[str],
    answered_at: datetime,
    answer: dict[str, Any],
    photo_sha256: str | None,
    device_id: int,
) -> Checkin | None:
    """Record the answer of a check-in not answered yet; None when it was."""
    row = await conn.fetchrow(
        ANSWER,
        checkin_id,
        status.value,
        list(reasons),
        answered_at,
        answer,
        photo_sha256,
        device_id,
    )
    return checkin_of(row) if row is not None else None


async def review(
    conn: asyncpg.Connection,
    checkin_id: int,
    *,
    status: CheckinStatus,
    officer_id: int,
    at: datetime,
    note: str | None,
) -> Checkin | None:
    """Decide a check-in that needs review; None when it does not (any more)."""
    row = await conn.fetchrow(REVIEW, checkin_id, status.value, officer_id, at, note)
    return checkin_of(row) if row is not None else None


async def photo_used_by(
    conn: asyncpg.Connection, subject_id: int, photo_sha256: str, other_than: int
) -> int | None:
    """The earliest answered check-in of the subject, other than ``other_than``, that sent
    this photo; None when none did."""
    value: int | None = await conn.fetchval(PHOTO_USED, subject_id, photo_sha256, other_than)
    return value


async def draw(
    conn: asyncpg.Connection, subject_id: int, period: str, period_start: datetime
) -> Draw | None:
    row = await conn.fetchrow(DRAW, subject_id, period, period_start)
    return _draw(row) if row is not None else None


async def add_draw(
    conn: asyncpg.Connection,
    *,
    subject_id: int,
    period: str,
    period_start: datetime,
    period_end: datetime,
    seed: str,
    algorithm: str,
    inputs: dict[str, Any],
    times: list[str],
    at: datetime,
) -> Draw | None:
    """Store a draw; None when the period was drawn already (by a concurrent layout)."""
    row = await conn.fetchrow(
        INSERT_DRAW,
        subject_id,
        period,
        period_start,
        period_end,
        seed,
        algorithm,
        inputs,
        times,
        at,
    )
    return _draw(row) if row is not None else None


async def draws(conn: asyncpg.Connection, subject_id: int, limit: int) -> list[Draw]:
    """The subject's draws, latest period first."""
    return [_draw(r) for r in await conn.fetch(DRAWS, subject_id, limit)]
