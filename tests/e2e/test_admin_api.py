"""Every administration endpoint of CONTRACT.md, its successes and its errors, over HTTP.

Runs against the real app on real PostgreSQL and Redis (see ``tests/conftest.py``). The tests
share one database, so every org unit is created under a fresh code; administrative areas are
global, so the hand-made boundaries use codes of a province that does not exist (99xxxx).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.settings import Settings
from tests.conftest import Officers, bearer, shared_data, unique
from tests.e2e.helpers import expect_error, expect_json

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]

# One Beijing point in the three systems (hujiulong/gcoord test/fixtures/china-cities.json,
# MIT licence; 北京城区, 东城区), (lon, lat) degrees.
WGS84_POINT = (116.4011517, 39.9028057)
GCJ02_POINT = (116.4074002, 39.9042136)
BD09_POINT = (116.4137852, 39.9105355)
# gcoord's values are rounded to 7 decimals by the service they came from; the textbook
# formulas reproduce them to 0.8 m, so compare to 2e-5 degrees (about 2 m).
VECTOR_TOLERANCE_DEG = 2e-5

DATAV_BEIJING = ("boundaries", "datav_GeoMapData_CN", "province", "110000.json")


# --- helpers ---------------------------------------------------------------------------------


def square(lon: float, lat: float, size: float = 0.01) -> list[list[float]]:
    """A closed counter-clockwise ring with its south-west corner at (lon, lat)."""
    return [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]


def vertices(geometry: dict[str, Any]) -> list[tuple[float, float]]:
    """Every position of a GeoJSON Polygon or MultiPolygon."""
    polygons = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        polygons = [polygons]
    return [(p[0], p[1]) for polygon in polygons for ring in polygon for p in ring]


def nearest_deg(points: list[tuple[float, float]], lon: float, lat: float) -> float:
    return min(math.hypot(x - lon, y - lat) for x, y in points)


def metres_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance, good to well under 1 % over a few kilometres."""
    mean_lat = math.radians((a[1] + b[1]) / 2)
    dx = math.radians(b[0] - a[0]) * math.cos(mean_lat)
    dy = math.radians(b[1] - a[1])
    return 6_371_008.8 * math.hypot(dx, dy)


def feature(
    adcode: Any, geometry: dict[str, Any], name: str | None = "测试区", parent: Any = None
) -> dict[str, Any]:
    properties: dict[str, Any] = {"adcode": adcode, "level": "district"}
    if name is not None:
        properties["name"] = name
    if parent is not None:
        properties["parent"] = {"adcode": parent}
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def polygon(ring: list[list[Any]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


def subject_body(org: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "张三",
        "org_unit": org,
        "supervision_level": "normal",
        "category": "probation",
        "term_start": "2026-01-01",
        "term_end": "2027-12-31",
        "activity_area_id": None,
        "exclusion_zone_ids": [],
    }
    body.update(overrides)
    return body


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def admin(officers: Officers) -> str:
    """A bearer token of an administrator (sees everything)."""
    _, token = await officers.create("admin", unique("hq"))
    return token


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def station(client: Client, admin: str) -> str:
    """A county with one station under it; returns the station's code."""
    county, code = unique("c"), unique("s")
    for body in (
        {"code": county, "name": "县局"},
        {"code": code, "name": "司法所", "parent_code": county},
    ):
        resp = await client.post("/api/v1/org-units", json=body, headers=bearer(admin))
        await expect_json(resp, 201)
    return code


async def create_fence(client: Client, token: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/api/v1/geofences", json=body, headers=bearer(token))
    created: dict[str, Any] = await expect_json(resp, 201)
    return created


async def get_fence(client: Client, token: str, fence_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/geofences/{fence_id}", headers=bearer(token))
    found: dict[str, Any] = await expect_json(resp, 200)
    return found


@pytest.fixture(scope="module")
async def fences(client: Client, admin: str, station: str) -> dict[str, int]:
    """An activity area, two exclusion zones and a home fence in the station."""
    out = {}
    for key, kind, lon in (
        ("area", "activity_area", 116.30),
        ("bar", "exclusion", 116.35),
        ("school", "exclusion", 116.36),
        ("home", "home", 116.37),
    ):
        size = 0.1 if kind == "activity_area" else 0.005
        fence = await create_fence(
            client,
            admin,
            {
                "name": key,
                "kind": kind,
                "org_unit": station,
                "geometry": polygon(square(lon, 39.9, size)),
            },
        )
        out[key] = fence["id"]
    return out


@pytest.fixture(scope="module")
async def beijing(client: Client, admin: str) -> list[str]:
    """The 16 Beijing districts of the DataV file, imported (GCJ-02, repaired); their adcodes."""
    path = shared_data(*DATAV_BEIJING)
    resp = await client.post(
        "/api/v1/boundaries/import?crs=gcj02&repair=true",
        data=path.read_bytes(),
        headers=bearer(admin) | {"Content-Type": "application/json"},
    )
    body = await expect_json(resp, 201)
    adcodes: list[str] = body["adcodes"]
    return adcodes


# --- POST /api/v1/auth/token -----------------------------------------------------------------


async def test_token_for_the_right_password(
    client: Client, officers: Officers, settings: Settings
) -> None:
    username, _ = await officers.create("officer", unique("s"), password="right-password-1")
    resp = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": "right-password-1"}
    )
    body = await expect_json(resp, 200)
    assert body["token_type"] == "bearer"
    assert len(body["access_token"]) >= 32
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None
    remaining = (expires - datetime.now(UTC)).total_seconds()
    assert settings.token_ttl_s - 60 < remaining <= settings.token_ttl_s
    resp = await client.get("/api/v1/subjects", headers=bearer(body["access_token"]))
    assert resp.status == 200


async def test_token_refused_alike_for_wrong_password_and_unknown_user(
    client: Client, officers: Officers
) -> None:
    username, _ = await officers.create("officer", unique("s"))
    wrong = await expect_error(
        await client.post(
            "/api/v1/auth/token", json={"username": username, "password": "nope-nope"}
        ),
        401,
        "invalid_credentials",
    )
    unknown = await expect_error(
        await client.post(
            "/api/v1/auth/token", json={"username": unique("ghost"), "password": "nope-nope"}
        ),
        401,
        "invalid_credentials",
    )
    # The same answer either way, so the endpoint does not reveal which usernames exist.
    assert wrong == unknown


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "username"),
        ({"username": "someone"}, "password"),
        ({"password": "whatever-1"}, "username"),
        ({"username": "", "password": "whatever-1"}, "username"),
        ({"username": "someone", "password": 12345678}, "password"),
    ],
)
async def test_token_request_missing_or_wrong_fields(
    client: Client, body: dict[str, Any], field: str
) -> None:
    error = await expect_error(
        await client.post("/api/v1/auth/token", json=body), 400, "invalid_request"
    )
    assert field in error["message"]


