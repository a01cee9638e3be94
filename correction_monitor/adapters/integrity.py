"""Device-integrity alerts for contradicting accounts (``ingest/accounts.py``), in PostgreSQL.

New alerts are raised through ``alerts.apply`` like every other; this module only finds the
unresolved ones a new contradiction may belong to, and adds evidence to them.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from correction_monitor.domain.alerts import AlertStatus, AlertType

UNRESOLVED = """
SELECT id, evidence FROM alerts
WHERE subject_id = $1 AND type = $2 AND status <> $3 AND evidence->>'reason' = $4
ORDER BY started_at
"""
SET_EVIDENCE = "UPDATE alerts SET evidence = $2 WHERE id = $1"


async def unresolved(conn: asyncpg.Connection, subject_id: int, reason: str) -> list[Any]:
    """(id, evidence) of a subject's device-integrity alerts for ``reason`` that no officer
    has resolved, oldest first."""
    return [
        (r["id"], r["evidence"])
        for r in await conn.fetch(
            UNRESOLVED, subject_id, AlertType.DEVICE_INTEGRITY, AlertStatus.RESOLVED, reason
        )
    ]


async def set_evidence(conn: asyncpg.Connection, alert_id: int, evidence: dict[str, Any]) -> None:
    await conn.execute(SET_EVIDENCE, alert_id, evidence)
