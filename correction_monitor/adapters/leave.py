"""Leave (外出) in PostgreSQL (``leaves``, ``leave_reports``): applications, decisions, the
subject's reports, and the approved leaves evaluation and check-ins read.

``leaves.status``, ``starts_at``, ``ends_at`` and ``destination_fence_id`` are what the rest
of the service reads (the closed span of an approved leave and the fence of its destination,
see ``domain/leave.py``); they are always filled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.leave import (
    ApprovalLevel,
    ApprovedLeave,
    Leave,
    LeaveReason,
    LeaveReport,
    LeaveStatus,
    NewLeave,
    NewLeaveReport,
    ReportKind,
)

_COLUMNS = """
id, subject_id, org_unit_id, destination, destination_fence_id, reason, note, starts_at,
ends_at, start_text, end_text, days, approval_level, commuting, status, applied_at,
decided_by, decided_at, decision_note
"""
INSERT = f"""
INSERT INTO leaves (subject_id, org_unit_id, destination, destination_fence_id, reason, note,
    starts_at, ends_at, start_text, end_text, days, approval_level, commuting, applied_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING {_COLUMNS}
"""
GET = f"SELECT {_COLUMNS} FROM leaves WHERE id = $1"
GET_FOR_UPDATE = f"SELECT {_COLUMNS} FROM leaves WHERE id = $1 FOR UPDATE"
LIST = f"""
SELECT {_COLUMNS} FROM leaves
WHERE ($1::int[] IS NULL OR org_unit_id = ANY($1::int[]))
  AND ($2::text IS NULL OR status = $2)
  AND ($3::int IS NULL OR subject_id = $3)
ORDER BY id DESC LIMIT $4
"""
OF_SUBJECT = f"SELECT {_COLUMNS} FROM leaves WHERE subject_id = $1 ORDER BY id DESC LIMIT $2"
DECIDE = f"""
UPDATE leaves SET status = $2, decided_by = $3, decided_at = $4, decision_note = $5,
    approval_level = $6
WHERE id = $1 AND status = 'pending'
RETURNING {_COLUMNS}
"""
APPROVED_OVERLAPPING = """
SELECT id, starts_at, ends_at, destination_fence_id FROM leaves
WHERE subject_id = $1 AND status = 'approved' AND starts_at <= $3 AND ends_at >= $2
ORDER BY starts_at, id
"""
APPROVED_SPANS = """
SELECT starts_at, ends_at FROM leaves
WHERE subject_id = $1 AND status = 'approved' AND NOT commuting
  AND starts_at <= $3 AND ends_at >= $2 AND id <> $4
"""
# The newest approved leaves of each subject: evaluation's profiles hold them (a subject
# needs the running ones and the most recent ended one; this many is ample).
PROFILE_LEAVES_PER_SUBJECT = 64
APPROVED_OF_SUBJECTS = """
SELECT l.id, l.subject_id, l.starts_at, l.ends_at, l.destination_fence_id
FROM unnest($1::int[]) AS s(id)
CROSS JOIN LATERAL (
    SELECT id, subject_id, starts_at, ends_at, destination_fence_id FROM leaves
    WHERE subject_id = s.id AND status = 'approved' AND destination_fence_id IS NOT NULL
    ORDER BY ends_at DESC LIMIT $2
) AS l
ORDER BY l.subject_id, l.starts_at
"""
_REPORT_COLUMNS = """
id, leave_id, subject_id, kind, ts, lon, lat, accuracy_m, inside, device_id, received_at
"""
INSERT_REPORT = f"""
INSERT INTO leave_reports (leave_id, subject_id, kind, ts, lon, lat, accuracy_m, inside,
    device_id, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING {_REPORT_COLUMNS}
"""
REPORTS = f"SELECT {_REPORT_COLUMNS} FROM leave_reports WHERE leave_id = $1 ORDER BY ts, id"


def _leave(row: asyncpg.Record) -> Leave:
    return Leave(
        id=row["id"],
        subject_id=row["subject_id"],
        org_unit_id=row["org_unit_id"],
        destination=row["destination"],
        destination_fence_id=row["destination_fence_id"],
        reason=LeaveReason(row["reason"]),
        note=row["note"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        start_text=row["start_text"],
        end_text=row["end_text"],
        days=row["days"],
        approval_level=ApprovalLevel(row["approval_level"]),
        commuting=row["commuting"],
        status=LeaveStatus(row["status"]),
        applied_at=row["applied_at"],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        decision_note=row["decision_note"],
    )


def _report(row: asyncpg.Record) -> LeaveReport:
    return LeaveReport(
        id=row["id"],
        leave_id=row["leave_id"],
        subject_id=row["subject_id"],
        kind=ReportKind(row["kind"]),
        ts=row["ts"],
        lon=row["lon"],
        lat=row["lat"],
        accuracy_m=row["accuracy_m"],
        inside=row["inside"],
        device_id=row["device_id"],
        received_at=row["received_at"],
    )


async def add(conn: asyncpg.Connection, new: NewLeave) -> Leave:
    row = await conn.fetchrow(
        INSERT,
        new.subject_id,
        new.org_unit_id,
        new.destination,
        new.destination_fence_id,
        new.reason.value,
        new.note,
        new.starts_at,
        new.ends_at,
        new.start_text,
        new.end_text,
        new.days,
        new.approval_level.value,
        new.commuting,
        new.applied_at,
    )
    return _leave(row)


async def get(conn: asyncpg.Connection, leave_id: int, *, for_update: bool = False) -> Leave:
    """One leave (locked for this transaction with ``for_update``); NotFound."""
    row = await conn.fetchrow(GET_FOR_UPDATE if for_update else GET, leave_id)
    if row is None:
        raise NotFound(f"leave {leave_id}")
    return _leave(row)


async def list_in(
    conn: asyncpg.Connection,
    org_unit_ids: frozenset[int] | None,
    *,
    status: LeaveStatus | None,
    subject_id: int | None,
    limit: int,
) -> list[Leave]:
    """Leaves of these units (all with None), newest first."""
    ids = list(org_unit_ids) if org_unit_ids is not None else None
    rows = await conn.fetch(LIST, ids, status.value if status else None, subject_id, limit)
    return [_leave(r) for r in rows]


async def of_subject(conn: asyncpg.Connection, subject_id: int, limit: int) -> list[Leave]:
    """The subject's leaves, newest first."""
    return [_leave(r) for r in await conn.fetch(OF_SUBJECT, subject_id, limit)]


async def decide(
    conn: asyncpg.Connection,
    leave_id: int,
    status: LeaveStatus,
    *,
    officer_id: int | None,
    at: datetime,
    note: str | None,
    approval_level: ApprovalLevel,
) -> Leave | None:
    """Move a pending leave to ``status``; None when it is no longer pending."""
    row = await conn.fetchrow(
        DECIDE, leave_id, status.value, officer_id, at, note, approval_level.value
    )
    return _leave(row) if row is not None else None


async def approved_leaves(
    conn: asyncpg.Connection, subject_id: int, start: datetime, end: datetime
) -> list[ApprovedLeave]:
    """The subject's approved leaves whose span meets ``[start, end]``, by start."""
    rows = await conn.fetch(APPROVED_OVERLAPPING, subject_id, start, end)
    return [
        ApprovedLeave(r["id"], r["starts_at"], r["ends_at"], r["destination_fence_id"])
        for r in rows
    ]


async def approved_spans(
    conn: asyncpg.Connection, subject_id: int, start: datetime, end: datetime, except_id: int
) -> list[tuple[datetime, datetime]]:
    """Spans of the subject's approved leaves other than commuting ones and ``except_id``
    that meet ``[start, end]`` (the cumulative rule counts their days)."""
    rows = await conn.fetch(APPROVED_SPANS, subject_id, start, end, except_id)
    return [(r["starts_at"], r["ends_at"]) for r in rows]


async def approved_of_subjects(
    conn: asyncpg.Connection, subject_ids: Sequence[int]
) -> dict[int, list[ApprovedLeave]]:
    """Each subject's newest approved leaves (at most ``PROFILE_LEAVES_PER_SUBJECT``), by
    start; subjects without any are absent. One query for many subjects."""
    rows = await conn.fetch(APPROVED_OF_SUBJECTS, list(subject_ids), PROFILE_LEAVES_PER_SUBJECT)
    out: dict[int, list[ApprovedLeave]] = {}
    for r in rows:
        out.setdefault(r["subject_id"], []).append(
            ApprovedLeave(r["id"], r["starts_at"], r["ends_at"], r["destination_fence_id"])
        )
    return out


async def add_report(conn: asyncpg.Connection, new: NewLeaveReport) -> LeaveReport:
    row = await conn.fetchrow(
        INSERT_REPORT,
        new.leave_id,
        new.subject_id,
        new.kind.value,
        new.ts,
        new.lon,
        new.lat,
        new.accuracy_m,
        new.inside,
        new.device_id,
        new.received_at,
    )
    return _report(row)


async def reports(conn: asyncpg.Connection, leave_id: int) -> list[LeaveReport]:
    """A leave's reports, in the order of their times."""
    return [_report(r) for r in await conn.fetch(REPORTS, leave_id)]


class PostgresLeaves:
    """Leaves as one unit of work's transaction sees them (``uow.leaves``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, new: NewLeave) -> Leave:
        return await add(self._conn, new)

    async def get(self, leave_id: int, *, for_update: bool = False) -> Leave:
        return await get(self._conn, leave_id, for_update=for_update)

    async def list_in(
        self,
        org_unit_ids: frozenset[int] | None,
        *,
        status: LeaveStatus | None,
        subject_id: int | None,
        limit: int,
    ) -> list[Leave]:
        return await list_in(
            self._conn, org_unit_ids, status=status, subject_id=subject_id, limit=limit
        )

    async def of_subject(self, subject_id: int, limit: int) -> list[Leave]:
        return await of_subject(self._conn, subject_id, limit)

    async def decide(
        self,
        leave_id: int,
        status: LeaveStatus,
        *,
        officer_id: int | None,
        at: datetime,
        note: str | None,
        approval_level: ApprovalLevel,
    ) -> Leave | None:
        return await decide(
            self._conn,
            leave_id,
            status,
            officer_id=officer_id,
            at=at,
            note=note,
            approval_level=approval_level,
        )

    async def approved_spans(
        self, subject_id: int, start: datetime, end: datetime, except_id: int
    ) -> list[tuple[datetime, datetime]]:
        return await approved_spans(self._conn, subject_id, start, end, except_id)

    async def add_report(self, new: NewLeaveReport) -> LeaveReport:
        return await add_report(self._conn, new)

    async def reports(self, leave_id: int) -> list[LeaveReport]:
        return await reports(self._conn, leave_id)