# --- POST /api/v1/org-units ------------------------------------------------------------------


async def test_org_unit_created_then_duplicate_conflicts(client: Client, admin: str) -> None:
    county = unique("c")
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": county, "name": "朝阳区司法局", "timezone": "Asia/Urumqi"},
        headers=bearer(admin),
    )
    body = await expect_json(resp, 201)
    assert body["code"] == county
    assert body["parent_code"] is None
    assert body["timezone"] == "Asia/Urumqi"
    error = await expect_error(
        await client.post(
            "/api/v1/org-units", json={"code": county, "name": "again"}, headers=bearer(admin)
        ),
        409,
        "org_unit_exists",
    )
    assert county in error["message"]


@pytest.mark.parametrize(
    ("overrides", "status", "code", "mentions"),
    [
        ({"parent_code": "no-such-unit"}, 400, "unknown_org_unit", "no-such-unit"),
        ({"timezone": "Asia/Beijing"}, 400, "invalid_request", "timezone"),
        ({"timezone": "../../etc/passwd"}, 400, "invalid_request", "timezone"),
        ({"timezone": ""}, 400, "invalid_request", "timezone"),
        ({"code": "has space"}, 400, "invalid_request", "code"),
        ({"code": ""}, 400, "invalid_request", "code"),
        ({"name": ""}, 400, "invalid_request", "name"),
    ],
)
async def test_org_unit_bad_input(
    client: Client, admin: str, overrides: dict[str, Any], status: int, code: str, mentions: str
) -> None:
    body = {"code": unique("u"), "name": "某司法所"} | overrides
    error = await expect_error(
        await client.post("/api/v1/org-units", json=body, headers=bearer(admin)), status, code
    )
    assert mentions in error["message"]


async def test_county_admin_creates_only_inside_own_county(
    client: Client, officers: Officers, admin: str
) -> None:
    county, other = unique("c"), unique("c")
    _, county_admin = await officers.create("county_admin", county)
    await officers.create("county_admin", other)

    station = unique("s")
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": station, "name": "城关司法所", "parent_code": county},
        headers=bearer(county_admin),
    )
    assert (await expect_json(resp, 201))["parent_code"] == county
    # Deeper under the own county is inside the jurisdiction as well.
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": unique("w"), "name": "工作站", "parent_code": station},
        headers=bearer(county_admin),
    )
    await expect_json(resp, 201)

    await expect_error(
        await client.post(
            "/api/v1/org-units",
            json={"code": unique("s"), "name": "x", "parent_code": other},
            headers=bearer(county_admin),
        ),
        403,
        "forbidden",
    )
    await expect_error(
        await client.post(
            "/api/v1/org-units",
            json={"code": unique("c"), "name": "x"},
            headers=bearer(county_admin),
        ),
        403,
        "forbidden",
    )


