"""Proposals of the legal ladder in PostgreSQL (``proposals``), and what the ladder reads to
make them: a resolved alert with its subject, the subject's approved responses, its
confirmed lost-contact episodes, and the subjects clean long enough at normal.

``dedupe_key`` is unique: a proposal inserted for a ground already proposed (a repeated
event, a second run of the daily job) is not inserted again, and :meth:`PostgresProposals.add`
answers None.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.alerts import Gravity
from correction_monitor.domain.ladder import (
    CleanSubject,
    ConfirmedAlert,
    LostContactEpisode,
    Measure,
    NewProposal,
    Proposal,
    ProposalStatus,
)
from correction_monitor.domain.models import SubjectCategory, SupervisionLevel

_COLUMNS = """
id, subject_id, org_unit_id, measure, article, grounds, alert_ids, basis, proposed_level,
status, created_at, decided_at, decided_by, decision_note, dedupe_key
"""
INSERT = f"""
INSERT INTO proposals (subject_id, org_unit_id, measure, article, grounds, alert_ids, basis,
    proposed_level, created_at, dedupe_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING {_COLUMNS}
"""
GET = f"SELECT {_COLUMNS} FROM proposals WHERE id = $1"
GET_FOR_UPDATE = f"SELECT {_COLUMNS} FROM proposals WHERE id = $1 FOR UPDATE"
LIST = f"""
SELECT {_COLUMNS} FROM proposals
WHERE ($1::int[] IS NULL OR org_unit_id = ANY($1::int[]))
  AND ($2::text IS NULL OR status = $2)
  AND ($3::int IS NULL OR subject_id = $3)
ORDER BY id DESC LIMIT $4
"""
DECIDE = f"""
UPDATE proposals SET status = $2, decided_by = $3, decided_at = $4, decision_note = $5
WHERE id = $1 AND status = 'pending'
RETURNING {_COLUMNS}
"""
APPROVED_COUNTS = """
SELECT measure, count(*) AS n FROM proposals
WHERE subject_id = $1 AND status = 'approved'
GROUP BY measure
"""
PENDING_LEVEL_CHANGE = """
SELECT EXISTS (
    SELECT 1 FROM proposals
    WHERE subject_id = $1 AND status = 'pending' AND measure = 'level_change'
      AND proposed_level = $2
)
"""
RESOLVED_ALERT = """
SELECT a.id, a.type, a.gravity, a.disposition, a.started_at, a.ended_at, a.resolved_at,
    a.subject_id, s.org_unit_id, s.category, s.supervision_level, s.term_start, o.timezone
FROM alerts a
JOIN subjects s ON s.id = a.subject_id
JOIN org_units o ON o.id = s.org_unit_id
WHERE a.id = $1
"""
LOST_CONTACT_EPISODES = """
SELECT id, started_at, ended_at, resolved_at FROM alerts
WHERE subject_id = $1 AND type = 'lost_contact' AND disposition = 'confirmed'
ORDER BY started_at, id
"""
# Subjects at normal clean since no later than $1: since the latest of their term's first
# instant (local midnight), their enrolment, the end of their last confirmed breach and
# their last level change (the audit log's subject.change entries that changed it). Those
# already proposed lenient for that clean span (domain/ladder.py ``lenient_key``), or with a
# lenient proposal pending, are left out, so each run sees only subjects still to propose.
CLEAN_AT_NORMAL = """
SELECT * FROM (
    SELECT s.id, s.org_unit_id, s.supervision_level,
        greatest(
            s.term_start::timestamp AT TIME ZONE o.timezone,
            s.created_at,
            (SELECT max(coalesce(a.ended_at, a.started_at)) FROM alerts a
             WHERE a.subject_id = s.id AND a.disposition = 'confirmed'),
            (SELECT max(l.at) FROM audit_log l
             WHERE l.subject_id = s.id AND l.action = 'subject.change'
               AND l.detail -> 'changes' ? 'supervision_level')
        ) AS clean_since
    FROM subjects s
    JOIN org_units o ON o.id = s.org_unit_id
    WHERE s.status = 'active' AND s.supervision_level = 'normal'
) AS c
WHERE clean_since <= $1
  AND NOT EXISTS (
    SELECT 1 FROM proposals p
    WHERE p.subject_id = c.id AND p.measure = 'level_change'
      AND (p.dedupe_key
               = 'lenient:' || c.id || ':' || floor(extract(epoch FROM c.clean_since))::bigint
           OR (p.status = 'pending' AND p.proposed_level = 'lenient'))
  )
ORDER BY id
LIMIT $2
"""


def _proposal(row: asyncpg.Record) -> Proposal:
    level = row["proposed_level"]
    return Proposal(
        id=row["id"],
        subject_id=row["subject_id"],
        org_unit_id=row["org_unit_id"],
        measure=Measure(row["measure"]),
        article=row["article"],
        grounds=tuple(row["grounds"]),
        alert_ids=tuple(row["alert_ids"]),
        basis=row["basis"],
        proposed_level=SupervisionLevel(level) if level is not None else None,
        status=ProposalStatus(row["status"]),
        created_at=row["created_at"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        decision_note=row["decision_note"],
        dedupe_key=row["dedupe_key"],
    )


async def add(conn: asyncpg.Connection, new: NewProposal) -> Proposal | None:
    """Store ``new``; None when its ``dedupe_key`` was proposed already."""
    proposed = new.proposed
    row = await conn.fetchrow(
        INSERT,
        new.subject_id,
        new.org_unit_id,
        proposed.measure.value,
        proposed.article,
        list(proposed.grounds),
        list(new.alert_ids),
        proposed.basis,
        proposed.proposed_level.value if proposed.proposed_level else None,
        new.created_at,
        new.dedupe_key,
    )
    return _proposal(row) if row is not None else None


async def get(conn: asyncpg.Connection, proposal_id: int, *, for_update: bool = False) -> Proposal:
    row = await conn.fetchrow(GET_FOR_UPDATE if for_update else GET, proposal_id)
    if row is None:
        raise NotFound(f"proposal {proposal_id}")
    return _proposal(row)


async def list_in(
    conn: asyncpg.Connection,
    org_unit_ids: frozenset[int] | None,
    *,
    status: ProposalStatus | None,
    subject_id: int | None,
    limit: int,
) -> list[Proposal]:
    rows = await conn.fetch(
        LIST,
        sorted(org_unit_ids) if org_unit_ids is not None else None,
        status.value if status is not None else None,
        subject_id,
        limit,
    )
    return [_proposal(r) for r in rows]


async def decide(
    conn: asyncpg.Connection,
    proposal_id: int,
    status: ProposalStatus,
    *,
    officer_id: int,
    at: datetime,
    note: str | None,
) -> Proposal | None:
    """Record the decision of a pending proposal; None when it is not pending."""
    row = await conn.fetchrow(DECIDE, proposal_id, status.value, officer_id, at, note)
    return _proposal(row) if row is not None else None


async def approved_counts(conn: asyncpg.Connection, subject_id: int) -> dict[str, int]:
    """The subject's approved proposals, counted by measure."""
    return {r["measure"]: r["n"] for r in await conn.fetch(APPROVED_COUNTS, subject_id)}


async def pending_level_change(
    conn: asyncpg.Connection, subject_id: int, level: SupervisionLevel
) -> bool:
    found: bool = await conn.fetchval(PENDING_LEVEL_CHANGE, subject_id, level.value)
    return found


async def resolved_alert(conn: asyncpg.Connection, alert_id: int) -> ConfirmedAlert | None:
    """The alert with its subject as the ladder reads it; None when there is no such alert."""
    row = await conn.fetchrow(RESOLVED_ALERT, alert_id)
    if row is None:
        return None
    return ConfirmedAlert(
        alert_id=row["id"],
        alert_type=row["type"],
        gravity=Gravity(row["gravity"]) if row["gravity"] is not None else None,
        disposition=row["disposition"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        resolved_at=row["resolved_at"],
        subject_id=row["subject_id"],
        org_unit_id=row["org_unit_id"],
        category=SubjectCategory(row["category"]),
        supervision_level=SupervisionLevel(row["supervision_level"]),
        term_start=row["term_start"],
        timezone=row["timezone"],
    )


async def lost_contact_episodes(
    conn: asyncpg.Connection, subject_id: int
) -> list[LostContactEpisode]:
    """The subject's confirmed lost-contact alerts, oldest first."""
    rows = await conn.fetch(LOST_CONTACT_EPISODES, subject_id)
    return [
        LostContactEpisode(r["id"], r["started_at"], r["ended_at"], r["resolved_at"]) for r in rows
    ]


async def clean_at_normal(
    conn: asyncpg.Connection, clean_since_before: datetime, limit: int
) -> list[CleanSubject]:
    """Active subjects at normal clean since ``clean_since_before`` or earlier."""
    rows = await conn.fetch(CLEAN_AT_NORMAL, clean_since_before, limit)
    return [
        CleanSubject(
            r["id"], r["org_unit_id"], SupervisionLevel(r["supervision_level"]), r["clean_since"]
        )
        for r in rows
    ]


class PostgresProposals:
    """Proposals as one unit of work's transaction sees them (``uow.proposals``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, new: NewProposal) -> Proposal | None:
        return await add(self._conn, new)

    async def get(self, proposal_id: int, *, for_update: bool = False) -> Proposal:
        return await get(self._conn, proposal_id, for_update=for_update)

    async def list_in(
        self,
        org_unit_ids: frozenset[int] | None,
        *,
        status: ProposalStatus | None,
        subject_id: int | None,
        limit: int,
    ) -> list[Proposal]:
        return await list_in(
            self._conn, org_unit_ids, status=status, subject_id=subject_id, limit=limit
        )

    async def decide(
        self,
        proposal_id: int,
        status: ProposalStatus,
        *,
        officer_id: int,
        at: datetime,
        note: str | None,
    ) -> Proposal | None:
        return await decide(
            self._conn, proposal_id, status, officer_id=officer_id, at=at, note=note
        )

    async def approved_counts(self, subject_id: int) -> dict[str, int]:
        return await approved_counts(self._conn, subject_id)

    async def pending_level_change(self, subject_id: int, level: SupervisionLevel) -> bool:
        return await pending_level_change(self._conn, subject_id, level)

    async def resolved_alert(self, alert_id: int) -> ConfirmedAlert | None:
        return await resolved_alert(self._conn, alert_id)

    async def lost_contact_episodes(self, subject_id: int) -> list[LostContactEpisode]:
        return await lost_contact_episodes(self._conn, subject_id)

    async def clean_at_normal(self, clean_since_before: datetime, limit: int) -> list[CleanSubject]:
        return await clean_at_normal(self._conn, clean_since_before, limit)
