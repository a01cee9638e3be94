"""A night patrol plan's exports through HTTP: GeoJSON, CSV and the printed zh-CN sheet,
each audited as a read of location data, within jurisdiction only."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from correction_monitor.web.keys import POOL
from tests.conftest import Officers, bearer
from tests.e2e.helpers import expect_error, make_county, make_world, sql_row
from tests.e2e.patrol_helpers import HOME, TEAM_START, add_subject, make_plan

pytestmark = pytest.mark.e2e

NIGHT = date(2026, 3, 1)
ETA = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai


async def audit_entries(client: TestClient[Any, Any], plan_id: int) -> list[Any]:
    async with client.app[POOL].acquire() as conn:
        rows = await conn.fetch(
            "SELECT officer_id, action, purpose, detail FROM audit_log "
            "WHERE action = 'patrol.export' AND (detail ->> 'plan_id')::bigint = $1 ORDER BY id",
            plan_id,
        )
    return list(rows)


async def test_geojson_csv_and_sheet_show_the_plan_to_officers_and_are_audited(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers, home=HOME)
    other = await add_subject(client, world, "李四")
    plan = await make_plan(client, world, NIGHT, [world.subject_id, other], eta=ETA)
    username, token = await officers.create("officer", world.station)
    officer_id = (await sql_row(client, "SELECT id FROM officers WHERE username = $1", username))[
        "id"
    ]
    h = bearer(token)

    resp = await client.get(f"/api/v1/patrol-plans/{plan.plan_id}.geojson", headers=h)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/geo+json"
    collection = await resp.json()
    assert collection["type"] == "FeatureCollection"
    lines = [f for f in collection["features"] if f["geometry"]["type"] == "LineString"]
    points = [f for f in collection["features"] if f["geometry"]["type"] == "Point"]
    assert len(lines) == 1
    assert len(points) == 2
    start = list(TEAM_START)
    assert lines[0]["geometry"]["coordinates"] == [
        start,
        [HOME["lon"], HOME["lat"]],
        [116.33, 39.92],
        start,
    ]
    assert {
        k: lines[0]["properties"][k] for k in ("team_id", "team", "distance_m", "duration_s")
    } == {
        "team_id": plan.team_id,
        "team": plan.team,
        "distance_m": 2450.5,
        "duration_s": 3600.0,
    }
    assert [p["properties"]["seq"] for p in points] == [1, 2]
    first = points[0]["properties"]
    assert (first["subject_id"], first["name"], first["eta"]) == (
        world.subject_id,
        "张三",
        "2026-03-01T13:00:00Z",
    )
    assert first["reasons"] == ["due", "open_alert"]
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        for lon, lat in (
            feature["geometry"]["coordinates"]
            if feature["geometry"]["type"] == "LineString"
            else [feature["geometry"]["coordinates"]]
        ):
            assert -180 <= lon <= 180
            assert -90 <= lat <= 90

    resp = await client.get(f"/api/v1/patrol-plans/{plan.plan_id}.csv", headers=h)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/csv"
    text = (await resp.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "team_id",
        "team",
        "seq",
        "eta_local",
        "subject_id",
        "name",
        "home_lat",
        "home_lon",
        "reasons",
        "outcome",
    ]
    assert rows[1] == [
        str(plan.team_id),
        plan.team,
        "1",
        "2026-03-01 21:00",
        str(world.subject_id),
        "张三",
        "39.910000",
        "116.310000",
        "due;open_alert",
        "",
    ]
    assert rows[2][2:6] == ["2", "2026-03-01 21:10", str(other), "李四"]

    resp = await client.get(
        f"/api/v1/patrol-plans/{plan.plan_id}/sheet", params={"purpose": "今晚巡查"}, headers=h
    )
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/pdf"
    reader = PdfReader(io.BytesIO(await resp.read()))
    assert len(reader.pages) == 1
    page = reader.pages[0].extract_text()
    for expected in ("夜间巡查走访单", plan.team, "张三", "李四", "到期走访", "签名", "21:00"):
        assert expected in page, expected

    entries = await audit_entries(client, plan.plan_id)
    assert [(e["officer_id"], e["action"]) for e in entries] == [(officer_id, "patrol.export")] * 3
    assert [e["detail"]["format"] for e in entries] == ["geojson", "csv", "pdf"]
    assert [e["purpose"] for e in entries] == [
        "patrol preparation",
        "patrol preparation",
        "今晚巡查",
    ]
    assert entries[0]["detail"]["subject_ids"] == [world.subject_id, other]
    assert entries[0]["detail"]["homes"] is True


async def test_exports_are_for_the_jurisdiction_and_casework_or_audit_roles(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    world = await make_world(client, officers, home=HOME, in_county=county)
    neighbour = await make_world(client, officers, in_county=county)
    plan = await make_plan(client, world, NIGHT, [world.subject_id], eta=ETA)
    _, outsider = await officers.create("officer", neighbour.station)
    _, auditor = await officers.create("auditor", county.code)
    for suffix in (".geojson", ".csv", "/sheet"):
        url = f"/api/v1/patrol-plans/{plan.plan_id}{suffix}"
        await expect_error(await client.get(url, headers=bearer(outsider)), 404, "not_found")
        resp = await client.get(url, headers=bearer(auditor))
        assert resp.status == 200, await resp.text()
        await expect_error(await client.get(url), 401)
    missing = 2_000_000_000
    await expect_error(
        await client.get(f"/api/v1/patrol-plans/{missing}.csv", headers=bearer(auditor)), 404
    )
    # The outsider's refused reads were never audited as reads.
    row = await sql_row(
        client,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'patrol.export' "
        "AND (detail ->> 'plan_id')::bigint = $1",
        plan.plan_id,
    )
    assert row["n"] == 3
