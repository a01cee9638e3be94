"""Alerts and their change events in PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from correction_monitor.adapters import outbox
from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.alerts import (
    AlertChange,
    AlertEnd,
    AlertOp,
    AlertOpen,
    AlertType,
    AppliedChange,
)
from correction_monitor.domain.timeutil import iso

_COLUMNS = (
    "a.id, a.subject_id, a.org_unit_id, a.type, a.severity, a.status, a.fence_id, "
    "a.episode_key, a.started_at, a.detected_at, a.ended_at, a.evidence, a.acknowledged_at, "
    "a.acknowledged_by, a.resolved_at, a.resolved_by, a.disposition, a.note, a.retracted_at, "
    "a.gravity, a.incident_id, a.self_resolution_until, a.self_resolved, a.released_at, "
    "a.reopened_at, a.reopened_by, a.reopen_count"
)
OPEN = """
INSERT INTO alerts (subject_id, org_unit_id, type, severity, fence_id, episode_key, started_at,
                    evidence, detected_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, now()))
ON CONFLICT (subject_id, type, episode_key) DO NOTHING
RETURNING id
"""
# An episode confirmed again after a replay retracted its alert: the alert comes back.
UNRETRACT = """
UPDATE alerts SET retracted_at = NULL, ended_at = NULL, evidence = evidence - 'retracted'
WHERE subject_id = $1 AND type = $2 AND episode_key = $3 AND retracted_at IS NOT NULL
RETURNING id
"""
END = """
UPDATE alerts SET ended_at = $4, evidence = evidence || $5::jsonb
WHERE subject_id = $1 AND type = $2 AND episode_key = $3 AND ended_at IS NULL
RETURNING id
"""
GET = f"SELECT {_COLUMNS} FROM alerts a WHERE a.id = $1"
LIST = f"""
SELECT {_COLUMNS} FROM alerts a
WHERE ($1::int[] IS NULL OR a.org_unit_id = ANY($1::int[]))
  AND ($2::int IS NULL OR a.subject_id = $2)
  AND ($3::text IS NULL OR a.type = $3)
  AND ($4::text IS NULL OR a.status = $4)
ORDER BY a.id DESC
LIMIT $5
"""
ACKNOWLEDGE = """
UPDATE alerts SET status = 'acknowledged', acknowledged_at = COALESCE($3, now()),
    acknowledged_by = $2
WHERE id = $1 AND status = 'open'
RETURNING id
"""
RESOLVE = """
UPDATE alerts SET status = 'resolved', resolved_at = COALESCE($6, now()), resolved_by = $2,
    disposition = $3, note = $4, gravity = $5,
    acknowledged_at = COALESCE(acknowledged_at, $6, now()),
    acknowledged_by = COALESCE(acknowledged_by, $2)
WHERE id = $1 AND status <> 'resolved'
RETURNING id
"""
# The feed's events: the event log's alert events (ids in commit order, adapters/outbox.py).
EVENTS_AFTER = f"""
SELECT e.id AS event_id, substr(e.name, 7) AS kind, {_COLUMNS}
FROM events e JOIN alerts a ON a.id = e.alert_id
WHERE e.id > $1 AND e.alert_id IS NOT NULL AND e.name LIKE 'alert.%'
  AND ($2::int[] IS NULL OR e.org_unit_id = ANY($2::int[]))
ORDER BY e.id
LIMIT $3
"""
EPISODE_ALERTS_SINCE = """
SELECT id, type, fence_id, episode_key, started_at, ended_at, org_unit_id, retracted_at
FROM alerts WHERE subject_id = $1 AND type = ANY($2::text[]) AND started_at > $3
"""
SET_ENDED = "UPDATE alerts SET ended_at = $2, evidence = evidence || $3::jsonb WHERE id = $1"
RESTORE = """
UPDATE alerts SET retracted_at = NULL, ended_at = $2,
    evidence = (evidence - 'retracted') || $3::jsonb
