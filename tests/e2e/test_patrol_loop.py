"""A night's patrol from plan to paper to finding: a plan made through the API is exported
(GeoJSON, CSV, the printed sheet) with its routes' figures and its reasons in words, and an
outcome recorded on one of its stops moves that subject's next due date."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from tests.conftest import Officers, bearer
from tests.e2e.helpers import make_county
from tests.e2e.test_patrol_plans import TODAY, add_subjects, add_team, make_plan, planned, station

pytestmark = pytest.mark.e2e


async def test_a_planned_night_is_exported_and_its_findings_count_as_visits(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    unit = await station(client, county)
    homes = [(116.30 + 0.01 * i, 39.90 + 0.005 * (i % 3)) for i in range(6)]
    # Strict subjects whose term began 14 days ago: never visited, all due tonight.
    ids = await add_subjects(
        client, unit, [("strict", TODAY - timedelta(days=14), h) for h in homes]
    )
    await add_team(client, county.admin_token, unit, "一组", capacity=6)
    h = bearer(county.admin_token)
    # Last night's plan: its visits have happened (an outcome cannot be in the future).
    plan = await make_plan(client, county.admin_token, unit, TODAY - timedelta(days=1), seed=11)
    stops = planned(plan)
    assert stops, plan
    route = plan["routes"][0]

    resp = await client.get(f"/api/v1/patrol-plans/{plan['id']}.geojson", headers=h)
    assert resp.status == 200, await resp.text()
    features = (await resp.json())["features"]
    (line,) = [f for f in features if f["geometry"]["type"] == "LineString"]
    assert line["properties"]["distance_m"] == pytest.approx(route["distance_m"], abs=0.1)
    assert line["properties"]["duration_s"] == pytest.approx(route["duration_s"], abs=1)
    points = [f for f in features if f["geometry"]["type"] == "Point"]
    assert sorted(p["properties"]["subject_id"] for p in points) == sorted(stops)

    resp = await client.get(f"/api/v1/patrol-plans/{plan['id']}.csv", headers=h)
    assert resp.status == 200, await resp.text()
    rows = (await resp.text()).strip().splitlines()
    assert len(rows) == 1 + len(stops)

    resp = await client.get(f"/api/v1/patrol-plans/{plan['id']}/sheet", headers=h)
    assert resp.status == 200, await resp.text()
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(await resp.read())).pages)
    assert "一组" in text
    # The planner's reasons are objects ({"code","detail","weight"}): printed in words.
    assert "{'code'" not in text

    subject_id = next(iter(stops))
    eta = stops[subject_id]["eta"]
    resp = await client.post(
        f"/api/v1/patrol-plans/{plan['id']}/stops/{subject_id}/outcome",
        json={"outcome": "present", "at": eta, "note": "在家"},
        headers=h,
    )
    assert resp.status == 200, await resp.text()
    # Visited last night: not due tonight, while every other one must be visited.
    tonight = await make_plan(client, county.admin_token, unit, TODAY, seed=12)
    assert sorted(planned(tonight)) == sorted(set(ids) - {subject_id})


async def test_an_officers_phone_finds_tonights_plan_in_its_jurisdiction_only(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    unit = await station(client, county)
    home = (116.31, 39.90)
    await add_subjects(client, unit, [("strict", TODAY - timedelta(days=14), home)])
    await add_team(client, county.admin_token, unit, "一组")
    plan = await make_plan(client, county.admin_token, unit, TODAY, seed=5)
    _, officer = await officers.create("officer", unit)
    mine = bearer(officer)

    resp = await client.get(
        "/api/v1/patrol-plans", params={"org_unit": unit, "date": TODAY.isoformat()}, headers=mine
    )
    assert resp.status == 200, await resp.text()
    (found,) = (await resp.json())["plans"]
    assert found == plan
    resp = await client.get("/api/v1/patrol-plans", params={"status": "published"}, headers=mine)
    assert (await resp.json())["plans"] == []
    resp = await client.get("/api/v1/patrol-plans", params={"date": "tonight"}, headers=mine)
    assert resp.status == 400
    # Another county's administrator sees none of it.
    other = await make_county(officers)
    _, outsider = await officers.create("county_admin", other.code)
    elsewhere = bearer(outsider)
    resp = await client.get(
        "/api/v1/patrol-plans", params={"date": TODAY.isoformat()}, headers=elsewhere
    )
    assert (await resp.json())["plans"] == []
    # Naming the unit is refused (org units are not secret: 403, as everywhere).
    resp = await client.get("/api/v1/patrol-plans", params={"org_unit": unit}, headers=elsewhere)
    assert resp.status == 403