@pytest.mark.parametrize("role", ["officer", "supervisor", "auditor"])
async def test_org_unit_refused_to_roles_without_configuration_rights(
    client: Client, officers: Officers, role: str
) -> None:
    org = unique("s")
    _, token = await officers.create(role, org)
    await expect_error(
        await client.post(
            "/api/v1/org-units",
            json={"code": unique("s"), "name": "x", "parent_code": org},
            headers=bearer(token),
        ),
        403,
        "forbidden",
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/org-units"),
        ("GET", "/api/v1/org-units"),
        ("POST", "/api/v1/boundaries/import"),
        ("POST", "/api/v1/geofences"),
        ("GET", "/api/v1/geofences/1"),
        ("POST", "/api/v1/subjects"),
        ("GET", "/api/v1/subjects"),
        ("GET", "/api/v1/subjects/1"),
        ("POST", "/api/v1/subjects/1/devices"),
        ("GET", "/api/v1/subjects/1/track"),
        ("GET", "/api/v1/audit"),
    ],
)
async def test_officer_endpoints_need_a_token(client: Client, method: str, path: str) -> None:
    resp = await client.request(method, path, json={"code": unique("u"), "name": "x"})
    await expect_error(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"] == "Bearer"


# --- POST /api/v1/boundaries/import ----------------------------------------------------------


async def test_datav_beijing_is_repaired_and_imports(client: Client, admin: str) -> None:
    data = shared_data(*DATAV_BEIJING).read_bytes()
    headers = bearer(admin) | {"Content-Type": "application/json"}
    # DataV's simplified 顺义区 crosses itself; with ?repair=false the whole file is refused,
    # naming the feature.
    error = await expect_error(
        await client.post(
            "/api/v1/boundaries/import?crs=gcj02&repair=false", data=data, headers=headers
        ),
        400,
        "invalid_geometry",
    )
    assert error["problem"] == "self_intersection"
    assert error["feature"] == "110113 顺义区"

    # By default (the contract's plain request) it is repaired.
    resp = await client.post("/api/v1/boundaries/import?crs=gcj02", data=data, headers=headers)
    body = await expect_json(resp, 201)
    expected = [str(f["properties"]["adcode"]) for f in json.loads(data)["features"]]
    assert body["imported"] == 16
    assert body["adcodes"] == expected
    assert body["crs"] == "gcj02"
    # A repair is never silent.
    assert set(body["repairs"]) == {"110113"}
    assert "self_intersection" in body["repairs"]["110113"][0]

    listed = await expect_json(await client.get("/api/v1/boundaries", headers=bearer(admin)), 200)
    by_code = {a["adcode"]: a for a in listed["areas"]}
    assert by_code["110108"] == {
        "adcode": "110108",
        "name": "海淀区",
        "parent_adcode": "110000",
        "level": "district",
    }
    assert set(expected) <= set(by_code)


async def test_handmade_boundaries_in_each_crs(client: Client, admin: str, station: str) -> None:
    """Boundaries are stored in WGS-84 whatever system they were imported in."""
    cases = (
        ("wgs84", "990101", WGS84_POINT),
        ("gcj02", "990201", GCJ02_POINT),
        ("bd09", "990301", BD09_POINT),
    )
    for crs, adcode, corner in cases:
        fc = collection(feature(adcode, polygon(square(*corner)), parent="990100"))
        resp = await client.post(
            f"/api/v1/boundaries/import?crs={crs}", json=fc, headers=bearer(admin)
        )
        body = await expect_json(resp, 201)
        assert body["imported"] == 1
        assert body["adcodes"] == [adcode]
        assert body["crs"] == crs
        assert body["repairs"] == {}

        fence = await create_fence(
            client,
            admin,
            {"name": adcode, "kind": "activity_area", "org_unit": station, "adcodes": [adcode]},
        )
        stored = vertices((await get_fence(client, admin, fence["id"]))["geometry"])
        # The corner given in `crs` is stored at the same place expressed in WGS-84.
        assert nearest_deg(stored, *WGS84_POINT) < VECTOR_TOLERANCE_DEG, (crs, stored)
        if crs != "wgs84":
            shift = metres_between(corner, WGS84_POINT)
            assert 300 < shift < 1500, shift
            assert nearest_deg(stored, *corner) > 0.003


async def test_import_default_crs_is_gcj02(client: Client, admin: str) -> None:
    fc = collection(feature("990401", polygon(square(*GCJ02_POINT))))
    body = await expect_json(
        await client.post("/api/v1/boundaries/import", json=fc, headers=bearer(admin)), 201
    )
    assert body["crs"] == "gcj02"


async def test_import_unknown_crs(client: Client, admin: str) -> None:
    fc = collection(feature("990402", polygon(square(*GCJ02_POINT))))
    error = await expect_error(
        await client.post("/api/v1/boundaries/import?crs=epsg3857", json=fc, headers=bearer(admin)),
        400,
        "invalid_crs",
    )
    assert "epsg3857" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        feature("990501", polygon(square(*WGS84_POINT))),
        polygon(square(*WGS84_POINT)),
        [collection(feature("990501", polygon(square(*WGS84_POINT))))],
        {"type": "FeatureCollection", "features": []},
        {"type": "FeatureCollection", "features": "none"},
        {"type": "FeatureCollection"},
        "FeatureCollection",
    ],
)
async def test_import_needs_a_feature_collection(client: Client, admin: str, body: Any) -> None:
    await expect_error(
        await client.post("/api/v1/boundaries/import?crs=wgs84", json=body, headers=bearer(admin)),
        400,
    )


BOWTIE = [[116.30, 39.90], [116.31, 39.91], [116.31, 39.90], [116.30, 39.91], [116.30, 39.90]]


@pytest.mark.parametrize(
    ("geometry", "problem"),
    [
        (polygon(BOWTIE), "self_intersection"),
        (polygon([*square(116.3, 39.9)[:-1], [116.3, 39.95]]), "unclosed_ring"),
        (polygon([[lat, lon] for lon, lat in square(116.3, 39.9)]), "lat_lon_swapped"),
        (
            polygon([[lon + 100.0, lat] for lon, lat in square(116.3, 39.9)]),
            "coordinates_out_of_range",
        ),
        (
            polygon([[lon, lat - 130.0] for lon, lat in square(116.3, 39.9)]),
            "coordinates_out_of_range",
        ),
        (polygon([*square(116.3, 39.9)[:2], [116.3, 39.9]]), "degenerate_ring"),
        ({"type": "Polygon", "coordinates": "116.3,39.9"}, "wrong_type"),
        (
            polygon([["116.3", "39.9"], ["116.4", "39.9"], ["116.4", "40"], ["116.3", "39.9"]]),
            "wrong_type",
        ),
        (polygon([[116.3, True], [116.4, 39.9], [116.4, 40.0], [116.3, True]]), "wrong_type"),
        ({"type": "LineString", "coordinates": [[116.3, 39.9], [116.4, 39.9]]}, "wrong_type"),
        ({"type": "Polygon", "coordinates": []}, "empty"),
        ({"type": "Polygon", "coordinates": [[[116.3, 39.9, 1.0, 2.0]]]}, "wrong_type"),
    ],
)
async def test_import_names_the_problem_and_the_feature(
    client: Client, admin: str, geometry: dict[str, Any], problem: str
) -> None:
    good = feature("990601", polygon(square(*WGS84_POINT)), name="好区")
    bad = feature("990602", geometry, name="坏区")
    error = await expect_error(
        await client.post(
            "/api/v1/boundaries/import?crs=wgs84&repair=false",
            json=collection(good, bad),
            headers=bearer(admin),
        ),
        400,
        "invalid_geometry",
    )
    assert error["problem"] == problem, error
    assert error["feature"] == "990602 坏区"
    assert "990602" in error["message"]
    # Nothing of a refused file is kept, not even its good features.
    listed = await expect_json(await client.get("/api/v1/boundaries", headers=bearer(admin)), 200)
    assert "990601" not in {a["adcode"] for a in listed["areas"]}