WHERE id = $1
"""
# Self-resolution and release (service/self_resolution.py): each changes an alert once.
START_GRACE = """
UPDATE alerts SET self_resolution_until = detected_at + make_interval(secs => $2)
WHERE id = $1 AND self_resolution_until IS NULL AND released_at IS NULL AND NOT self_resolved
RETURNING self_resolution_until
"""
RELEASE = """
UPDATE alerts SET released_at = $2
WHERE id = $1 AND released_at IS NULL AND NOT self_resolved
RETURNING id
"""
SELF_RESOLVE = """
UPDATE alerts SET self_resolved = true
WHERE id = $1 AND released_at IS NULL AND NOT self_resolved
RETURNING id
"""
# An officer reopens a resolved alert: the resolution goes to the evidence's history.
REOPEN = """
UPDATE alerts SET status = 'acknowledged', resolved_at = NULL, resolved_by = NULL,
    disposition = NULL, note = NULL, gravity = NULL,
    reopened_at = $2, reopened_by = $3, reopen_count = reopen_count + 1,
    evidence = jsonb_set(evidence, '{resolution_history}',
                         COALESCE(evidence -> 'resolution_history', '[]'::jsonb) || $4::jsonb)
WHERE id = $1 AND status = 'resolved'
RETURNING id
"""
LOCK = "SELECT id FROM alerts WHERE id = $1 FOR UPDATE"
# Marks, never hides: the alert stays listed and open until an officer resolves it.
RETRACT = """
UPDATE alerts SET retracted_at = now(),
    evidence = evidence || jsonb_build_object('retracted', $2::jsonb)
