"""Incidents in PostgreSQL: the alerts of one event grouped under one id
(``domain/incidents.py`` has the rule)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.alerts import AlertType
from correction_monitor.domain.incidents import Incident, Neighbour

# The subject's earlier trip alerts that may describe the same trip as alert $2: raised or
# ended since $4, or still going on (not ended, not resolved, of a type that ends).
NEIGHBOURS = """
SELECT id, type, detected_at, ended_at, status = 'resolved' AS resolved, incident_id
FROM alerts
WHERE subject_id = $1 AND id < $2 AND type = ANY($3::text[]) AND retracted_at IS NULL
  AND (detected_at >= $4 OR ended_at >= $4
       OR (ended_at IS NULL AND status <> 'resolved' AND type = ANY($5::text[])))
ORDER BY id DESC
LIMIT 50
"""
CREATE = """
INSERT INTO incidents (subject_id, org_unit_id, opened_at, data) VALUES ($1, $2, $3, $4)
RETURNING id
"""
ATTACH = """
UPDATE alerts SET incident_id = $1 WHERE id = ANY($2::bigint[]) AND incident_id IS NULL
RETURNING id
"""
GET = """
SELECT i.id, i.subject_id, i.org_unit_id, i.opened_at, i.data,
       COALESCE(array_agg(a.id ORDER BY a.id) FILTER (WHERE a.id IS NOT NULL), '{}') AS alert_ids,
       COALESCE(array_agg(a.type ORDER BY a.id) FILTER (WHERE a.id IS NOT NULL), '{}') AS types,
       count(a.id) FILTER (WHERE a.status <> 'resolved') AS open_alerts
FROM incidents i LEFT JOIN alerts a ON a.incident_id = i.id
WHERE i.id = $1
GROUP BY i.id
"""


class PostgresIncidents:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def neighbours(
        self,
        subject_id: int,
        alert_id: int,
        types: Sequence[str],
        since: datetime,
        ongoing_types: Sequence[str],
    ) -> list[Neighbour]:
        """The subject's alerts before ``alert_id`` of ``types`` that may correlate with it,
        newest first (at most 50)."""
        rows = await self._conn.fetch(
            NEIGHBOURS, subject_id, alert_id, list(types), since, list(ongoing_types)
        )
        return [
            Neighbour(
                r["id"],
                AlertType(r["type"]),
                r["detected_at"],
                r["ended_at"],
                r["resolved"],
                r["incident_id"],
            )
            for r in rows
        ]

    async def create(
        self, subject_id: int, org_unit_id: int, opened_at: datetime, data: dict[str, Any]
    ) -> int:
        incident_id: int = await self._conn.fetchval(
            CREATE, subject_id, org_unit_id, opened_at, data
        )
        return incident_id

    async def attach(self, incident_id: int, alert_ids: Sequence[int]) -> list[int]:
        """Put the alerts without an incident into this one; the ids attached."""
        rows = await self._conn.fetch(ATTACH, incident_id, list(alert_ids))
        return [r["id"] for r in rows]

    async def get(self, incident_id: int) -> Incident:
        row = await self._conn.fetchrow(GET, incident_id)
        if row is None:
            raise NotFound(f"incident {incident_id}")
        return Incident(
            id=row["id"],
            subject_id=row["subject_id"],
            org_unit_id=row["org_unit_id"],
            opened_at=row["opened_at"],
            alert_ids=tuple(row["alert_ids"]),
            types=tuple(row["types"]),
            open_alerts=row["open_alerts"],
            data=row["data"],
        )