@pytest.mark.parametrize(
    ("features", "problem", "feature_label"),
    [
        ([feature(None, polygon(square(*WGS84_POINT)))], "missing_property", "#0 测试区"),
        ([feature(True, polygon(square(*WGS84_POINT)))], "missing_property", "#0 测试区"),
        ([{"type": "Feature", "properties": {"adcode": "990701"}}], "missing_property", "990701"),
        (
            [
                feature("990702", polygon(square(*WGS84_POINT))),
                feature(990702, polygon(square(116.5, 39.9))),
            ],
            "duplicate_adcode",
            "990702 测试区",
        ),
        (["not a feature"], "wrong_type", "#0"),
    ],
)
async def test_import_feature_properties(
    client: Client, admin: str, features: list[Any], problem: str, feature_label: str
) -> None:
    error = await expect_error(
        await client.post(
            "/api/v1/boundaries/import?crs=wgs84",
            json=collection(*features),
            headers=bearer(admin),
        ),
        400,
        "invalid_geometry",
    )
    assert error["problem"] == problem, error
    assert error["feature"] == feature_label


async def test_import_refuses_too_many_vertices(client: Client, admin: str) -> None:
    count = 200_001
    ring = [[116.0 + i * 1e-6, 39.9 + (i % 2) * 1e-6] for i in range(count - 1)] + [[116.0, 39.9]]
    fc = collection(feature("990801", polygon(ring), name="大区"))
    # About 8 MB: streamed from a buffer, as aiohttp wants for large bodies.
    error = await expect_error(
        await client.post(
            "/api/v1/boundaries/import?crs=wgs84",
            data=io.BytesIO(json.dumps(fc).encode()),
            headers=bearer(admin) | {"Content-Type": "application/json"},
        ),
        400,
        "invalid_geometry",
    )
    assert error["problem"] == "too_many_vertices"
    assert error["feature"] == "990801 大区"
    assert str(count) in error["message"]


async def test_import_refused_to_officers(client: Client, officers: Officers) -> None:
    _, token = await officers.create("officer", unique("s"))
    fc = collection(feature("990901", polygon(square(*WGS84_POINT))))
    await expect_error(
        await client.post("/api/v1/boundaries/import?crs=wgs84", json=fc, headers=bearer(token)),
        403,
        "forbidden",
    )


# --- POST /api/v1/geofences ------------------------------------------------------------------


async def test_polygon_fence_in_wgs84_is_stored_as_given(
    client: Client, admin: str, station: str
) -> None:
    ring = square(116.30, 39.90, 0.02)
    fence = await create_fence(
        client,
        admin,
        {
            "name": "活动区域",
            "kind": "activity_area",
            "org_unit": station,
            "geometry": polygon(ring),
        },
    )
    assert fence["kind"] == "activity_area"
    assert fence["org_unit"] == station
    assert fence["crs"] == "wgs84"
    assert fence["schedule"] is None
    got = await get_fence(client, admin, fence["id"])
    assert got["id"] == fence["id"]
    assert got["geometry"]["type"] == "Polygon"
    assert sorted(set(vertices(got["geometry"]))) == sorted({(x, y) for x, y in ring})


async def test_same_polygon_created_concurrently_is_stored_once(
    client: Client, admin: str, station: str
) -> None:
    """Fences drawn alike at the same moment share one geometry row, and none fails."""
    # The race needs requests to meet inside the database; a few rounds make that certain.
    for _ in range(5):
        ring = square(101.0 + uuid.uuid4().int % 100_000 / 1e6, 30.0)
        body = {"name": "同时", "kind": "exclusion", "org_unit": station, "geometry": polygon(ring)}
        responses = await asyncio.gather(
            *(client.post("/api/v1/geofences", json=body, headers=bearer(admin)) for _ in range(8))
        )
        created = [await expect_json(resp, 201) for resp in responses]
        assert len({f["id"] for f in created}) == 8
        assert len({f["geometry_id"] for f in created}) == 1


async def test_multipolygon_fence(client: Client, admin: str, station: str) -> None:
    geometry = {
        "type": "MultiPolygon",
        "coordinates": [[square(116.30, 39.90)], [square(116.40, 39.90)]],
    }
    fence = await create_fence(
        client,
        admin,
        {"name": "两块", "kind": "exclusion", "org_unit": station, "geometry": geometry},
    )
    got = await get_fence(client, admin, fence["id"])
    assert got["geometry"]["type"] == "MultiPolygon"
    assert len(got["geometry"]["coordinates"]) == 2
    assert len(vertices(got["geometry"])) == 10


async def test_polygon_with_hole_keeps_the_hole(client: Client, admin: str, station: str) -> None:
    geometry = {
        "type": "Polygon",
        "coordinates": [square(116.30, 39.90, 0.1), square(116.33, 39.93, 0.02)],
    }
    fence = await create_fence(
        client,
        admin,
        {"name": "环", "kind": "activity_area", "org_unit": station, "geometry": geometry},
    )
    got = await get_fence(client, admin, fence["id"])
    assert len(got["geometry"]["coordinates"]) == 2


@pytest.mark.parametrize(
    ("crs", "corner"), [("wgs84", WGS84_POINT), ("gcj02", GCJ02_POINT), ("bd09", BD09_POINT)]
)
async def test_circle_fence_centre_stored_in_wgs84(
    client: Client, admin: str, station: str, crs: str, corner: tuple[float, float]
) -> None:
    fence = await create_fence(
        client,
        admin,
        {
            "name": "家",
            "kind": "home",
            "org_unit": station,
            "geometry": {"type": "Point", "coordinates": list(corner)},
            "radius_m": 150,
            "crs": crs,
        },
    )
    got = await get_fence(client, admin, fence["id"])
    assert got["radius_m"] == 150
    assert got["crs"] == crs
    assert "geometry" not in got
    centre = (got["center"]["lon"], got["center"]["lat"])
    assert math.dist(centre, WGS84_POINT) < VECTOR_TOLERANCE_DEG, centre


