"""A county's fences serve its stations: station officers attach them to their subjects."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import COUNTY_SQUARE

pytestmark = pytest.mark.e2e


async def test_station_officer_uses_the_county_activity_area(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county, station, other_county = unique("c"), unique("s"), unique("c")
    _, county_admin = await officers.create("county_admin", county)
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": station, "name": "西关司法所", "parent_code": county},
        headers=bearer(county_admin),
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post(
        "/api/v1/geofences",
        json={
            "name": "XX县",
            "kind": "activity_area",
            "org_unit": county,
            "geometry": COUNTY_SQUARE,
        },
        headers=bearer(county_admin),
    )
    area_id = (await resp.json())["id"]
    _, officer = await officers.create("officer", station, parent=county)

    resp = await client.get("/api/v1/geofences", headers=bearer(officer))
    assert area_id in [f["id"] for f in (await resp.json())["geofences"]]
    subject = {
        "name": "李四",
        "org_unit": station,
        "supervision_level": "normal",
        "category": "parole",
        "term_start": "2026-01-01",
        "term_end": "2026-12-31",
        "activity_area_id": area_id,
    }
    resp = await client.post("/api/v1/subjects", json=subject, headers=bearer(officer))
    assert resp.status == 201, await resp.text()

    # Another county's officer can neither see nor use it.
    other_station = unique("s")
    _, other_admin = await officers.create("county_admin", other_county)
    await client.post(
        "/api/v1/org-units",
        json={"code": other_station, "name": "东关司法所", "parent_code": other_county},
        headers=bearer(other_admin),
    )
    _, stranger = await officers.create("officer", other_station, parent=other_county)
    resp = await client.get(f"/api/v1/geofences/{area_id}", headers=bearer(stranger))
    assert resp.status == 404
    resp = await client.post(
        "/api/v1/subjects", json=subject | {"org_unit": other_station}, headers=bearer(stranger)
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "unknown_geofence"


async def test_invalid_geometry_names_problem_and_offers_the_repair(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = unique("c")
    _, admin = await officers.create("admin", county)
    bow_tie = {
        "type": "Polygon",
        "coordinates": [
            [[116.2, 39.8], [116.4, 40.0], [116.4, 39.8], [116.2, 40.0], [116.2, 39.8]]
        ],
    }
    body = {"name": "bad", "kind": "exclusion", "org_unit": county, "geometry": bow_tie}
    # A real defect is refused unless a repair is asked for, with or without ?repair=false.
    for query in ("", "?repair=false"):
        resp = await client.post(f"/api/v1/geofences{query}", json=body, headers=bearer(admin))
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_geometry"
        assert error["problem"] == "self_intersection"
        assert "?repair=true" in error["message"]
    resp = await client.post("/api/v1/geofences?repair=true", json=body, headers=bearer(admin))
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["repairs"]


async def test_a_boundary_touching_itself_is_repaired_without_asking_and_reported(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = unique("c")
    _, admin = await officers.create("admin", county)
    # Two triangles traced as one ring through a shared corner (a self-touching ring, as in
    # DataV's simplified boundaries): invalid, but repairing it leaves the area as it is.
    corner = [116.3, 39.9]
    ring = [
        corner,
        [116.4, 39.9],
        [116.4, 40.0],
        corner,
        [116.2, 39.9],
        [116.2, 39.8],
        corner,
    ]
    body = {
        "name": "XX镇",
        "kind": "activity_area",
        "org_unit": county,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    resp = await client.post("/api/v1/geofences?repair=false", json=body, headers=bearer(admin))
    assert resp.status == 400
    resp = await client.post("/api/v1/geofences", json=body, headers=bearer(admin))
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["repairs"]
