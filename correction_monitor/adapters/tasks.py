"""Tasks in PostgreSQL (``tasks``, ``task_steps``): opening them once, completing them, the
officers' queues, and the SLA sweep's escalations in bulk.

The open rows are the durable timers: the partial index ``tasks_due`` (``due_at`` of open
tasks whose last SLA has not been missed) is the queue of deadlines. The sweep claims a
batch of due rows ``FOR UPDATE SKIP LOCKED`` and, in the same statement, moves each to its
next level and holder, records the step and writes the audit entry; the caller appends the
events last in the transaction. A row leaves the queue's due range in the statement that
escalates it (its ``due_at`` moves ahead) or records its last miss (``sla_missed_at``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.access import Role
from correction_monitor.domain.tasks import (
    Candidate,
    Escalation,
    NewTask,
    Task,
    TaskKind,
    TaskStatus,
    TaskStep,
)
from correction_monitor.metrics import AUDIT_WRITES

_COLUMNS = """
t.id, t.kind, t.subject_id, t.org_unit_id, t.alert_id, t.proposal_id, t.checkin_id,
t.leave_id, t.assignee_id, t.escalation_level, t.due_at, t.status, t.created_at, t.done_at,
t.done_by, t.outcome, t.note, t.sla_missed_at,
(SELECT count(*) FROM task_steps s WHERE s.task_id = t.id)::int AS steps_count
"""
INSERT = f"""
WITH t AS (
    INSERT INTO tasks (kind, subject_id, org_unit_id, alert_id, proposal_id, checkin_id,
                       leave_id, assignee_id, due_at, created_at, dedupe_key)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING *
)
SELECT {_COLUMNS} FROM t
"""
GET = f"SELECT {_COLUMNS} FROM tasks t WHERE t.id = $1"
GET_FOR_UPDATE = f"SELECT {_COLUMNS} FROM tasks t WHERE t.id = $1 FOR UPDATE OF t"
# Only an open task completes; a repeat (or a second completion racing) changes nothing.
COMPLETE = f"""
WITH t AS (
    UPDATE tasks SET status = 'done', done_at = $2, done_by = $3, outcome = $4, note = $5
    WHERE {{which}} AND status = 'open'
    RETURNING *
)
SELECT {_COLUMNS} FROM t
"""
COMPLETE_BY_KEY = COMPLETE.format(which="dedupe_key = $1")
COMPLETE_BY_ID = COMPLETE.format(which="id = $1")
# Within a scope (None: everything), a task of the scope's units or held by the viewer ($2):
# a supervisor sees the station's tasks and the escalations handed to them.
LIST = f"""
SELECT {_COLUMNS} FROM tasks t
WHERE ($1::int[] IS NULL OR t.org_unit_id = ANY($1::int[]) OR t.assignee_id = $2)
  AND ($3::text IS NULL OR t.status = $3)
  AND ($4::int IS NULL OR t.assignee_id = $4)
  AND ($5::int IS NULL OR t.subject_id = $5)
  AND ($6::text IS NULL OR t.kind = $6)
ORDER BY t.status = 'open' DESC, t.due_at, t.id
LIMIT $7
"""
STEPS = """
SELECT id, task_id, kind, at, officer_id, note, data FROM task_steps
WHERE task_id = $1 ORDER BY id
"""
ADD_STEP = """
INSERT INTO task_steps (task_id, kind, at, officer_id, note, data)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, task_id, kind, at, officer_id, note, data
"""
# Officers who may hold a task of a station's subject: its supervisors and the county and
# other administrators above it, nearest first.
CANDIDATES = """
WITH RECURSIVE up AS (
    SELECT id, parent_id, 0 AS depth FROM org_units WHERE id = $1
    UNION ALL
    SELECT o.id, o.parent_id, up.depth + 1 FROM org_units o JOIN up ON o.id = up.parent_id
)
SELECT f.id, f.role, up.depth FROM up JOIN officers f ON f.org_unit_id = up.id
WHERE f.active AND f.role IN ('supervisor', 'county_admin', 'admin')
ORDER BY up.depth, f.id
"""


def _iso(column: str) -> str:
    """SQL rendering ``column`` (timestamptz) as UTC ISO-8601 with ``Z``."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