@pytest.mark.parametrize(("crs", "corner"), [("gcj02", GCJ02_POINT), ("bd09", BD09_POINT)])
async def test_polygon_fence_converted_to_wgs84(
    client: Client, admin: str, station: str, crs: str, corner: tuple[float, float]
) -> None:
    fence = await create_fence(
        client,
        admin,
        {
            "name": f"in {crs}",
            "kind": "exclusion",
            "org_unit": station,
            "geometry": polygon(square(*corner)),
            "crs": crs,
        },
    )
    stored = vertices((await get_fence(client, admin, fence["id"]))["geometry"])
    assert nearest_deg(stored, *WGS84_POINT) < VECTOR_TOLERANCE_DEG
    moved = metres_between(corner, WGS84_POINT)
    # GCJ-02 is some 550 m off in Beijing, BD-09 about 1.4 km.
    assert (500 < moved < 700) if crs == "gcj02" else (1200 < moved < 1600), moved
    assert nearest_deg(stored, *corner) > 0.003


async def test_city_code_covers_its_imported_districts(
    client: Client, admin: str, station: str, beijing: list[str]
) -> None:
    city = await create_fence(
        client,
        admin,
        {"name": "北京市区", "kind": "activity_area", "org_unit": station, "adcodes": ["110100"]},
    )
    assert city["adcodes"] == ["110100"]
    districts = await create_fence(
        client,
        admin,
        {"name": "十六区", "kind": "activity_area", "org_unit": station, "adcodes": beijing},
    )
    # Geometry is stored once by content: the city code is exactly the union of its districts.
    assert city["geometry_id"] == districts["geometry_id"]
    haidian = await create_fence(
        client,
        admin,
        {"name": "海淀", "kind": "activity_area", "org_unit": station, "adcodes": ["110108"]},
    )
    assert haidian["geometry_id"] != city["geometry_id"]
    city_points = vertices((await get_fence(client, admin, city["id"]))["geometry"])
    lons = [p[0] for p in city_points]
    lats = [p[1] for p in city_points]
    # Beijing municipality spans about 115.4-117.5 E, 39.4-41.1 N.
    assert 115.3 < min(lons) < 115.6
    assert 117.3 < max(lons) < 117.6
    assert 39.3 < min(lats) < 39.6
    assert 40.9 < max(lats) < 41.1


async def test_schedule_windows_including_across_midnight(
    client: Client, admin: str, station: str
) -> None:
    schedule = {
        "windows": [
            {"days": [5, 1, 2, 3, 4], "start": "22:00", "end": "06:00"},
            {"days": [6, 7], "start": "08:30", "end": "17:45"},
        ]
    }
    fence = await create_fence(
        client,
        admin,
        {
            "name": "夜间禁入",
            "kind": "exclusion",
            "org_unit": station,
            "geometry": polygon(square(116.3, 39.9)),
            "schedule": schedule,
        },
    )
    expected = {
        "windows": [
            {"days": [1, 2, 3, 4, 5], "start": "22:00", "end": "06:00"},
            {"days": [6, 7], "start": "08:30", "end": "17:45"},
        ]
    }
    assert fence["schedule"] == expected
    assert (await get_fence(client, admin, fence["id"]))["schedule"] == expected


@pytest.mark.parametrize(
    ("schedule", "mentions"),
    [
        ({"windows": []}, "windows"),
        ({}, "windows"),
        ({"windows": [{"days": [0], "start": "08:00", "end": "09:00"}]}, "days"),
        ({"windows": [{"days": [8], "start": "08:00", "end": "09:00"}]}, "days"),
        ({"windows": [{"days": [], "start": "08:00", "end": "09:00"}]}, "days"),
        ({"windows": [{"days": [1], "start": "24:00", "end": "09:00"}]}, "start"),
        ({"windows": [{"days": [1], "start": "8:00", "end": "09:00"}]}, "start"),
        ({"windows": [{"days": [1], "start": "08:00", "end": "09:60"}]}, "end"),
        ({"windows": [{"days": [1], "start": "08:00"}]}, "end"),
        ({"windows": [{"days": "weekdays", "start": "08:00", "end": "09:00"}]}, "days"),
        ({"windows": "always"}, "windows"),
    ],
)
async def test_invalid_schedule(
    client: Client, admin: str, station: str, schedule: dict[str, Any], mentions: str
) -> None:
    body = {
        "name": "x",
        "kind": "exclusion",
        "org_unit": station,
        "geometry": polygon(square(116.3, 39.9)),
        "schedule": schedule,
    }
    error = await expect_error(
        await client.post("/api/v1/geofences", json=body, headers=bearer(admin)),
        400,
        "invalid_request",
    )
    assert mentions in error["message"]


