"""Night patrols over HTTP: teams, plans (create, re-plan, edit, publish), jurisdiction, the
forecast of a county, and past plans' outcomes moving the next due dates."""

from __future__ import annotations

import itertools
import random
import time as clocktime
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.domain.routing import geodesic_m
from correction_monitor.service.patrols import PlanComingNights
from correction_monitor.web.keys import POOL, SERVICES
from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import County, expect_error, make_county, sql_row

pytestmark = pytest.mark.e2e

TODAY = datetime.now(UTC).astimezone().date()
CENTRE = (116.30, 39.90)
EVERY = {"strict": 14, "normal": 30, "lenient": 90}


async def station(client: TestClient[Any, Any], county: County) -> str:
    code = unique("s")
    resp = await client.post(
        "/api/v1/org-units",
        json={
            "code": code,
            "name": "巡查所",
            "parent_code": county.code,
            "timezone": "Asia/Shanghai",
        },
        headers=bearer(county.admin_token),
    )
    assert resp.status == 201, await resp.text()
    return code


async def add_subjects(
    client: TestClient[Any, Any],
    unit: str,
    rows: Sequence[tuple[str, date, tuple[float, float] | None]],
) -> list[int]:
    """Subjects straight into the database (level, term start, home), 300 in well under a
    second."""
    async with client.app[POOL].acquire() as conn:
        unit_id = await conn.fetchval("SELECT id FROM org_units WHERE code = $1", unit)
        ids = []
        for level, start, home in rows:
            ids.append(
                await conn.fetchval(
                    """INSERT INTO subjects (name, org_unit_id, supervision_level, category,
                        term_start, term_end, home_lon, home_lat, home_radius_m, home_crs)
                       VALUES ('对象', $1, $2, 'probation', $3, $4, $5, $6, 100, 'wgs84')
                       RETURNING id""",
                    unit_id,
                    level,
                    start,
                    start + timedelta(days=700),
                    home[0] if home else None,
                    home[1] if home else None,
                )
            )
    return ids


