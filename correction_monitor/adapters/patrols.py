"""Night patrols in PostgreSQL: teams (``patrol_teams``), plans (``patrol_plans``) and their
stops (``patrol_stops``), and what the rules read to plan a night: subjects with their last
visit, approved leaves, alerts, approved 训诫/警告 and the teams' recent loads.

A visit is a stop with any outcome but ``no_answer``, counted on its plan's night. A stop of
a plan for a night from ``today`` on with no outcome yet is a visit expected to happen: a
plan for a later night counts from it, as a forecast does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from correction_monitor.adapters.errors import NotFound
from correction_monitor.adapters.org_units import subtree_ids
from correction_monitor.adapters.outbox import lock_key
from correction_monitor.domain.patrol import (
    NewPatrolTeam,
    PatrolTeam,
    Plan,
    PlanRoute,
    PlanStop,
    RiskFacts,
)

_TEAM = """id, org_unit_id, name, start_lon, start_lat, start_crs, capacity, window_start,
window_end, speed_kmh, stop_minutes, active"""
INSERT_TEAM = f"""
INSERT INTO patrol_teams (org_unit_id, name, start_lon, start_lat, start_crs, capacity,
    window_start, window_end, speed_kmh, stop_minutes, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (org_unit_id, name) DO NOTHING
RETURNING {_TEAM}
"""
TEAMS_IN = f"SELECT {_TEAM} FROM patrol_teams WHERE org_unit_id = ANY($1::int[]) ORDER BY id"
ALL_TEAMS = f"SELECT {_TEAM} FROM patrol_teams ORDER BY id"
UNITS_WITH_TEAMS = "SELECT DISTINCT org_unit_id FROM patrol_teams WHERE active ORDER BY 1"

SUBJECTS = """
SELECT s.id, s.supervision_level, s.term_start, s.term_end, s.home_lon, s.home_lat, s.status,
  (SELECT max(p.night) FROM patrol_stops ps JOIN patrol_plans p ON p.id = ps.plan_id
    WHERE ps.subject_id = s.id AND p.night < $2 AND ps.outcome IS NOT NULL
      AND ps.outcome <> 'no_answer') AS last_visit,
  (SELECT max(p.night) FROM patrol_stops ps JOIN patrol_plans p ON p.id = ps.plan_id
    WHERE ps.subject_id = s.id AND p.night < $2 AND p.night >= $3
      AND ps.outcome IS NULL) AS expected_visit
FROM subjects s
WHERE s.org_unit_id = ANY($1::int[])
ORDER BY s.id
"""
LEAVES = """
SELECT subject_id, starts_at, ends_at FROM leaves
WHERE status = 'approved' AND subject_id = ANY($1::int[]) AND starts_at <= $3 AND ends_at >= $2
ORDER BY subject_id, starts_at
"""
ALERT_RISK = """
SELECT subject_id,
  count(*) FILTER (WHERE status <> 'resolved') AS open,
  count(*) FILTER (WHERE started_at >= $2) AS recent,
  count(*) FILTER (WHERE type = 'curfew_violation' AND started_at >= $2) AS curfew,
  count(*) FILTER (WHERE type = 'lost_contact' AND started_at >= $2) AS lost,
  count(*) FILTER (WHERE type = 'device_integrity'
                   AND (started_at >= $2 OR status <> 'resolved')) AS integrity
FROM alerts
WHERE subject_id = ANY($1::int[]) AND started_at <= $3
  AND (status <> 'resolved' OR started_at >= $2)
  AND disposition IS DISTINCT FROM 'false_alarm'
GROUP BY subject_id
"""
SANCTIONS = """
SELECT DISTINCT ON (subject_id) subject_id, measure, decided_at FROM proposals
WHERE subject_id = ANY($1::int[]) AND status = 'approved'
  AND measure IN ('reprimand', 'warning') AND decided_at >= $2 AND decided_at <= $3
ORDER BY subject_id, decided_at DESC
"""
RECENT_LOADS = """
SELECT ps.team_id, count(*) AS stops FROM patrol_stops ps JOIN patrol_plans p ON p.id = ps.plan_id
WHERE ps.team_id = ANY($1::int[]) AND p.night >= $2 AND p.night < $3
GROUP BY ps.team_id
"""

_PLAN = "id, org_unit_id, night, seed, status, routes, unassigned, solver"
PLAN_BY_ID = f"SELECT {_PLAN} FROM patrol_plans WHERE id = $1"
PLAN_BY_NIGHT = f"SELECT {_PLAN} FROM patrol_plans WHERE org_unit_id = $1 AND night = $2"
PLAN_IDS = """
SELECT id FROM patrol_plans
WHERE ($1::int[] IS NULL OR org_unit_id = ANY($1::int[]))
  AND ($2::date IS NULL OR night = $2) AND ($3::text IS NULL OR status = $3)
ORDER BY night DESC, id DESC LIMIT $4
"""
PLAN_EXISTS = "SELECT EXISTS (SELECT 1 FROM patrol_plans WHERE org_unit_id = $1 AND night = $2)"
STOPS = """
SELECT team_id, subject_id, seq, eta, reasons FROM patrol_stops WHERE plan_id = $1
ORDER BY team_id, seq
"""
INSERT_PLAN = """
INSERT INTO patrol_plans (org_unit_id, night, seed, status, routes, unassigned, solver,
    created_at, created_by)
VALUES ($1, $2, $3, 'draft', $4, $5, $6, $7, $8)
RETURNING id
"""
INSERT_STOP = """
INSERT INTO patrol_stops (plan_id, team_id, subject_id, seq, eta, reasons)
VALUES ($1, $2, $3, $4, $5, $6)
"""
UPDATE_PLAN = "UPDATE patrol_plans SET routes = $2, unassigned = $3 WHERE id = $1"
DELETE_STOPS = "DELETE FROM patrol_stops WHERE plan_id = $1"
DELETE_PLAN = "DELETE FROM patrol_plans WHERE id = $1"
PUBLISH = """
UPDATE patrol_plans SET status = 'published', published_at = $2, published_by = $3
WHERE id = $1 AND status = 'draft'
"""


def _team(row: asyncpg.Record) -> PatrolTeam:
    return PatrolTeam(
        id=row["id"],
        org_unit_id=row["org_unit_id"],
        name=row["name"],
        lon=row["start_lon"],
        lat=row["start_lat"],
        crs=row["start_crs"],
        capacity=row["capacity"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        speed_kmh=row["speed_kmh"],
        stop_minutes=row["stop_minutes"],
        active=row["active"],
    )


class PostgresPatrols:
    """Teams, plans and what planning reads, on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # -- teams ---------------------------------------------------------------------------

    async def add_team(self, new: NewPatrolTeam) -> PatrolTeam | None:
        """Store a team; None when its unit has a team of that name already."""
        row = await self.conn.fetchrow(
            INSERT_TEAM,
            new.org_unit_id,
            new.name,
            new.lon,
            new.lat,
            new.crs,
            new.capacity,
            new.window_start,
            new.window_end,
            new.speed_kmh,
            new.stop_minutes,
            new.created_by,
        )
        return _team(row) if row is not None else None

    async def teams_in(self, org_unit_ids: frozenset[int] | None) -> list[PatrolTeam]:
        if org_unit_ids is None:
            return [_team(r) for r in await self.conn.fetch(ALL_TEAMS)]
        return [_team(r) for r in await self.conn.fetch(TEAMS_IN, list(org_unit_ids))]

    async def units_with_teams(self) -> list[int]:
        return [r["org_unit_id"] for r in await self.conn.fetch(UNITS_WITH_TEAMS)]

    async def subtree(self, unit_id: int) -> frozenset[int]:
        return await subtree_ids(self.conn, unit_id)

    # -- what planning reads -------------------------------------------------------------

    async def subjects(
        self, org_unit_ids: frozenset[int], night: date, today: date
    ) -> list[dict[str, Any]]:
        """The units' subjects with their last visit before ``night`` (recorded, or expected
        from a plan for a night from ``today`` on)."""
        rows = await self.conn.fetch(SUBJECTS, list(org_unit_ids), night, today)
        out = []
        for r in rows:
            last = max((d for d in (r["last_visit"], r["expected_visit"]) if d), default=None)
            home = (r["home_lon"], r["home_lat"]) if r["home_lon"] is not None else None
            out.append(
                {
                    "id": r["id"],
                    "level": r["supervision_level"],
                    "term_start": r["term_start"],
                    "term_end": r["term_end"],
                    "home": home,
                    "active": r["status"] == "active",
                    "last_visit": last,
                }
            )
        return out

    async def approved_leaves(
        self, subject_ids: Sequence[int], start: datetime, end: datetime
    ) -> dict[int, list[tuple[datetime, datetime]]]:
        """Approved leaves of the subjects meeting ``[start, end]``."""
        out: dict[int, list[tuple[datetime, datetime]]] = {}
        for r in await self.conn.fetch(LEAVES, list(subject_ids), start, end):
            out.setdefault(r["subject_id"], []).append((r["starts_at"], r["ends_at"]))
        return out

    async def risks(
        self, subject_ids: Sequence[int], since: datetime, sanctions_since: datetime, at: datetime
    ) -> dict[int, RiskFacts]:
        """Alerts since ``since`` or still open, and the latest approved 训诫/警告 since
        ``sanctions_since``, as of ``at``; false alarms never count."""
        ids = list(subject_ids)
        alerts = {r["subject_id"]: r for r in await self.conn.fetch(ALERT_RISK, ids, since, at)}
        sanctions = {
            r["subject_id"]: r for r in await self.conn.fetch(SANCTIONS, ids, sanctions_since, at)
        }
        out = {}
        for sid in set(alerts) | set(sanctions):
            a, s = alerts.get(sid), sanctions.get(sid)
            out[sid] = RiskFacts(
                open_alerts=a["open"] if a else 0,
                recent_alerts=a["recent"] if a else 0,
                curfew_anomalies=a["curfew"] if a else 0,
                lost_contact=a["lost"] if a else 0,
                device_integrity=a["integrity"] if a else 0,
                sanction=s["measure"] if s else None,
                sanction_on=s["decided_at"].date() if s else None,
            )
        return out

    async def recent_loads(
        self, team_ids: Sequence[int], since: date, until: date
    ) -> dict[int, int]:
        """Stops per team on plans for nights in ``[since, until)``."""
        rows = await self.conn.fetch(RECENT_LOADS, list(team_ids), since, until)
        return {r["team_id"]: r["stops"] for r in rows}

    # -- plans ---------------------------------------------------------------------------

    async def lock_night(self, org_unit_id: int, night: date) -> None:
        """Serialise planning of one unit's night until the transaction ends."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock($1)", lock_key(f"cm:patrol:{org_unit_id}:{night}")
        )

    async def _plan(self, row: asyncpg.Record | None) -> Plan:
        if row is None:
            raise NotFound("patrol plan")
        stops: dict[int, list[PlanStop]] = {}
        for s in await self.conn.fetch(STOPS, row["id"]):
            stops.setdefault(s["team_id"], []).append(
                PlanStop(s["subject_id"], s["seq"], s["eta"], tuple(s["reasons"]))
            )
        routes = tuple(
            PlanRoute(
                team_id=r["team_id"],
                stops=tuple(stops.get(r["team_id"], ())),
                distance_m=r["distance_m"],
                duration_s=r["duration_s"],
            )
            for r in row["routes"]
        )
        return Plan(
            id=row["id"],
            org_unit_id=row["org_unit_id"],
            night=row["night"],
            seed=row["seed"],
            status=row["status"],
            routes=routes,
            unassigned=tuple((u["subject_id"], u["reason"]) for u in row["unassigned"]),
            solver=row["solver"],
        )

    async def get_plan(self, plan_id: int, *, for_update: bool = False) -> Plan:
        sql = PLAN_BY_ID + (" FOR UPDATE" if for_update else "")
        return await self._plan(await self.conn.fetchrow(sql, plan_id))

    async def plan_for(self, org_unit_id: int, night: date) -> Plan | None:
        row = await self.conn.fetchrow(PLAN_BY_NIGHT + " FOR UPDATE", org_unit_id, night)
        return await self._plan(row) if row is not None else None

    async def plan_ids(
        self,
        org_unit_ids: frozenset[int] | None,
        night: date | None,
        status: str | None,
        limit: int,
    ) -> list[int]:
        scope = sorted(org_unit_ids) if org_unit_ids is not None else None
        rows = await self.conn.fetch(PLAN_IDS, scope, night, status, limit)
        return [row["id"] for row in rows]

    async def plan_exists(self, org_unit_id: int, night: date) -> bool:
        return bool(await self.conn.fetchval(PLAN_EXISTS, org_unit_id, night))

    async def delete_plan(self, plan_id: int) -> None:
        await self.conn.execute(DELETE_PLAN, plan_id)

    async def add_plan(self, plan: Plan, created_at: datetime, created_by: int | None) -> int:
        plan_id: int = await self.conn.fetchval(
            INSERT_PLAN,
            plan.org_unit_id,
            plan.night,
            plan.seed,
            _routes_json(plan.routes),
            _unassigned_json(plan.unassigned),
            plan.solver,
            created_at,
            created_by,
        )
        await self._add_stops(plan_id, plan.routes)
        return plan_id

    async def replace_routes(self, plan: Plan) -> None:
        """Store ``plan``'s routes and unassigned in place of its stored ones."""
        assert plan.id is not None
        await self.conn.execute(DELETE_STOPS, plan.id)
        await self.conn.execute(
            UPDATE_PLAN, plan.id, _routes_json(plan.routes), _unassigned_json(plan.unassigned)
        )
        await self._add_stops(plan.id, plan.routes)

    async def _add_stops(self, plan_id: int, routes: Sequence[PlanRoute]) -> None:
        await self.conn.executemany(
            INSERT_STOP,
            [
                (plan_id, r.team_id, s.subject_id, s.seq, s.eta, list(s.reasons))
                for r in routes
                for s in r.stops
            ],
        )

    async def publish(self, plan_id: int, at: datetime, by: int) -> bool:
        status: str = await self.conn.execute(PUBLISH, plan_id, at, by)
        return status == "UPDATE 1"


def _routes_json(routes: Sequence[PlanRoute]) -> list[dict[str, Any]]:
    return [
        {"team_id": r.team_id, "distance_m": r.distance_m, "duration_s": r.duration_s}
        for r in routes
    ]


def _unassigned_json(unassigned: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    return [{"subject_id": sid, "reason": reason} for sid, reason in unassigned]