# One statement per batch: claim the due open tasks (oldest deadline first, skipping rows
# others hold), work out each one's next holder, move it, record the step and the audit
# entry. Holders, as domain/tasks.py picks them for a task's first holder:
# - level 0 → 1: the subject's responsible supervisor, else the station's supervisor, else
#   the county administrator (a rung is skipped rather than nobody told);
# - level 1 → 2: the nearest county administrator above the station, else the nearest
#   administrator;
# - a task already held by a county administrator or an administrator (a proposal's
#   decision, a county-level leave) rises a level without being handed down;
# - nobody to hand it to: it keeps its holder.
# A task at level 2 stays where it is: its miss is recorded once (sla_missed_at, which takes
# it out of tasks_due) with its due_at kept. $3, $4: the seconds the next level is given.
ESCALATE_DUE = f"""
WITH RECURSIVE due AS (
    SELECT id FROM tasks
    WHERE status = 'open' AND sla_missed_at IS NULL AND due_at <= $1
    ORDER BY due_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), held AS (
    SELECT t.id, t.kind, t.subject_id, t.org_unit_id, t.alert_id, t.assignee_id,
           t.escalation_level AS level, t.due_at, rs.id AS supervisor_id, a.role AS holder_role
    FROM due
    JOIN tasks t ON t.id = due.id
    JOIN subjects s ON s.id = t.subject_id
    LEFT JOIN officers rs ON rs.id = s.responsible_supervisor_id AND rs.active
    LEFT JOIN officers a ON a.id = t.assignee_id
), units AS (
    SELECT DISTINCT org_unit_id AS id FROM held
), up AS (
    SELECT u.id AS unit, u.id AS at, u.parent_id, 0 AS depth
    FROM org_units u JOIN units ON units.id = u.id
    UNION ALL
    SELECT up.unit, p.id, p.parent_id, up.depth + 1
    FROM up JOIN org_units p ON p.id = up.parent_id
), station_supervisor AS (
    SELECT DISTINCT ON (o.org_unit_id) o.org_unit_id AS unit, o.id
    FROM officers o JOIN units ON units.id = o.org_unit_id
    WHERE o.role = 'supervisor' AND o.active
    ORDER BY o.org_unit_id, o.id
), county AS (
    SELECT DISTINCT ON (up.unit) up.unit, o.id
    FROM up JOIN officers o ON o.org_unit_id = up.at
    WHERE o.active AND o.role IN ('county_admin', 'admin')
    ORDER BY up.unit, o.role = 'county_admin' DESC, up.depth, o.id
), plan AS (
    SELECT h.id, h.kind, h.subject_id, h.org_unit_id, h.alert_id, h.assignee_id, h.level,
           h.due_at,
           h.level >= 2 AS missed,
           LEAST(h.level + 1, 2) AS to_level,
           CASE
               WHEN h.level >= 2 OR h.holder_role IN ('county_admin', 'admin')
                   THEN h.assignee_id
               WHEN h.level = 0 THEN COALESCE(h.supervisor_id, ss.id, k.id, h.assignee_id)
               ELSE COALESCE(k.id, h.assignee_id)
           END AS to_id,
           CASE
               WHEN h.level >= 2 THEN h.due_at
               WHEN h.level = 0 THEN $1 + make_interval(secs => $3)
               ELSE $1 + make_interval(secs => $4)
           END AS to_due
    FROM held h
    LEFT JOIN station_supervisor ss ON ss.unit = h.org_unit_id
    LEFT JOIN county k ON k.unit = h.org_unit_id
), moved AS (
    UPDATE tasks t SET escalation_level = p.to_level, assignee_id = p.to_id, due_at = p.to_due,
        sla_missed_at = CASE WHEN p.missed THEN $1::timestamptz END
    FROM plan p WHERE t.id = p.id
    RETURNING t.id
), details AS (
    SELECT p.*, jsonb_build_object(
        'task_id', p.id,
        'kind', p.kind,
        'from_assignee_id', p.assignee_id,
        'to_assignee_id', p.to_id,
        'from_level', p.level,
        'level', p.to_level,
        'missed_due_at', {_iso("p.due_at")},
        'due_at', {_iso("p.to_due")},
        'alert_id', p.alert_id) AS detail
    FROM plan p
), steps AS (
    INSERT INTO task_steps (task_id, kind, at, officer_id, note, data)
    SELECT d.id, CASE WHEN d.missed THEN 'sla_missed' ELSE 'escalated' END, $1, NULL, NULL,
           d.detail
    FROM details d
    ORDER BY d.id
), audited AS (
    INSERT INTO audit_log (officer_id, action, subject_id, detail)
    SELECT NULL, CASE WHEN d.missed THEN 'task.sla_missed' ELSE 'task.escalate' END,
           d.subject_id, d.detail
    FROM details d
    ORDER BY d.id
)
SELECT p.id, p.kind, p.subject_id, p.org_unit_id, p.alert_id, p.assignee_id, p.to_id,
       p.to_level, p.to_due, p.missed
FROM plan p
JOIN moved m ON m.id = p.id
ORDER BY p.due_at, p.id
"""


