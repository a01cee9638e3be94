"""The append-only audit log (RULES.md §4): reads of location history, exports, decisions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from correction_monitor.domain.models import AuditEntry, AuditRecord
from correction_monitor.metrics import AUDIT_WRITES

INSERT = """
INSERT INTO audit_log (officer_id, action, subject_id, purpose, request_id, detail)
VALUES ($1, $2, $3, $4, $5, $6)
"""
# Within a scope: entries about a subject of those units, and entries about no single subject
# (an alert list across subjects, the alert feed) written by an officer of those units whose
# own jurisdiction lies within them (every role but admin sees at most its unit's subtree).
LIST = """
SELECT a.id, a.at, a.officer_id, a.action, a.subject_id, a.purpose, a.request_id, a.detail
FROM audit_log a
LEFT JOIN subjects s ON s.id = a.subject_id
LEFT JOIN officers o ON o.id = a.officer_id
WHERE ($1::int IS NULL OR a.subject_id = $1)
  AND ($3::int[] IS NULL OR s.org_unit_id = ANY($3::int[])
       OR (a.subject_id IS NULL AND o.role <> 'admin' AND o.org_unit_id = ANY($3::int[])))
ORDER BY a.id DESC LIMIT $2
"""


async def record(
    conn: asyncpg.Connection,
    *,
    officer_id: int | None,
    action: str,
    subject_id: int | None = None,
    purpose: str | None = None,
    request_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(INSERT, officer_id, action, subject_id, purpose, request_id, detail or {})
    AUDIT_WRITES.labels(action).inc()


async def write(conn: asyncpg.Connection, entries: Sequence[AuditEntry]) -> None:
    """Append ``entries`` in order, in the caller's transaction."""
    for entry in entries:
        await record(
            conn,
            officer_id=entry.officer_id,
            action=entry.action,
            subject_id=entry.subject_id,
            purpose=entry.purpose,
            request_id=entry.request_id,
            detail=entry.detail,
        )


async def entries(
    conn: asyncpg.Connection,
    *,
    subject_id: int | None = None,
    limit: int = 100,
    scope: frozenset[int] | None = None,
) -> list[AuditRecord]:
    """Newest first; with ``scope``, only entries about subjects of those org units, or about
    no single subject and written by an officer (not an administrator) of those units."""
    rows = await conn.fetch(LIST, subject_id, limit, list(scope) if scope is not None else None)
    return [
        AuditRecord(
            r["id"],
            r["at"],
            AuditEntry(
                r["officer_id"],
                r["action"],
                r["subject_id"],
                r["purpose"],
                r["request_id"],
                r["detail"],
            ),
        )
        for r in rows
    ]