@pytest.mark.parametrize(
    ("overrides", "code", "mentions"),
    [
        ({"geometry": None, "adcodes": ["890000"]}, "unknown_adcode", "890000"),
        ({"geometry": None, "adcodes": ["990999"]}, "unknown_adcode", "990999"),
        ({"geometry": None, "adcodes": []}, "invalid_request", "adcodes"),
        ({"geometry": None, "adcodes": [110108]}, "invalid_request", "adcodes"),
        (
            {"geometry": {"type": "Point", "coordinates": [116.3, 39.9]}},
            "invalid_request",
            "radius_m",
        ),
        (
            {"geometry": {"type": "Point", "coordinates": [116.3, 39.9]}, "radius_m": 0},
            "invalid_request",
            "radius_m",
        ),
        (
            {"geometry": {"type": "Point", "coordinates": [116.3, 39.9]}, "radius_m": -5},
            "invalid_request",
            "radius_m",
        ),
        (
            {"geometry": {"type": "Point", "coordinates": [116.3, 39.9]}, "radius_m": 1e9},
            "invalid_request",
            "radius_m",
        ),
        (
            {"geometry": {"type": "Point", "coordinates": [116.3, 139.9]}, "radius_m": 100},
            "invalid_geometry",
            "out of range",
        ),
        (
            {"geometry": {"type": "Point", "coordinates": ["116.3", 39.9]}, "radius_m": 100},
            "invalid_geometry",
            "Point",
        ),
        ({"radius_m": 100}, "invalid_request", "radius_m"),
        ({"geometry": polygon(BOWTIE)}, "invalid_geometry", "self_intersection"),
        (
            {"geometry": polygon([*square(116.3, 39.9)[:-1], [116.3, 39.95]])},
            "invalid_geometry",
            "unclosed_ring",
        ),
        (
            {"geometry": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}},
            "invalid_geometry",
            "LineString",
        ),
        ({"geometry": None}, "invalid_request", "geometry"),
        ({"adcodes": ["110108"]}, "invalid_request", "geometry"),
        ({"geometry": "POLYGON((0 0, 1 0, 1 1, 0 0))"}, "invalid_request", "geometry"),
        ({"kind": "leave_destination"}, "invalid_request", "kind"),
        ({"kind": "prison"}, "invalid_request", "kind"),
        ({"crs": "epsg3857"}, "invalid_request", "crs"),
        ({"name": ""}, "invalid_request", "name"),
        ({"org_unit": "no-such-unit"}, "unknown_org_unit", "no-such-unit"),
    ],
)
async def test_invalid_geofence(
    client: Client,
    admin: str,
    station: str,
    overrides: dict[str, Any],
    code: str,
    mentions: str,
) -> None:
    body = {
        "name": "围栏",
        "kind": "exclusion",
        "org_unit": station,
        "geometry": polygon(square(116.3, 39.9)),
    } | overrides
    body = {k: v for k, v in body.items() if v is not None or k == "name"}
    error = await expect_error(
        await client.post("/api/v1/geofences?repair=false", json=body, headers=bearer(admin)),
        400,
        code,
    )
    assert mentions in error["message"], error


async def test_geofence_get_unknown_or_malformed_id(client: Client, admin: str) -> None:
    for fence_id in ("2147483000", "abc", "99999999999999999999", "-1"):
        await expect_error(
            await client.get(f"/api/v1/geofences/{fence_id}", headers=bearer(admin)),
            404,
            "not_found",
        )


async def test_geofence_refused_to_officers(
    client: Client, officers: Officers, station: str
) -> None:
    _, token = await officers.create("officer", station)
    await expect_error(
        await client.post(
            "/api/v1/geofences",
            json={
                "name": "x",
                "kind": "exclusion",
                "org_unit": station,
                "geometry": polygon(square(116.3, 39.9)),
            },
            headers=bearer(token),
        ),
        403,
        "forbidden",
    )


# --- POST /api/v1/subjects -------------------------------------------------------------------


async def test_subject_with_areas_home_and_curfew(
    client: Client, admin: str, station: str, fences: dict[str, int]
) -> None:
    body = subject_body(
        station,
        name="李四",
        supervision_level="strict",
        category="parole",
        activity_area_id=fences["area"],
        exclusion_zone_ids=[fences["school"], fences["bar"], fences["bar"]],
        home={"lat": GCJ02_POINT[1], "lon": GCJ02_POINT[0], "crs": "gcj02", "radius_m": 80},
        curfew={"start": "22:00", "end": "06:00"},
    )
    created = await expect_json(
        await client.post("/api/v1/subjects", json=body, headers=bearer(admin)), 201
    )
    assert isinstance(created["id"], int)
    assert created["name"] == "李四"
    assert created["org_unit"] == station
    assert created["supervision_level"] == "strict"
    assert created["category"] == "parole"
    assert created["term_start"] == "2026-01-01"
    assert created["term_end"] == "2027-12-31"
    assert created["activity_area_id"] == fences["area"]
    assert created["exclusion_zone_ids"] == sorted([fences["bar"], fences["school"]])
    assert created["curfew"] == {"start": "22:00", "end": "06:00"}
    home = created["home"]
    assert home["radius_m"] == 80
    # The home was given in GCJ-02 and is kept in WGS-84.
    assert math.dist((home["lon"], home["lat"]), WGS84_POINT) < VECTOR_TOLERANCE_DEG

    got = await expect_json(
        await client.get(f"/api/v1/subjects/{created['id']}", headers=bearer(admin)), 200
    )
    assert got == created
    listed = await expect_json(
        await client.get("/api/v1/subjects?limit=1000", headers=bearer(admin)), 200
    )
    assert created in listed["subjects"]


async def test_subject_minimal(client: Client, admin: str, station: str) -> None:
    created = await expect_json(
        await client.post("/api/v1/subjects", json=subject_body(station), headers=bearer(admin)),
        201,
    )
    assert created["home"] is None
    assert created["curfew"] is None
    assert created["activity_area_id"] is None
    assert created["exclusion_zone_ids"] == []


