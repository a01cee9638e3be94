"""Night patrol plans stored as plan creation stores them: a team, a plan and its stops."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from tests.conftest import unique
from tests.e2e.helpers import World, sql_row

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOME = {"lat": 39.91, "lon": 116.31, "radius_m": 100}
TEAM_START = (116.30, 39.90)  # lon, lat


@dataclass(frozen=True)
class Plan:
    plan_id: int
    team_id: int
    team: str
    night: date


async def make_plan(
    client: TestClient[Any, Any],
    world: World,
    night: date,
    subject_ids: list[int],
    *,
    eta: datetime,
) -> Plan:
    """A plan of ``world``'s station for ``night``: one team visiting ``subject_ids`` in
    order, ten minutes apart from ``eta``."""
    team = unique("巡查一组-")
    team_row = await sql_row(
        client,
        """
        INSERT INTO patrol_teams (org_unit_id, name, start_lon, start_lat, capacity,
            window_start, window_end, speed_kmh, stop_minutes)
        SELECT id, $2, $3, $4, 8, '20:00', '02:00', 30, 15 FROM org_units WHERE code = $1
        RETURNING id
        """,
        world.station,
        team,
        TEAM_START[0],
        TEAM_START[1],
    )
    team_id: int = team_row["id"]
    routes = [{"team_id": team_id, "distance_m": 2450.5, "duration_s": 3600.0}]
    plan_row = await sql_row(
        client,
        """
        INSERT INTO patrol_plans (org_unit_id, night, seed, status, routes, created_at)
        SELECT id, $2, 7, 'published', $3::jsonb, now() FROM org_units WHERE code = $1
        RETURNING id
        """,
        world.station,
        night,
        routes,
    )
    plan_id: int = plan_row["id"]
    for seq, subject_id in enumerate(subject_ids, start=1):
        await sql_row(
            client,
            """
            INSERT INTO patrol_stops (plan_id, team_id, subject_id, seq, eta, reasons)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb)
            """,
            plan_id,
            team_id,
            subject_id,
            seq,
            eta + timedelta(minutes=10 * (seq - 1)),
            ["due", "open_alert"],
        )
    return Plan(plan_id, team_id, team, night)


async def add_subject(client: TestClient[Any, Any], world: World, name: str) -> int:
    """A second subject of ``world``'s station, with a home and no curfew."""
    row = await sql_row(
        client,
        """
        INSERT INTO subjects (name, org_unit_id, supervision_level, category, term_start,
            term_end, home_lon, home_lat, home_radius_m, home_crs)
        SELECT $2, org_unit_id, 'normal', 'probation', '2026-01-01', '2027-12-31',
            116.33, 39.92, 100, 'wgs84'
        FROM subjects WHERE id = $1
        RETURNING id
        """,
        world.subject_id,
        name,
    )
    subject_id: int = row["id"]
    return subject_id
