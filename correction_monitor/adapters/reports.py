"""The alert-quality report in PostgreSQL: one aggregate over the alerts of a period, with
the tasks whose SLA passed (``domain/alert_quality.py`` says what each figure means)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from correction_monitor.domain.alert_quality import QualityRow

# $1 org unit ids (NULL: all), $2 from, $3 to (detected_at in [from, to)), $4 by org unit.
ALERT_QUALITY = """
WITH a AS (
    SELECT a.id, a.type, a.org_unit_id, a.status, a.disposition, a.self_resolved,
           a.released_at, a.detected_at, a.acknowledged_at, a.resolved_at,
           a.evidence ? 'patrol_contradiction' AS patrol_contradicted
    FROM alerts a
    WHERE ($1::int[] IS NULL OR a.org_unit_id = ANY($1::int[]))
      AND ($2::timestamptz IS NULL OR a.detected_at >= $2)
      AND ($3::timestamptz IS NULL OR a.detected_at < $3)
), missed AS (
    SELECT DISTINCT t.alert_id FROM tasks t
    WHERE t.escalation_level > 0 AND t.alert_id IN (SELECT id FROM a)
)
SELECT a.type, CASE WHEN $4 THEN u.code END AS org_unit,
    count(*) AS raised,
    count(*) FILTER (WHERE a.self_resolved) AS self_resolved,
    count(*) FILTER (WHERE a.released_at IS NOT NULL) AS released,
    count(*) FILTER (WHERE a.status = 'resolved') AS resolved,
    count(*) FILTER (WHERE a.status = 'resolved' AND a.disposition = 'confirmed') AS confirmed,
    count(*) FILTER (WHERE a.status = 'resolved' AND a.disposition = 'justified') AS justified,
    count(*) FILTER (WHERE a.status = 'resolved' AND a.disposition = 'false_alarm')
        AS false_alarm,
    percentile_cont(0.5) WITHIN GROUP (
        ORDER BY extract(epoch FROM a.acknowledged_at - a.detected_at))
        FILTER (WHERE a.acknowledged_at IS NOT NULL) AS ack_p50_s,
    percentile_cont(0.9) WITHIN GROUP (
        ORDER BY extract(epoch FROM a.acknowledged_at - a.detected_at))
        FILTER (WHERE a.acknowledged_at IS NOT NULL) AS ack_p90_s,
    percentile_cont(0.5) WITHIN GROUP (
        ORDER BY extract(epoch FROM a.resolved_at - a.detected_at))
        FILTER (WHERE a.status = 'resolved') AS resolve_p50_s,
    percentile_cont(0.9) WITHIN GROUP (
        ORDER BY extract(epoch FROM a.resolved_at - a.detected_at))
        FILTER (WHERE a.status = 'resolved') AS resolve_p90_s,
    count(m.alert_id) AS sla_missed,
    count(*) FILTER (WHERE a.patrol_contradicted) AS patrol_contradicted
FROM a
JOIN org_units u ON u.id = a.org_unit_id
LEFT JOIN missed m ON m.alert_id = a.id
GROUP BY 1, 2
ORDER BY 2 NULLS FIRST, 1
"""


class PostgresReports:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def alert_quality(
        self,
        org_unit_ids: frozenset[int] | None,
        start: datetime | None,
        end: datetime | None,
        *,
        by_org_unit: bool,
    ) -> list[QualityRow]:
        """Figures of the alerts raised in ``[start, end)`` in these units (all with None),
        per type, or per org unit and type; only groups with alerts."""
        ids = sorted(org_unit_ids) if org_unit_ids is not None else None
        rows = await self._conn.fetch(ALERT_QUALITY, ids, start, end, by_org_unit)
        return [
            QualityRow(
                type=r["type"],
                org_unit=r["org_unit"],
                raised=r["raised"],
                self_resolved=r["self_resolved"],
                released=r["released"],
                resolved=r["resolved"],
                confirmed=r["confirmed"],
                justified=r["justified"],
                false_alarm=r["false_alarm"],
                ack_p50_s=r["ack_p50_s"],
                ack_p90_s=r["ack_p90_s"],
                resolve_p50_s=r["resolve_p50_s"],
                resolve_p90_s=r["resolve_p90_s"],
                sla_missed=r["sla_missed"],
                patrol_contradicted=r["patrol_contradicted"],
            )
            for r in rows
        ]