WHERE id = $1 AND retracted_at IS NULL
"""


async def apply(
    conn: asyncpg.Connection, ops: Iterable[AlertOp], detected_at: datetime | None = None
) -> list[AppliedChange]:
    """Write alert openings and endings; returns the changes made (an op that changes
    nothing, such as re-opening a known episode, yields none). Opening an episode whose
    alert a replay retracted restores that alert (``reopened``). The caller appends the
    changes' events (``domain.events.event_of``) last in its transaction. New alerts are
    detected at ``detected_at``: the caller's clock (the transaction's start when None)."""
    events: list[AppliedChange] = []
    for op in ops:
        if isinstance(op, AlertOpen):
            alert_id = await conn.fetchval(
                OPEN,
                op.subject_id,
                op.org_unit_id,
                op.type,
                op.severity,
                op.fence_id,
                op.episode_key,
                op.started_at,
                op.evidence,
                detected_at,
            )
            kind = AlertChange.OPENED
            if alert_id is None:
                alert_id = await conn.fetchval(UNRETRACT, op.subject_id, op.type, op.episode_key)
                kind = AlertChange.REOPENED
        else:
            alert_id = await conn.fetchval(
                END, op.subject_id, op.type, op.episode_key, op.ended_at, op.evidence
            )
            kind = AlertChange.ENDED
        if alert_id is not None:
            events.append(AppliedChange(alert_id, kind, op))
    return events


async def reconcile_episodes(
    conn: asyncpg.Connection,
    subject_id: int,
    types: list[str],
    since: datetime,
    replayed: list[AlertOp],
    late_fixes: list[dict[str, Any]] | None = None,
    late_count: int = 0,
    detected_at: datetime | None = None,
) -> list[AppliedChange]:
    """Make a subject's episode alerts started after ``since`` match a replay's.

    A replayed episode already raised keeps its alert (its end is corrected if it moved); a
    new one is raised; a raised one the replay does not confirm is *retracted*: officers may
    already have seen it, so it stays listed and open, its evidence saying why and naming the
    late fixes that disproved it (``late_fixes``, the first of ``late_count``, as evidence
    dicts), until an officer resolves it. A retracted one that a later replay confirms again
    is restored (event ``reopened``): its episode key is taken, so raising it anew would
    change nothing. Returns the changes made.
    """
    existing = {
        (r["type"], r["episode_key"]): r
        for r in await conn.fetch(EPISODE_ALERTS_SINCE, subject_id, types, since)
    }
    opens = [op for op in replayed if isinstance(op, AlertOpen)]
    ends = {(op.type, op.episode_key): op for op in replayed if isinstance(op, AlertEnd)}
    events: list[AppliedChange] = []
    for op in opens:
        key = (op.type, op.episode_key)
        end = ends.get(key)
        row = existing.pop(key, None)
        if row is None:
            events.extend(await apply(conn, [op] + ([end] if end else []), detected_at))
            continue
        wanted = end.ended_at if end else None
        if row["retracted_at"] is not None:
            await conn.execute(RESTORE, row["id"], wanted, end.evidence if end else {})
            events.append(AppliedChange(row["id"], AlertChange.REOPENED, op))
        elif row["ended_at"] != wanted:
            await conn.execute(SET_ENDED, row["id"], wanted, end.evidence if end else {})
            kind = AlertChange.ENDED if wanted else AlertChange.REOPENED
            events.append(AppliedChange(row["id"], kind, op))
    for row in existing.values():
        if row["retracted_at"] is not None:
            continue  # retracted by an earlier replay
        mark = _retraction(row, opens, ends, since, late_fixes or [], late_count)
        await conn.execute(RETRACT, row["id"], mark)
        gone = AlertEnd(
            subject_id, row["org_unit_id"], AlertType(row["type"]), row["episode_key"], since, {}
        )
        events.append(AppliedChange(row["id"], AlertChange.RETRACTED, gone))
    return events


def _retraction(
    row: asyncpg.Record,
    opens: list[AlertOpen],
    ends: dict[tuple[AlertType, str], AlertEnd],
    since: datetime,
    late_fixes: list[dict[str, Any]],
    late_count: int,
) -> dict[str, Any]:
    """Why a replay disproved an alert's episode, for its evidence: the late fixes replayed
    and, when the replay confirmed an overlapping episode of the same rule instead (the same
    breach, seen to start at another time), that episode."""
    # A rule is its alert type and fence (the activity area, one exclusion zone, or none
    # for the curfew), so the same rule's episodes are found without reading their keys.
    start, end = row["started_at"], row["ended_at"]
    instead = None
    for op in opens:
        if op.type != row["type"] or op.fence_id != row["fence_id"]:
            continue
        other = ends.get((op.type, op.episode_key))
        other_end = other.ended_at if other else None
        if (end is None or op.started_at <= end) and (other_end is None or other_end >= start):
            instead = {
                "episode_key": op.episode_key,
                "started_at": iso(op.started_at),
                "ended_at": iso(other_end),
            }
            break
    why = (
        "fixes that arrived later show the breach started at another time"
        if instead
        else "fixes that arrived later show the breach was not confirmed"
    )
    return {
        "why": why,
        "replayed_from": iso(since),
        "late_fixes": late_fixes,
        "late_count": late_count,
        "superseded_by": instead,
    }


def to_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "subject_id": row["subject_id"],
        "type": row["type"],
        "severity": row["severity"],
        "status": row["status"],
        "started_at": iso(row["started_at"]),
        "detected_at": iso(row["detected_at"]),
        "ended_at": iso(row["ended_at"]),
        "fence_id": row["fence_id"],
        "evidence": row["evidence"],
        "acknowledged_at": iso(row["acknowledged_at"]),
        "acknowledged_by": row["acknowledged_by"],
        "resolved_at": iso(row["resolved_at"]),
        "resolved_by": row["resolved_by"],
        "disposition": row["disposition"],
        "note": row["note"],
        "retracted_at": iso(row["retracted_at"]),
        "gravity": row["gravity"],
        "incident_id": row["incident_id"],
        "self_resolution_until": iso(row["self_resolution_until"]),
        "self_resolved": row["self_resolved"],
        "released_at": iso(row["released_at"]),
        "reopened_at": iso(row["reopened_at"]),
        "reopen_count": row["reopen_count"],
    }


async def get(conn: asyncpg.Connection, alert_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(GET, alert_id)
    if row is None:
        raise NotFound(f"alert {alert_id}")
    return row


async def list_alerts(
    conn: asyncpg.Connection,
    scope: frozenset[int] | None,
    *,
    subject_id: int | None,
    type_: str | None,
    status: str | None,
    limit: int,
    include_retracted: bool = False,
) -> list[asyncpg.Record]:
    """Alerts newest first. Retracted alerts are listed like the others whatever
    ``include_retracted`` says (kept for callers that still pass it): an alert officers could
    see is never hidden; its ``retracted_at`` and evidence say a replay disproved it."""
    ids = list(scope) if scope is not None else None
    return list(await conn.fetch(LIST, ids, subject_id, type_, status, limit))


async def acknowledge(
    conn: asyncpg.Connection, alert_id: int, officer_id: int, at: datetime | None = None
) -> bool:
    """Acknowledge an open alert at ``at`` (the service's clock; the transaction's start
    when None); False when it was not open."""
    changed = await conn.fetchval(ACKNOWLEDGE, alert_id, officer_id, at)
    return changed is not None


async def resolve(
    conn: asyncpg.Connection,
    alert_id: int,
    officer_id: int,
    disposition: str,
    note: str | None,
    gravity: str,
    at: datetime | None = None,
) -> bool:
    """Resolve an alert at ``at`` (the service's clock; the transaction's start when None);
    False when it was resolved already."""
    changed = await conn.fetchval(RESOLVE, alert_id, officer_id, disposition, note, gravity, at)
    return changed is not None


class PostgresAlertLifecycle:
    """The alert changes beyond the contract's: self-resolution grace, release to officers,
    self-resolution, and an officer's reopening. Each update changes an alert at most once
    (its condition fails the second time), so a consumer or timer that runs again is
    harmless."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def lock(self, alert_id: int) -> None:
        """Hold the alert's row until the unit of work ends (release and self-resolution
        decided by one process at a time)."""
        await self._conn.execute(LOCK, alert_id)

    async def start_grace(self, alert_id: int, grace_s: float) -> datetime | None:
        """Set ``self_resolution_until`` to the alert's ``detected_at`` plus ``grace_s``;
        None when a grace was set already or the alert is released or self-resolved."""
        until: datetime | None = await self._conn.fetchval(START_GRACE, alert_id, grace_s)
        return until

    async def release(self, alert_id: int, at: datetime) -> bool:
        """Mark the alert as having reached officers at ``at``; False when it had already,
        or self-resolved."""
        return await self._conn.fetchval(RELEASE, alert_id, at) is not None

    async def self_resolve(self, alert_id: int) -> bool:
        """Mark the alert self-resolved; False when it was released or self-resolved."""
        return await self._conn.fetchval(SELF_RESOLVE, alert_id) is not None

    async def reopen(
        self, alert_id: int, at: datetime, officer_id: int, previous: dict[str, Any]
    ) -> bool:
        """Reopen a resolved alert (back to acknowledged), keeping ``previous`` (the
        resolution undone) in its evidence's ``resolution_history``; False when it is not
        resolved."""
        changed = await self._conn.fetchval(REOPEN, alert_id, at, officer_id, [previous])
        return changed is not None


async def events_after(
    conn: asyncpg.Connection, after_id: int, scope: frozenset[int] | None, limit: int = 500
) -> list[asyncpg.Record]:
    ids = list(scope) if scope is not None else None
    return list(await conn.fetch(EVENTS_AFTER, after_id, ids, limit))


async def last_event_id(conn: asyncpg.Connection) -> int:
    """Where a feed that starts now begins: the event log's newest position."""
    return await outbox.last_id(conn)