def _task(r: asyncpg.Record) -> Task:
    return Task(
        id=r["id"],
        kind=TaskKind(r["kind"]),
        subject_id=r["subject_id"],
        org_unit_id=r["org_unit_id"],
        alert_id=r["alert_id"],
        proposal_id=r["proposal_id"],
        checkin_id=r["checkin_id"],
        leave_id=r["leave_id"],
        assignee_id=r["assignee_id"],
        escalation_level=r["escalation_level"],
        due_at=r["due_at"],
        status=TaskStatus(r["status"]),
        created_at=r["created_at"],
        done_at=r["done_at"],
        done_by=r["done_by"],
        outcome=r["outcome"],
        note=r["note"],
        sla_missed_at=r["sla_missed_at"],
        steps_count=r["steps_count"],
    )


def _step(r: asyncpg.Record) -> TaskStep:
    return TaskStep(
        r["id"], r["task_id"], r["kind"], r["at"], r["officer_id"], r["note"], r["data"]
    )


async def add(conn: asyncpg.Connection, new: NewTask) -> Task | None:
    """Open ``new``; None when a task with its dedupe key exists already."""
    row = await conn.fetchrow(
        INSERT,
        new.kind.value,
        new.subject_id,
        new.org_unit_id,
        new.alert_id,
        new.proposal_id,
        new.checkin_id,
        new.leave_id,
        new.assignee_id,
        new.due_at,
        new.created_at,
        new.dedupe_key,
    )
    return _task(row) if row is not None else None


async def get(conn: asyncpg.Connection, task_id: int, *, for_update: bool = False) -> Task:
    row = await conn.fetchrow(GET_FOR_UPDATE if for_update else GET, task_id)
    if row is None:
        raise NotFound(f"task {task_id}")
    return _task(row)


async def complete(
    conn: asyncpg.Connection,
    *,
    key: str | None = None,
    task_id: int | None = None,
    at: datetime,
    done_by: int | None,
    outcome: str | None = None,
    note: str | None = None,
) -> Task | None:
    """Mark the open task named by its dedupe ``key`` or its id done; None when there is no
    such open task (never opened, or done already)."""
    if key is not None:
        row = await conn.fetchrow(COMPLETE_BY_KEY, key, at, done_by, outcome, note)
    else:
        row = await conn.fetchrow(COMPLETE_BY_ID, task_id, at, done_by, outcome, note)
    return _task(row) if row is not None else None


async def list_in(
    conn: asyncpg.Connection,
    *,
    scope: frozenset[int] | None,
    viewer_id: int,
    status: TaskStatus | None,
    assignee_id: int | None,
    subject_id: int | None,
    kind: TaskKind | None,
    limit: int,
) -> list[Task]:
    rows = await conn.fetch(
        LIST,
        sorted(scope) if scope is not None else None,
        viewer_id,
        status.value if status is not None else None,
        assignee_id,
        subject_id,
        kind.value if kind is not None else None,
        limit,
    )
    return [_task(r) for r in rows]


