"""Device-integrity alerts (人机分离 signals) in PostgreSQL.

New alerts are raised through ``alerts.apply`` like every other; this module finds the
unresolved ones a new signal may belong to, adds evidence to them, serialises the signals of
one subject, and reads a subject's devices as the ``new_device`` rule needs them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from correction_monitor.domain.alerts import AlertStatus, AlertType
from correction_monitor.domain.integrity import RuleAlert

UNRESOLVED = """
SELECT id, evidence FROM alerts
WHERE subject_id = $1 AND type = $2 AND status <> $3 AND evidence->>'reason' = $4
ORDER BY started_at
"""
SET_EVIDENCE = "UPDATE alerts SET evidence = $2 WHERE id = $1"
OF_RULE = """
SELECT id, status = $4 AS resolved, evidence FROM alerts
WHERE subject_id = $1 AND type = $2 AND evidence->>'rule' = $3
ORDER BY id
"""
SIGNAL_LOCK = 0x696E_7467
"""First key of the transaction-scoped advisory lock that serialises a subject's integrity
signals (the second is the subject id): two transactions raising the same rule for one
subject at once would otherwise both find no unresolved alert and open two."""
LOCK_SUBJECT = "SELECT pg_advisory_xact_lock($1, $2)"
DEVICES_HEARD = """
SELECT id, platform, last_seen_at FROM devices
WHERE subject_id = $1 AND revoked_at IS NULL
ORDER BY id
"""


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


class PostgresIntegrity:
    """The unit of work's integrity repository (``service.repositories.IntegrityRepository``)
    on one connection, in its transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def lock_subject(self, subject_id: int) -> None:
        await self._conn.execute(LOCK_SUBJECT, SIGNAL_LOCK, subject_id)

    async def alerts_of_rule(self, subject_id: int, rule: str) -> list[RuleAlert]:
        rows = await self._conn.fetch(
            OF_RULE, subject_id, AlertType.DEVICE_INTEGRITY, rule, AlertStatus.RESOLVED
        )
        return [RuleAlert(r["id"], r["resolved"], r["evidence"]) for r in rows]

    async def set_evidence(self, alert_id: int, evidence: dict[str, Any]) -> None:
        await set_evidence(self._conn, alert_id, evidence)

    async def devices_heard(self, subject_id: int) -> list[tuple[int, str | None, datetime | None]]:
        return [
            (r["id"], r["platform"], r["last_seen_at"])
            for r in await self._conn.fetch(DEVICES_HEARD, subject_id)
        ]