@pytest.mark.parametrize(
    ("overrides", "code", "mentions"),
    [
        ({"activity_area_id": "bar"}, "wrong_geofence_kind", "activity_area"),
        ({"activity_area_id": "home"}, "wrong_geofence_kind", "activity_area"),
        ({"exclusion_zone_ids": ["bar", "area"]}, "wrong_geofence_kind", "exclusion"),
        ({"activity_area_id": 2_000_000_000}, "unknown_geofence", "2000000000"),
        ({"exclusion_zone_ids": [2_000_000_001]}, "unknown_geofence", "2000000001"),
        ({"activity_area_id": 2**40}, "invalid_request", "activity_area_id"),
        ({"exclusion_zone_ids": [2**63]}, "invalid_request", "exclusion_zone_ids"),
        ({"responsible_officer_id": 2_000_000_000}, "unknown_officer", "2000000000"),
        ({"responsible_supervisor_id": 2**40}, "invalid_request", "responsible_supervisor_id"),
        ({"term_start": "2027-01-01", "term_end": "2026-12-31"}, "invalid_request", "term_end"),
        ({"term_start": "2026-02-30"}, "invalid_request", "term_start"),
        ({"term_end": "next year"}, "invalid_request", "term_end"),
        ({"supervision_level": "maximum"}, "invalid_request", "supervision_level"),
        ({"supervision_level": None}, "invalid_request", "supervision_level"),
        ({"category": "parolee"}, "invalid_request", "category"),
        ({"org_unit": "no-such-unit"}, "unknown_org_unit", "no-such-unit"),
        ({"name": ""}, "invalid_request", "name"),
        ({"curfew": {"start": "22:00", "end": "06:00"}}, "invalid_request", "home"),
        (
            {"home": {"lat": 39.9, "lon": 116.4}, "curfew": {"start": "22:00", "end": "6:00"}},
            "invalid_request",
            "curfew",
        ),
        ({"home": {"lat": 139.9, "lon": 116.4}}, "invalid_request", "home"),
        ({"home": {"lat": 39.9, "lon": 116.4, "crs": "mars"}}, "invalid_request", "crs"),
        ({"home": {"lat": 39.9, "lon": 116.4, "radius_m": 0}}, "invalid_request", "radius_m"),
        ({"home": {"lat": 39.9}}, "invalid_request", "lon"),
        ({"exclusion_zone_ids": "bar"}, "invalid_request", "exclusion_zone_ids"),
    ],
)
async def test_invalid_subject(
    client: Client,
    admin: str,
    station: str,
    fences: dict[str, int],
    overrides: dict[str, Any],
    code: str,
    mentions: str,
) -> None:
    # Fence names stand for the ids of the module's fences.
    resolved: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "activity_area_id" and isinstance(value, str):
            value = fences[value]
        elif key == "exclusion_zone_ids" and isinstance(value, list):
            value = [fences[v] if isinstance(v, str) else v for v in value]
        resolved[key] = value
    error = await expect_error(
        await client.post(
            "/api/v1/subjects", json=subject_body(station, **resolved), headers=bearer(admin)
        ),
        400,
        code,
    )
    assert mentions in error["message"], error


async def test_subject_refused_to_auditors(
    client: Client, officers: Officers, station: str
) -> None:
    _, token = await officers.create("auditor", station)
    await expect_error(
        await client.post("/api/v1/subjects", json=subject_body(station), headers=bearer(token)),
        403,
        "forbidden",
    )


async def test_subject_get_unknown_or_malformed_id(client: Client, admin: str) -> None:
    for subject_id in ("2147483000", "abc", "99999999999999999999", "2147483648", "-3"):
        await expect_error(
            await client.get(f"/api/v1/subjects/{subject_id}", headers=bearer(admin)),
            404,
            "not_found",
        )


@pytest.mark.parametrize(
    "query", ["limit=abc", "limit=-1", "offset=-5", "offset=99999999999999999999999", "limit=1e3"]
)
async def test_subject_list_paging_input(client: Client, admin: str, query: str) -> None:
    resp = await client.get(f"/api/v1/subjects?{query}", headers=bearer(admin))
    assert resp.status < 500, await resp.text()
    if resp.status >= 400:
        await expect_error(resp, 400, "invalid_request")


# --- devices ---------------------------------------------------------------------------------


async def test_device_enrol_list_revoke(client: Client, admin: str, station: str) -> None:
    subject = await expect_json(
        await client.post("/api/v1/subjects", json=subject_body(station), headers=bearer(admin)),
        201,
    )
    path = f"/api/v1/subjects/{subject['id']}/devices"
    first = await expect_json(
        await client.post(path, json={"platform": "android"}, headers=bearer(admin)), 201
    )
    assert isinstance(first["device_id"], int)
    assert len(first["token"]) >= 32
    assert first["osmand_id"].isdigit()
    assert first["platform"] == "android"
    # No body at all is fine too: the platform is optional.
    second = await expect_json(await client.post(path, headers=bearer(admin)), 201)
    assert second["device_id"] != first["device_id"]
    assert second["token"] != first["token"]
    assert second["osmand_id"] != first["osmand_id"]

    listed = await expect_json(await client.get(path, headers=bearer(admin)), 200)
    devices = {d["device_id"]: d for d in listed["devices"]}
    assert set(devices) == {first["device_id"], second["device_id"]}
    assert devices[first["device_id"]]["osmand_id"] == first["osmand_id"]
    assert devices[first["device_id"]]["revoked_at"] is None
    assert "token" not in devices[first["device_id"]]

    resp = await client.delete(f"{path}/{first['device_id']}", headers=bearer(admin))
    assert resp.status == 204
    listed = await expect_json(await client.get(path, headers=bearer(admin)), 200)
    revoked = {d["device_id"]: d["revoked_at"] for d in listed["devices"]}
    assert revoked[first["device_id"]] is not None
    assert revoked[second["device_id"]] is None
    # Revoking twice, or a device of another subject, is a 404.
    await expect_error(
        await client.delete(f"{path}/{first['device_id']}", headers=bearer(admin)), 404
    )
    await expect_error(await client.delete(f"{path}/2000000000", headers=bearer(admin)), 404)
    await expect_error(await client.delete(f"{path}/99999999999", headers=bearer(admin)), 404)