async def steps(conn: asyncpg.Connection, task_id: int) -> list[TaskStep]:
    return [_step(r) for r in await conn.fetch(STEPS, task_id)]


async def add_step(
    conn: asyncpg.Connection,
    task_id: int,
    kind: str,
    at: datetime,
    officer_id: int | None,
    note: str | None,
    data: dict[str, Any],
) -> TaskStep:
    return _step(await conn.fetchrow(ADD_STEP, task_id, kind, at, officer_id, note, data))


async def candidates(conn: asyncpg.Connection, org_unit_id: int) -> list[Candidate]:
    """Supervisors of the station and (county) administrators above it, nearest first."""
    rows = await conn.fetch(CANDIDATES, org_unit_id)
    return [Candidate(r["id"], Role(r["role"]), r["depth"]) for r in rows]


async def escalate_due(
    conn: asyncpg.Connection, now: datetime, limit: int, escalation_sla_s: Sequence[float]
) -> list[Escalation]:
    """Escalate up to ``limit`` open tasks due at or before ``now`` (see ESCALATE_DUE),
    recording each one's step and audit entry; the tasks moved, oldest deadline first. The
    caller appends their events last in its transaction."""
    first_s, second_s = escalation_sla_s
    rows = await conn.fetch(ESCALATE_DUE, now, limit, float(first_s), float(second_s))
    escalated = [
        Escalation(
            task_id=r["id"],
            kind=TaskKind(r["kind"]),
            subject_id=r["subject_id"],
            org_unit_id=r["org_unit_id"],
            alert_id=r["alert_id"],
            from_assignee_id=r["assignee_id"],
            to_assignee_id=r["to_id"],
            level=r["to_level"],
            due_at=r["to_due"],
            missed=r["missed"],
        )
        for r in rows
    ]
    missed = sum(e.missed for e in escalated)
    if missed:
        AUDIT_WRITES.labels("task.sla_missed").inc(missed)
    if len(escalated) > missed:
        AUDIT_WRITES.labels("task.escalate").inc(len(escalated) - missed)
    return escalated


class PostgresTasks:
    """Tasks and their steps in one unit of work's transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, new: NewTask) -> Task | None:
        return await add(self._conn, new)

    async def get(self, task_id: int, *, for_update: bool = False) -> Task:
        return await get(self._conn, task_id, for_update=for_update)

    async def complete(
        self,
        *,
        key: str | None = None,
        task_id: int | None = None,
        at: datetime,
        done_by: int | None,
        outcome: str | None = None,
        note: str | None = None,
    ) -> Task | None:
        return await complete(
            self._conn,
            key=key,
            task_id=task_id,
            at=at,
            done_by=done_by,
            outcome=outcome,
            note=note,
        )

    async def list_in(
        self,
        *,
        scope: frozenset[int] | None,
        viewer_id: int,
        status: TaskStatus | None,
        assignee_id: int | None,
        subject_id: int | None,
        kind: TaskKind | None,
        limit: int,
    ) -> list[Task]:
        return await list_in(
            self._conn,
            scope=scope,
            viewer_id=viewer_id,
            status=status,
            assignee_id=assignee_id,
            subject_id=subject_id,
            kind=kind,
            limit=limit,
        )

    async def steps(self, task_id: int) -> list[TaskStep]:
        return await steps(self._conn, task_id)

    async def add_step(
        self,
        task_id: int,
        kind: str,
        at: datetime,
        officer_id: int | None,
        note: str | None,
        data: dict[str, Any],
    ) -> TaskStep:
        return await add_step(self._conn, task_id, kind, at, officer_id, note, data)

    async def candidates(self, org_unit_id: int) -> list[Candidate]:
        return await candidates(self._conn, org_unit_id)

    async def escalate_due(
        self, now: datetime, limit: int, escalation_sla_s: Sequence[float]
    ) -> list[Escalation]:
        return await escalate_due(self._conn, now, limit, escalation_sla_s)