async def add_team(
    client: TestClient[Any, Any], token: str, unit: str, name: str, **over: Any
) -> dict[str, Any]:
    body = {
        "org_unit": unit,
        "name": name,
        "start": {"lat": CENTRE[1], "lon": CENTRE[0]},
        "capacity": 6,
        "window": {"start": "20:00", "end": "01:00"},
    } | over
    resp = await client.post("/api/v1/patrol-teams", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    team: dict[str, Any] = await resp.json()
    return team


async def make_plan(
    client: TestClient[Any, Any], token: str, unit: str, night: date, seed: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"org_unit": unit, "date": night.isoformat()}
    if seed is not None:
        body["seed"] = seed
    resp = await client.post("/api/v1/patrol-plans", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    plan: dict[str, Any] = await resp.json()
    return plan


def planned(plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {s["subject_id"]: s for r in plan["routes"] for s in r["stops"]}


async def test_teams_plans_edits_and_publish(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    admin = county.admin_token
    unit = await station(client, county)
    near = [(CENTRE[0] + 0.01 * i, CENTRE[1] + 0.005 * i) for i in range(1, 7)]
    # Four due tonight (last night of their window), one not due, one without a home.
    ids = await add_subjects(
        client,
        unit,
        [("strict", TODAY - timedelta(days=14), near[i]) for i in range(4)]
        + [
            ("strict", TODAY - timedelta(days=2), near[4]),
            ("strict", TODAY - timedelta(days=20), None),
        ],
    )
    due, not_due, homeless = ids[:4], ids[4], ids[5]
    # Teams: a gcj02 start point is stored as WGS-84; defaults come from the policy.
    team = await add_team(
        client, admin, unit, "一组", start={"lat": 39.9014, "lon": 116.3063, "crs": "gcj02"}
    )
    assert team["speed_kmh"] == 30.0
    assert team["stop_minutes"] == 15.0
    assert abs(team["start"]["lon"] - 116.3) < 0.001
    assert team["start"]["given_crs"] == "gcj02"
    await add_team(client, admin, unit, "二组", capacity=2)
    resp = await client.post(
        "/api/v1/patrol-teams",
        json={
            "org_unit": unit,
            "name": "一组",
            "start": {"lat": 39.9, "lon": 116.3},
            "capacity": 3,
            "window": {"start": "20:00", "end": "23:00"},
        },
        headers=bearer(admin),
    )
    await expect_error(resp, 409, "team_exists")
    resp = await client.post(
        "/api/v1/patrol-teams",
        json={
            "org_unit": unit,
            "name": "x",
            "start": {"lat": 39.9, "lon": 116.3},
            "capacity": 0,
            "window": {"start": "20:00", "end": "23:00"},
        },
        headers=bearer(admin),
    )
    await expect_error(resp, 400)
    resp = await client.get(
        "/api/v1/patrol-teams", params={"org_unit": unit}, headers=bearer(admin)
    )
    assert [t["name"] for t in (await resp.json())["teams"]] == ["一组", "二组"]

    plan = await make_plan(client, admin, unit, TODAY, seed=1234)
    assert list(plan) == ["id", "org_unit", "date", "seed", "status", "routes", "unassigned"]
    assert (plan["org_unit"], plan["date"], plan["seed"], plan["status"]) == (
        unit,
        TODAY.isoformat(),
        1234,
        "draft",
    )
    stops = planned(plan)
    assert set(stops) == set(due)
    assert not_due not in stops
    assert homeless not in stops
    for s in stops.values():
        assert s["reasons"][0]["code"] == "last_night_of_window"
        assert {"code": "new_intake"}.keys() <= s["reasons"][1].keys()
    for route in plan["routes"]:
        assert list(route) == ["team_id", "stops", "distance_m", "duration_s"]
        assert [s["seq"] for s in route["stops"]] == list(range(1, len(route["stops"]) + 1)) or [
            s["seq"] for s in route["stops"]
        ] == list(range(len(route["stops"])))
    # The draw is logged: the same seed and state give the same plan.
    again = await make_plan(client, admin, unit, TODAY, seed=1234)
    assert again["id"] != plan["id"]
    assert planned(again).keys() == stops.keys()
    assert {r["team_id"]: [s["subject_id"] for s in r["stops"]] for r in again["routes"]} == {
        r["team_id"]: [s["subject_id"] for s in r["stops"]] for r in plan["routes"]
    }
    resp = await client.get(f"/api/v1/patrol-plans/{plan['id']}", headers=bearer(admin))
    await expect_error(resp, 404)  # replaced
    drawn = await make_plan(client, admin, unit, TODAY)
    row = await sql_row(client, "SELECT seed FROM patrol_plans WHERE id = $1", drawn["id"])
    assert row["seed"] == drawn["seed"]
    # Dates out of range.
    for night in (TODAY - timedelta(days=8), TODAY + timedelta(days=31)):
        resp = await client.post(
            "/api/v1/patrol-plans",
            json={"org_unit": unit, "date": night.isoformat()},
            headers=bearer(admin),
        )
        await expect_error(resp, 400, "invalid_date")
    resp = await client.post(
        "/api/v1/patrol-plans", json={"org_unit": unit, "date": "tomorrow"}, headers=bearer(admin)
    )
    await expect_error(resp, 400)

    # Edits of the draft need a reason; each is audited.
    pid = drawn["id"]
    victim = due[0]
    resp = await client.post(
        f"/api/v1/patrol-plans/{pid}/edits",
        json={"op": "remove", "subject_id": victim, "reason": " "},
        headers=bearer(admin),
    )
    await expect_error(resp, 400)
    resp = await client.post(
        f"/api/v1/patrol-plans/{pid}/edits",
        json={"op": "remove", "subject_id": victim, "reason": "在医院住院"},
        headers=bearer(admin),
    )
    assert resp.status == 200, await resp.text()
    edited = await resp.json()
    assert victim not in planned(edited)
    assert {"subject_id": victim, "reason": "removed_by_supervisor: 在医院住院"} in edited[
        "unassigned"
    ]
    resp = await client.post(
        f"/api/v1/patrol-plans/{pid}/edits",
        json={
            "op": "swap",
            "subject_id": due[1],
            "with_subject_id": not_due,
            "reason": "近期有举报",
        },
        headers=bearer(admin),
    )
    assert resp.status == 200, await resp.text()
    swapped = planned(await resp.json())
    assert not_due in swapped
    assert due[1] not in swapped
    assert swapped[not_due]["reasons"][0] == {
        "code": "swapped_in_by_supervisor",
        "detail": "近期有举报",
        "weight": 0.0,
    }
    resp = await client.post(
        f"/api/v1/patrol-plans/{pid}/edits",
        json={"op": "add", "subject_id": homeless, "reason": "x"},
        headers=bearer(admin),
    )
    await expect_error(resp, 400, "not_plannable")
    resp = await client.post(
        f"/api/v1/patrol-plans/{pid}/edits",
        json={"op": "add", "subject_id": victim, "reason": "出院了"},
        headers=bearer(admin),
    )
    assert resp.status == 200, await resp.text()
    final = await resp.json()
    assert victim in planned(final)
    for route in final["routes"]:
        team_row = await sql_row(
            client, "SELECT start_lon, start_lat FROM patrol_teams WHERE id = $1", route["team_id"]
        )
        homes = dict(zip(ids[:5], near[:5], strict=True))
        path = [(team_row["start_lon"], team_row["start_lat"])]
        path += [homes[s["subject_id"]] for s in sorted(route["stops"], key=lambda s: s["seq"])]
        path.append(path[0])
        length = sum(geodesic_m(*a, *b) for a, b in itertools.pairwise(path))
        assert route["distance_m"] == pytest.approx(length, rel=0.01)
    audits = await sql_row(
        client,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'patrol_plan.edit'"
        " AND detail->>'plan_id' = $1",
        str(pid),
    )
    assert audits["n"] == 3

    # Jurisdiction: another county's admin sees nothing of it.
    _, other_token = await officers.create("county_admin", unique("c"))
    resp = await client.get(f"/api/v1/patrol-plans/{pid}", headers=bearer(other_token))
    await expect_error(resp, 404)
    resp = await client.post(
        "/api/v1/patrol-plans",
        json={"org_unit": unit, "date": TODAY.isoformat()},
        headers=bearer(other_token),
    )
    await expect_error(resp, 403)
    resp = await client.post(f"/api/v1/patrol-plans/{pid}/publish", headers=bearer(other_token))
    await expect_error(resp, 404)
    # An officer of the station reads it (audited as preparation) but cannot publish.
    _, officer_token = await officers.create("officer", unit, parent=county.code)
    resp = await client.get(f"/api/v1/patrol-plans/{pid}", headers=bearer(officer_token))
    assert resp.status == 200
    assert (await resp.json())["id"] == pid
    read = await sql_row(
        client,
        "SELECT purpose FROM audit_log WHERE action = 'patrol_plan.read' ORDER BY id DESC LIMIT 1",
    )
    assert read["purpose"] == "patrol preparation"
    resp = await client.post(f"/api/v1/patrol-plans/{pid}/publish", headers=bearer(officer_token))
    await expect_error(resp, 403)

    resp = await client.post(f"/api/v1/patrol-plans/{pid}/publish", headers=bearer(admin))
    assert resp.status == 200
    assert (await resp.json())["status"] == "published"
    resp = await client.post(f"/api/v1/patrol-plans/{pid}/publish", headers=bearer(admin))
    await expect_error(resp, 409)
    resp = await client.post(
        "/api/v1/patrol-plans",
        json={"org_unit": unit, "date": TODAY.isoformat()},
        headers=bearer(admin),
    )
    await expect_error(resp, 409, "plan_published")
    resp = await client.post(
        f"/api/v1/patrol-plans/{pid}/edits",
        json={"op": "remove", "subject_id": victim, "reason": "x"},
        headers=bearer(admin),
    )
    await expect_error(resp, 409)
    events = await sql_row(
        client,
        "SELECT array_agg(DISTINCT name) AS names FROM events WHERE data->>'plan_id' = $1",
        str(pid),
    )
    assert set(events["names"]) >= {
        "patrol_plan.created",
        "patrol_plan.edited",
        "patrol_plan.published",
    }


async def test_approved_leave_excludes_and_nightly_job_plans_once(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    unit = await station(client, county)
    ids = await add_subjects(
        client,
        unit,
        [
            ("strict", TODAY - timedelta(days=14), (116.31, 39.91)),
            ("strict", TODAY - timedelta(days=14), (116.32, 39.90)),
        ],
    )
    async with client.app[POOL].acquire() as conn:
        unit_id = await conn.fetchval("SELECT id FROM org_units WHERE code = $1", unit)
        await conn.execute(
            """INSERT INTO leaves (subject_id, org_unit_id, destination, reason, starts_at, ends_at,
                start_text, end_text, days, approval_level, status)
               VALUES ($1, $2, '{}'::jsonb, 'medical', $3, $4, 'a', 'b', 3, 'station',
                       'approved')""",
            ids[0],
            unit_id,
            datetime.now(UTC) - timedelta(days=1),
            datetime.now(UTC) + timedelta(days=2),
        )
    await add_team(client, county.admin_token, unit, "夜巡")
    services = client.app[SERVICES]
    # Past plan_at in Shanghai (noon): the job drafts tonight's plan of the unit, once.
    noon = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(hours=5)
    made = await services.handle(PlanComingNights(noon))
    row = await sql_row(
        client, "SELECT id FROM patrol_plans WHERE org_unit_id = $1 AND night = $2", unit_id, TODAY
    )
    assert row is not None
    assert row["id"] in made
    assert row["id"] not in await services.handle(PlanComingNights(noon + timedelta(minutes=15)))
    resp = await client.get(f"/api/v1/patrol-plans/{row['id']}", headers=bearer(county.admin_token))
    plan = await resp.json()
    assert set(planned(plan)) == {ids[1]}
    assert {"subject_id": ids[0], "reason": "on_leave"} in plan["unassigned"]
    audit = await sql_row(
        client,
        "SELECT officer_id, detail FROM audit_log WHERE action = 'patrol_plan.create'"
        " AND (detail->>'plan_id')::bigint = $1",
        row["id"],
    )
    assert audit["officer_id"] is None


async def test_past_plans_outcomes_move_the_next_due_dates(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    unit = await station(client, county)
    # Both were due six nights ago.
    ids = await add_subjects(
        client,
        unit,
        [
            ("strict", TODAY - timedelta(days=20), (116.31, 39.91)),
            ("strict", TODAY - timedelta(days=20), (116.32, 39.90)),
        ],
    )
    await add_team(client, county.admin_token, unit, "夜巡")
    past = TODAY - timedelta(days=6)
    plan = await make_plan(client, county.admin_token, unit, past, seed=5)
    assert set(planned(plan)) == set(ids)
    visited, missed = ids
    async with client.app[POOL].acquire() as conn:
        await conn.execute(
            "UPDATE patrol_stops SET outcome = 'present', outcome_at = $2"
            " WHERE plan_id = $1 AND subject_id = $3",
            plan["id"],
            datetime.now(UTC) - timedelta(days=6),
            visited,
        )
        await conn.execute(
            "UPDATE patrol_stops SET outcome = 'no_answer', outcome_at = $2"
            " WHERE plan_id = $1 AND subject_id = $3",
            plan["id"],
            datetime.now(UTC) - timedelta(days=6),
            missed,
        )
    # Tonight: the one nobody answered is overdue; the visited one is not due (window
    # opens on the 8th night after the visit).
    tonight = await make_plan(client, county.admin_token, unit, TODAY, seed=5)
    assert set(planned(tonight)) == {missed}
    assert planned(tonight)[missed]["reasons"][0]["code"] == "overdue"
    # Its due date: 14 nights after the visit; the forecast plans it no later.
    resp = await client.post(
        "/api/v1/patrol-plans/forecast",
        json={
            "org_unit": unit,
            "start": (TODAY + timedelta(days=1)).isoformat(),
            "nights": 14,
            "seed": 9,
        },
        headers=bearer(county.admin_token),
    )
    body = await resp.json()
    nights = [n["date"] for n in body["nights"] if visited in planned(n)]
    assert nights
    assert past + timedelta(days=8) <= date.fromisoformat(nights[0]) <= past + timedelta(days=14)
    assert body["overdue"] == []


async def test_forecast_for_a_county_of_300_subjects_and_4_teams(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    rng = random.Random(20260601)
    start = TODAY + timedelta(days=1)
    rows = []
    # Levels as RULES.md §3 suggests: most normal, some strict, some lenient. Each term
    # started within one interval of the forecast's start, so due dates are spread.
    for _ in range(300):
        level = rng.choices(["strict", "normal", "lenient"], [0.2, 0.5, 0.3])[0]
        term_start = start - timedelta(days=rng.randrange(1, EVERY[level]))
        # Homes clustered around towns of a 17 km × 22 km county.
        town = rng.choice([(116.22, 39.82), (116.30, 39.90), (116.38, 39.97), (116.25, 39.97)])
        rows.append(
            (level, term_start, (town[0] + rng.gauss(0, 0.02), town[1] + rng.gauss(0, 0.02)))
        )
    await add_subjects(client, county.code, rows)
    starts = [(116.25, 39.85), (116.35, 39.85), (116.25, 39.95), (116.35, 39.95)]
    teams = [
        (
            await add_team(
                client,
                county.admin_token,
                county.code,
                f"{i + 1}组",
                capacity=10,
                start={"lon": lon, "lat": lat},
                window={"start": "19:30", "end": "01:30"},
            )
        )["id"]
        for i, (lon, lat) in enumerate(starts)
    ]
    began = clocktime.perf_counter()
    resp = await client.post(
        "/api/v1/patrol-plans/forecast",
        json={"org_unit": county.code, "start": start.isoformat(), "nights": 90, "seed": 77},
        headers=bearer(county.admin_token),
    )
    elapsed = clocktime.perf_counter() - began
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert len(body["nights"]) == 90
    assert all(n["id"] is None for n in body["nights"])
    assert body["overdue"] == []
    assert elapsed < 60, elapsed
    loads_by_month = []
    for month in range(3):
        loads: Counter[int] = Counter({t: 0 for t in teams})
        for night in body["nights"][month * 30 : (month + 1) * 30]:
            for route in night["routes"]:
                loads[route["team_id"]] += len(route["stops"])
                assert len(route["stops"]) <= 10
        mean = sum(loads.values()) / 4
        assert all(abs(v - mean) <= 0.15 * mean for v in loads.values()), loads
        loads_by_month.append(dict(loads))
    # Nothing stored.
    row = await sql_row(
        client,
        "SELECT count(*) AS n FROM patrol_plans"
        " WHERE org_unit_id = (SELECT id FROM org_units WHERE code = $1)",
        county.code,
    )
    assert row["n"] == 0
    print(f"forecast 90 nights: {elapsed:.1f} s, loads per 30 nights {loads_by_month}")
