"""The subject's app sees its own profile and rules (``GET /api/v1/me``): the contract's
fields, its fences as WGS-84 GeoJSON (a circle as a polygon, administrative areas as their
union), its level's reporting interval (none for 宽管) and check-in rules, with an ETag."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer
from tests.e2e.helpers import COUNTY_SQUARE, County, expect_error, make_county, make_world, sql_row

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]

CONTRACT_FIELDS = [
    "subject_id",
    "name",
    "supervision_level",
    "org_unit",
    "timezone",
    "term_start",
    "term_end",
    "curfew",
    "activity_area",
    "exclusion_zones",
]
SCHOOL = {
    "type": "Polygon",
    "coordinates": [
        [[116.30, 39.90], [116.31, 39.90], [116.31, 39.91], [116.30, 39.91], [116.30, 39.90]]
    ],
}


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


async def me(client: Client, token: str, headers: dict[str, str] | None = None) -> Any:
    resp = await client.get("/api/v1/me", headers=bearer(token) | (headers or {}))
    assert resp.status == 200, await resp.text()
    return await resp.json()


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


async def test_a_strict_subject_sees_its_rules(
    client: Client, officers: Officers, county: County
) -> None:
    zone = {"name": "某小学", "kind": "exclusion", "geometry": SCHOOL}
    world = await make_world(client, officers, level="strict", in_county=county, exclusions=[zone])
    profile = await me(client, world.device_token)
    assert list(profile)[: len(CONTRACT_FIELDS)] == CONTRACT_FIELDS
    assert profile["subject_id"] == world.subject_id
    assert profile["name"] == "张三"
    assert profile["supervision_level"] == "strict"
    assert profile["org_unit"] == world.station
    assert profile["timezone"] == "Asia/Shanghai"
    assert (profile["term_start"], profile["term_end"]) == ("2026-01-01", "2027-12-31")
    assert profile["curfew"] is None
    area = profile["activity_area"]
    assert area["type"] == "Polygon"
    assert {tuple(p) for p in area["coordinates"][0]} == {
        tuple(p) for p in COUNTY_SQUARE["coordinates"][0]
    }
    (school,) = profile["exclusion_zones"]
    assert school["name"] == "某小学"
    assert school["geometry"]["type"] == "Polygon"
    assert profile["home"] is None
    assert profile["location_interval_s"] == 300
    assert profile["checkin_schedule"] == "level"
    assert profile["checkin_windows"] == [
        {"days": [1, 2, 3, 4, 5, 6, 7], "start": "09:00", "end": "12:00"},
        {"days": [1, 2, 3, 4, 5, 6, 7], "start": "19:00", "end": "22:00"},
    ]
    assert profile["challenge"] == {"per_period": 1, "period": "day", "answer_within_s": 1800}
    assert profile["reminder_lead_s"] == [1800]


async def test_a_lenient_subject_is_not_tracked_and_sees_its_circle(
    client: Client, officers: Officers, county: County
) -> None:
    base = await make_world(client, officers, level="strict", in_county=county)
    h = bearer(county.admin_token)
    centre = (116.35, 39.95)
    resp = await client.post(
        "/api/v1/geofences",
        json={
            "name": "城关镇",
            "kind": "activity_area",
            "org_unit": county.code,
            "geometry": {"type": "Point", "coordinates": list(centre)},
            "radius_m": 3000,
        },
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    area_id = (await resp.json())["id"]
    resp = await client.post(
        "/api/v1/subjects",
        json={
            "name": "李四",
            "org_unit": base.station,
            "supervision_level": "lenient",
            "category": "parole",
            "term_start": "2026-02-01",
            "term_end": "2026-12-31",
            "activity_area_id": area_id,
            "exclusion_zone_ids": [],
            "home": {"lat": 39.951, "lon": 116.351},
            "curfew": {"start": "22:00", "end": "06:00"},
        },
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    subject_id = (await resp.json())["id"]
    resp = await client.post(f"/api/v1/subjects/{subject_id}/devices", json={}, headers=h)
    token = (await resp.json())["token"]

    profile = await me(client, token)
    assert profile["subject_id"] == subject_id
    assert profile["supervision_level"] == "lenient"
    # 宽管: supervised by check-ins only, the phone is told not to track.
    assert profile["location_interval_s"] is None
    assert profile["curfew"] == {"start": "22:00", "end": "06:00"}
    assert profile["home"] == {"lat": 39.951, "lon": 116.351, "radius_m": 150.0}
    assert profile["checkin_windows"] == [{"days": [1], "start": "09:00", "end": "21:00"}]
    assert profile["challenge"] == {"per_period": 1, "period": "month", "answer_within_s": 3600}
    area = profile["activity_area"]
    assert area["type"] == "Polygon"
    ring = area["coordinates"][0]
    assert ring[0] == ring[-1]
    assert len(ring) > 32
    for lon, lat in ring:
        assert abs(haversine_m(centre[0], centre[1], lon, lat) - 3000) < 1.0


async def test_own_windows_replace_the_levels(
    client: Client, officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, level="normal", in_county=county)
    windows = [{"days": [6, 7], "start": "10:00", "end": "11:00"}]
    await sql_row(
        client,
        "INSERT INTO checkin_schedules (subject_id, windows) VALUES ($1, $2::jsonb) RETURNING 1",
        world.subject_id,
        windows,
    )
    profile = await me(client, world.device_token)
    assert profile["checkin_schedule"] == "subject"
    assert profile["checkin_windows"] == windows
    assert profile["location_interval_s"] == 900


async def test_an_area_of_adcodes_is_their_union(
    client: Client, officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, level="strict", in_county=county)
    h = bearer(county.admin_token)
    # Two made-up districts side by side and a third apart, imported in WGS-84.
    first = f"9{random.randrange(10_000, 99_999)}"
    codes = [first, str(int(first) + 1), str(int(first) + 2)]
    squares = [(116.0, 39.0), (116.1, 39.0), (117.0, 39.0)]
    features = [
        {
            "type": "Feature",
            "properties": {"adcode": code, "name": f"区{code}"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[x, y], [x + 0.1, y], [x + 0.1, y + 0.1], [x, y + 0.1], [x, y]]],
            },
        }
        for code, (x, y) in zip(codes, squares, strict=True)
    ]
    resp = await client.post(
        "/api/v1/boundaries/import?crs=wgs84",
        json={"type": "FeatureCollection", "features": features},
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post(
        "/api/v1/geofences",
        json={"name": "两区", "kind": "activity_area", "org_unit": county.code, "adcodes": codes},
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    fence_id = (await resp.json())["id"]
    await sql_row(
        client,
        "UPDATE subjects SET activity_area_id = $2 WHERE id = $1 RETURNING id",
        world.subject_id,
        fence_id,
    )
    area = (await me(client, world.device_token))["activity_area"]
    assert area["type"] == "MultiPolygon"
    # The two neighbours merge into one part; the third stays apart.
    assert len(area["coordinates"]) == 2


async def test_the_profile_is_revalidated_by_etag(
    client: Client, officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, level="strict", in_county=county)
    resp = await client.get("/api/v1/me", headers=bearer(world.device_token))
    assert resp.status == 200
    etag = resp.headers["ETag"]
    assert etag.startswith('"')
    resp = await client.get(
        "/api/v1/me", headers=bearer(world.device_token) | {"If-None-Match": etag}
    )
    assert resp.status == 304
    assert await resp.read() == b""
    # A changed rule changes the tag: the app fetches the new profile.
    await sql_row(
        client,
        "UPDATE subjects SET supervision_level = 'normal' WHERE id = $1 RETURNING id",
        world.subject_id,
    )
    resp = await client.get(
        "/api/v1/me", headers=bearer(world.device_token) | {"If-None-Match": etag}
    )
    assert resp.status == 200
    assert resp.headers["ETag"] != etag
    assert (await resp.json())["location_interval_s"] == 900


async def test_only_an_enrolled_device_sees_a_profile(
    client: Client, officers: Officers, county: County
) -> None:
    await expect_error(await client.get("/api/v1/me"), 401)
    await expect_error(await client.get("/api/v1/me", headers=bearer("not-a-device-token")), 401)
    # An officer's token is not a device's.
    await expect_error(await client.get("/api/v1/me", headers=bearer(county.admin_token)), 401)