async def test_device_for_unknown_subject(client: Client, admin: str) -> None:
    for subject_id in ("2000000000", "99999999999", "x"):
        await expect_error(
            await client.post(f"/api/v1/subjects/{subject_id}/devices", headers=bearer(admin)),
            404,
            "not_found",
        )
        await expect_error(
            await client.get(f"/api/v1/subjects/{subject_id}/devices", headers=bearer(admin)),
            404,
            "not_found",
        )


async def test_device_bad_platform(client: Client, admin: str, station: str) -> None:
    subject = await expect_json(
        await client.post("/api/v1/subjects", json=subject_body(station), headers=bearer(admin)),
        201,
    )
    path = f"/api/v1/subjects/{subject['id']}/devices"
    for body in ({"platform": "x" * 65}, {"platform": 3}, ["android"]):
        await expect_error(await client.post(path, json=body, headers=bearer(admin)), 400)


# --- bad input never answers 5xx -------------------------------------------------------------

MALFORMED_BODIES: list[bytes] = [
    b"",
    b"   ",
    b"not json",
    b"{",
    b'{"a": 1,}',
    b"\xff\xfe\x00{",
    b"[]",
    b"[1, 2, 3]",
    b"null",
    b"true",
    b"42",
    b'"a string"',
    b"1e400",
    b'{"x": NaN}',
    b'{"platform": 123456789012345678901234567890, "name": 1e308}',
    b'{"name": null, "code": null, "username": null, "password": null, "platform": 7}',
]

# Values every field is tried with in turn, in place of a valid one.
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63 - 1,
    18446744073709551615,
    1.7e308,
    -1.7e308,
    "",
    "x" * 5000,
    "\u0000",
    "名\u0000字",
    [],
    [None],
    {},
    {"nested": {"deeper": [1, 2]}},
]


@pytest.fixture(scope="module")
async def fuzz_subject_id(client: Client, admin: str, station: str) -> int:
    created = await expect_json(
        await client.post("/api/v1/subjects", json=subject_body(station), headers=bearer(admin)),
        201,
    )
    subject_id: int = created["id"]
    return subject_id


def _post_endpoints(
    station: str, fences: dict[str, int], subject_id: int
) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each POST endpoint with a factory of a valid body for it."""
    return {
        "/api/v1/auth/token": lambda: {"username": "nobody", "password": "whatever-1"},
        "/api/v1/org-units": lambda: {
            "code": unique("f"),
            "name": "x",
            "parent_code": station,
            "timezone": "Asia/Shanghai",
        },
        "/api/v1/boundaries/import?crs=wgs84": lambda: collection(
            feature("999901", polygon(square(116.3, 39.9)), parent="999900")
        ),
        "/api/v1/geofences": lambda: {
            "name": "x",
            "kind": "exclusion",
            "org_unit": station,
            "geometry": polygon(square(116.3, 39.9)),
            "crs": "wgs84",
            "schedule": {"windows": [{"days": [1], "start": "08:00", "end": "09:00"}]},
        },
        "/api/v1/geofences#circle": lambda: {
            "name": "x",
            "kind": "home",
            "org_unit": station,
            "geometry": {"type": "Point", "coordinates": [116.3, 39.9]},
            "radius_m": 100,
        },
        "/api/v1/subjects": lambda: subject_body(
            station,
            activity_area_id=fences["area"],
            exclusion_zone_ids=[fences["bar"]],
            home={"lat": 39.9, "lon": 116.3, "crs": "wgs84", "radius_m": 100},
            curfew={"start": "22:00", "end": "06:00"},
            responsible_officer_id=None,
        ),
        f"/api/v1/subjects/{subject_id}/devices": lambda: {"platform": "android"},
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value inside a JSON document (keys and list indices)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return out
    for key, child in items:
        out.append((*prefix, key))
        # Deep geometry positions add many cases and little: stop below the first ring.
        if len(prefix) < 4:
            out.extend(_paths(child, (*prefix, key)))
    return out


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(doc))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


async def test_malformed_bodies_never_answer_5xx(
    client: Client, admin: str, station: str, fences: dict[str, int], fuzz_subject_id: int
) -> None:
    endpoints = _post_endpoints(station, fences, fuzz_subject_id)
    for endpoint in endpoints:
        path = endpoint.split("#")[0]
        for raw in MALFORMED_BODIES:
            resp = await client.post(
                path, data=raw, headers=bearer(admin) | {"Content-Type": "application/json"}
            )
            if path.endswith("/devices") and not raw.strip():
                # An empty body is how "no platform" is usually sent.
                assert resp.status == 201, await resp.text()
                continue
            error = await expect_error(resp, 400)
            assert error["code"] in (
                "empty_body",
                "invalid_json",
                "invalid_utf8",
                "invalid_request",
                "invalid_geojson",
            )


async def test_hostile_field_values_never_answer_5xx(
    client: Client, admin: str, station: str, fences: dict[str, int], fuzz_subject_id: int
) -> None:
    endpoints = _post_endpoints(station, fences, fuzz_subject_id)
    problems: list[str] = []
    for endpoint, make in endpoints.items():
        path = endpoint.split("#")[0]
        for field_path in _paths(make()):
            for value in HOSTILE_VALUES:
                body = _replaced(make(), field_path, value)
                resp = await client.post(path, json=body, headers=bearer(admin))
                text = await resp.text()
                context = f"{endpoint} {'.'.join(map(str, field_path))} = {value!r:.40}"
                if resp.status >= 500:
                    problems.append(f"{context}: {resp.status} {text}")
                elif resp.status >= 400:
                    error = json.loads(text).get("error")
                    if not (
                        isinstance(error, dict)
                        and isinstance(error.get("code"), str)
                        and isinstance(error.get("message"), str)
                    ):
                        problems.append(f"{context}: error shape {text}")
    assert not problems, "\n".join(problems)
