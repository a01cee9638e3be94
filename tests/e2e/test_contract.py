"""CONTRACT.md walked as an outside client walks it: only the documented paths, field names,
types, status codes and time formats, one section after another.

Outside acceptance checks drive the service through nothing else, so every shape asserted
here is one the contract fixes (extra fields are allowed and not looked at).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from correction_monitor.cli import build_parser, cmd_create_officer, cmd_migrate, cmd_serve
from tests.conftest import Officers, bearer, shared_data, unique
from tests.e2e.helpers import (
    COUNTY_SQUARE,
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    County,
    World,
    iso_z,
    make_county,
    make_world,
    recent,
    same_instant,
    track,
    track_of,
)

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]

# ISO-8601 with a UTC offset (``Z`` or ``±HH:MM``), as every time the API writes must be.
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ALERT_FIELDS = {
    "id",
    "subject_id",
    "type",
    "severity",
    "status",
    "started_at",
    "detected_at",
    "ended_at",
    "evidence",
}
SHANGHAI = ZoneInfo("Asia/Shanghai")


def is_iso_with_offset(value: Any) -> bool:
    return isinstance(value, str) and ISO_WITH_OFFSET.match(value) is not None


def epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


async def expect(resp: ClientResponse, status: int) -> Any:
    """The JSON body of a response that must have ``status``."""
    text = await resp.text()
    assert resp.status == status, f"{resp.method} {resp.url.path}: {resp.status} {text}"
    assert resp.content_type == "application/json", resp.content_type
    return json.loads(text)


async def expect_error(resp: ClientResponse, status: int | None = None) -> dict[str, Any]:
    """A 4xx (``status`` when given) carrying ``{"error": {"code", "message"}}``."""
    text = await resp.text()
    if status is not None:
        assert resp.status == status, f"{resp.url.path}: {resp.status} {text}"
    assert 400 <= resp.status < 500, f"{resp.url.path}: {resp.status} {text}"
    body = json.loads(text)
    error: dict[str, Any] = body["error"]
    assert re.fullmatch(r"[a-z0-9_]+", str(error["code"])), error
    assert isinstance(error["code"], str), error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    return error


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


@pytest.fixture(scope="module")
async def world(client: Client, officers: Officers, county: County) -> World:
    return await make_world(client, officers, in_county=county, level="strict")


def square(lon: float, lat: float, size: float = 0.01) -> list[list[float]]:
    """A closed ring: a ``size``° square with its south-west corner at (lon, lat)."""
    return [
        [lon, lat],
        [lon + size, lat],
        [lon + size, lat + size],
        [lon, lat + size],
        [lon, lat],
    ]


# --- health ----------------------------------------------------------------------------------


async def test_health_readiness_and_metrics(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200, await resp.text()
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    # Prometheus text exposition: HELP/TYPE comment lines and "name{labels} value" samples.
    assert re.search(r"^# TYPE \w+ (counter|gauge|histogram|summary)$", text, re.M)
    assert re.search(r"^\w+(\{[^}]*\})? [-+0-9.eE]+(inf|nan)?$", text, re.M | re.I)


# --- processes ------------------------------------------------------------------------------


def test_cli_takes_the_contract_command_lines() -> None:
    """The command lines CONTRACT.md fixes parse to their commands (running them is
    tests/integration/test_cli.py's part)."""
    parser = build_parser()
    args = parser.parse_args(["migrate"])
    assert args.func is cmd_migrate
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9090", "--workers", "4"])
    assert (args.func, args.host, args.port, args.workers) == (cmd_serve, "0.0.0.0", 9090, 4)
    args = parser.parse_args(["serve"])
    assert (args.func, args.host, args.port, args.workers) == (cmd_serve, None, None, 1)
    line = "admin create-officer --username U --password P --role admin --org-unit CODE"
    args = parser.parse_args([*line.split(), "--org-name", "XX县司法局"])
    assert args.func is cmd_create_officer
    assert (args.username, args.password, args.role) == ("U", "P", "admin")
    assert (args.org_unit, args.org_name) == ("CODE", "XX县司法局")
    assert parser.parse_args(line.split()).org_name is None


# --- officer API: token, org units -----------------------------------------------------------


async def test_token_shape(client: Client, officers: Officers, county: County) -> None:
    username, _ = await officers.create("officer", county.code)
    resp = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": "correct-horse-9"}
    )
    body = await expect(resp, 200)
    assert isinstance(body["access_token"], str)
    assert body["access_token"]
    assert body["token_type"] == "bearer"
    assert is_iso_with_offset(body["expires_at"])
    assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC)
    # The token works as a Bearer token on the officer API.
    resp = await client.get("/api/v1/alerts", headers=bearer(body["access_token"]))
    await expect(resp, 200)

    resp = await client.post("/api/v1/auth/token", json={"username": username, "password": "x"})
    await expect_error(resp, 401)


async def test_org_unit_with_and_without_optional_fields(client: Client, county: County) -> None:
    h = bearer(county.admin_token)
    code = unique("s")
    body = {
        "code": code,
        "name": "城关司法所",
        "parent_code": county.code,
        "timezone": "Asia/Urumqi",
    }
    created = await expect(await client.post("/api/v1/org-units", json=body, headers=h), 201)
    assert created["code"] == code
    plain = unique("s")
    created = await expect(
        await client.post(
            "/api/v1/org-units", json={"code": plain, "name": "南关司法所"}, headers=h
        ),
        201,
    )
    assert created["code"] == plain


# --- boundaries and geofences ----------------------------------------------------------------


def district(adcode: int, parent: int, ring: list[list[float]]) -> dict[str, Any]:
    """A DataV-style feature (adcodes as integers, as DataV writes them)."""
    return {
        "type": "Feature",
        "properties": {"adcode": adcode, "name": f"区{adcode}", "parent": {"adcode": parent}},
        "geometry": {"type": "MultiPolygon", "coordinates": [[ring]]},
    }


@pytest.mark.parametrize("crs", ["gcj02", "wgs84", "bd09"])
async def test_boundaries_import_and_city_level_adcode_fence(
    client: Client, county: County, crs: str
) -> None:
    h = bearer(county.admin_token)
    # Codes of a prefix no real province uses (9xxxx), and none imported yet by other tests
    # sharing this database: 9xxx01 and 9xxx02, districts of the city 9xxx00.
    listed = await expect(await client.get("/api/v1/boundaries", headers=h), 200)
    taken = {a["adcode"][:4] for a in listed["areas"]}
    start = int(unique("")[:4], 16) % 999
    city = next(
        900000 + k % 999 * 100
        for k in range(start, start + 999)
        if str(900000 + k % 999 * 100)[:4] not in taken
    )
    west, east = city + 1, city + 2
    fc = {
        "type": "FeatureCollection",
        "features": [
            district(west, city, square(116.30, 39.90)),
            district(east, city, square(116.31, 39.90)),
        ],
    }
    resp = await client.post(f"/api/v1/boundaries/import?crs={crs}", json=fc, headers=h)
    body = await expect(resp, 201)
    assert body["imported"] == 2
    assert body["adcodes"] == [str(west), str(east)]

    fence = {
        "name": "本市",
        "kind": "activity_area",
        "org_unit": county.code,
        "adcodes": [str(city)],
    }
    created = await expect(await client.post("/api/v1/geofences", json=fence, headers=h), 201)
    assert isinstance(created["id"], int)
    stored = await expect(await client.get(f"/api/v1/geofences/{created['id']}", headers=h), 200)
    # The city code is both its districts: one 0.02° × 0.01° rectangle.
    lons = [p[0] for poly in _polygons(stored["geometry"]) for p in poly[0]]
    assert max(lons) - min(lons) == pytest.approx(0.02, abs=0.01)


def _polygons(geometry: dict[str, Any]) -> list[Any]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    assert geometry["type"] == "MultiPolygon", geometry
    polygons: list[Any] = geometry["coordinates"]
    return polygons


async def test_real_datav_files_import_as_given(client: Client, county: County) -> None:
    """DataV's simplified Beijing file (one district of which crosses itself) imports with
    the contract's plain request, and its province code makes a fence."""
    data = shared_data("boundaries", "datav_GeoMapData_CN", "province", "110000.json")
    resp = await client.post(
        "/api/v1/boundaries/import?crs=gcj02",
        data=data.read_bytes(),
        headers=bearer(county.admin_token) | {"Content-Type": "application/json"},
    )
    body = await expect(resp, 201)
    assert body["imported"] == 16
    assert "110108" in body["adcodes"]
    fence = {"name": "北京", "kind": "activity_area", "org_unit": county.code}
    resp = await client.post(
        "/api/v1/geofences",
        json=fence | {"adcodes": ["110000"]},
        headers=bearer(county.admin_token),
    )
    assert isinstance((await expect(resp, 201))["id"], int)


async def test_real_datav_multipolygon_as_a_fence_geometry(client: Client, county: County) -> None:
    """兴隆县's DataV MultiPolygon (two parts, one ring crossing itself) posted as a fence."""
    data = shared_data("boundaries", "datav_GeoMapData_CN", "county", "130822.json")
    geometry = json.loads(data.read_bytes())["features"][0]["geometry"]
    assert geometry["type"] == "MultiPolygon"
    body = {
        "name": "兴隆县",
        "kind": "activity_area",
        "org_unit": county.code,
        "geometry": geometry,
        "crs": "gcj02",
    }
    resp = await client.post("/api/v1/geofences", json=body, headers=bearer(county.admin_token))
    assert isinstance((await expect(resp, 201))["id"], int)


GEOMETRIES: dict[str, dict[str, Any]] = {
    "polygon": {"geometry": {"type": "Polygon", "coordinates": [square(116.30, 39.90)]}},
    "multipolygon": {
        "geometry": {
            "type": "MultiPolygon",
            "coordinates": [[square(116.30, 39.90)], [square(116.33, 39.90)]],
        }
    },
    "circle": {"geometry": {"type": "Point", "coordinates": [116.31, 39.91]}, "radius_m": 300},
}


@pytest.mark.parametrize("crs", [None, "wgs84", "gcj02", "bd09"])
async def test_geofence_variants(client: Client, county: County, crs: str | None) -> None:
    h = bearer(county.admin_token)
    schedule = {
        "windows": [
            {"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "17:30"},
            {"days": [6, 7], "start": "22:00", "end": "06:00"},
        ]
    }
    for kind in ("activity_area", "exclusion", "home"):
        for shape_name, shape in GEOMETRIES.items():
            body: dict[str, Any] = {"name": shape_name, "kind": kind, "org_unit": county.code}
            body |= shape
            if crs is not None:
                body["crs"] = crs
            if kind == "exclusion":
                body["schedule"] = schedule
            resp = await client.post("/api/v1/geofences", json=body, headers=h)
            created = await expect(resp, 201)
            assert isinstance(created["id"], int), created


async def test_bad_geofences_are_4xx(client: Client, county: County) -> None:
    h = bearer(county.admin_token)
    base = {"name": "x", "kind": "exclusion", "org_unit": county.code}
    point = {"type": "Point", "coordinates": [116.3, 39.9]}
    for body in (
        base,  # neither geometry nor adcodes
        base | {"geometry": point},  # a Point without radius_m
        base | {"geometry": point, "radius_m": -5},
        base | {"geometry": COUNTY_SQUARE, "crs": "utm"},
        base | {"geometry": COUNTY_SQUARE, "kind": "prison"},
        base | {"adcodes": ["000001"]},
        base | {"geometry": {"type": "Polygon", "coordinates": [[[1, 2]]]}},
        base | {"geometry": COUNTY_SQUARE, "schedule": {"windows": [{"days": [8]}]}},
        base
        | {
            "geometry": COUNTY_SQUARE,
            "schedule": {"windows": [{"days": [1], "start": "25:00", "end": "26:00"}]},
        },
    ):
        await expect_error(await client.post("/api/v1/geofences", json=body, headers=h))


# --- subjects and devices --------------------------------------------------------------------


async def _station(client: Client, county: County) -> str:
    code = unique("s")
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": code, "name": "司法所", "parent_code": county.code},
        headers=bearer(county.admin_token),
    )
    await expect(resp, 201)
    return code


async def _fence(client: Client, county: County, kind: str, geometry: dict[str, Any]) -> int:
    body = {"name": kind, "kind": kind, "org_unit": county.code} | geometry
    resp = await client.post("/api/v1/geofences", json=body, headers=bearer(county.admin_token))
    fence_id: int = (await expect(resp, 201))["id"]
    return fence_id


@pytest.mark.parametrize(
    ("term_start", "term_end"),
    [
        ("2026-01-01", "2027-12-31"),
        # Epoch milliseconds of local midnight in Beijing (16:00 UTC the day before).
        (
            epoch_ms(datetime(2026, 1, 1, tzinfo=SHANGHAI)),
            epoch_ms(datetime(2027, 12, 31, tzinfo=SHANGHAI)),
        ),
        ("2026-01-01T00:00:00+08:00", "2027-12-31T00:00:00Z"),
        (str(epoch_ms(datetime(2026, 1, 1, 9, 30, tzinfo=SHANGHAI))), "2027-12-31T18:00:00+08:00"),
    ],
    ids=["dates", "epoch-ms", "iso-instants", "epoch-ms-text-and-iso-daytime"],
)
async def test_subject_with_every_optional_field(
    client: Client, county: County, term_start: Any, term_end: Any
) -> None:
    h = bearer(county.admin_token)
    station = await _station(client, county)
    area = await _fence(client, county, "activity_area", {"geometry": COUNTY_SQUARE})
    zone = await _fence(client, county, "exclusion", GEOMETRIES["circle"] | {"crs": "gcj02"})
    body = {
        "name": "李四",
        "org_unit": station,
        "supervision_level": "normal",
        "category": "parole",
        "term_start": term_start,
        "term_end": term_end,
        "activity_area_id": area,
        "exclusion_zone_ids": [zone],
        "home": {"lat": 39.905, "lon": 116.305, "crs": "gcj02", "radius_m": 150},
        "curfew": {"start": "22:00", "end": "06:00"},
    }
    created = await expect(await client.post("/api/v1/subjects", json=body, headers=h), 201)
    assert isinstance(created["id"], int)
    # Terms are calendar days of the station (China Standard Time here).
    assert created["term_start"] == "2026-01-01"
    assert created["term_end"] == "2027-12-31"


@pytest.mark.parametrize(
    ("level", "category"),
    [
        ("strict", "probation"),
        ("normal", "parole"),
        ("lenient", "control"),
        ("lenient", "medical_parole"),
    ],
)
async def test_subject_levels_and_categories(
    client: Client, world: World, level: str, category: str
) -> None:
    body = {
        "name": "王五",
        "org_unit": world.station,
        "supervision_level": level,
        "category": category,
        "term_start": "2026-03-01",
        "term_end": "2026-09-01",
        "activity_area_id": world.area_id,
        "exclusion_zone_ids": [],
    }
    resp = await client.post("/api/v1/subjects", json=body, headers=bearer(world.admin_token))
    assert isinstance((await expect(resp, 201))["id"], int)


async def test_bad_subjects_are_4xx(client: Client, world: World) -> None:
    h = bearer(world.admin_token)
    base = {
        "name": "赵六",
        "org_unit": world.station,
        "supervision_level": "strict",
        "category": "probation",
        "term_start": "2026-01-01",
        "term_end": "2026-12-31",
        "activity_area_id": world.area_id,
        "exclusion_zone_ids": [],
    }
    for body in (
        base | {"supervision_level": "maximum"},
        base | {"category": "bail"},
        base | {"term_start": "next monday"},
        base | {"term_end": True},
        base | {"term_end": "9999-12-31T23:00:00Z"},  # the next day in Beijing is year 10000
        base | {"term_start": "0001-01-01T00:00:00+08:00"},
        base | {"term_start": "2026-06-01", "term_end": 1767196800000},  # ends before it starts
        base | {"activity_area_id": "one"},
        base | {"activity_area_id": 2**31 - 1},
        base | {"exclusion_zone_ids": [2**40]},
        base | {"home": {"lat": 95, "lon": 116}},
        base | {"home": {"lat": 39.9, "lon": 116.3, "crs": "itrf"}},
        base | {"home": {"lat": 39.9, "lon": 116.3}, "curfew": {"start": "22", "end": "6"}},
        base | {"org_unit": unique("nowhere")},
    ):
        await expect_error(await client.post("/api/v1/subjects", json=body, headers=h))


async def test_device_enrolment_shape(client: Client, world: World) -> None:
    h = bearer(world.admin_token)
    path = f"/api/v1/subjects/{world.subject_id}/devices"
    bodies: list[dict[str, Any]] = [{"json": {"platform": "android"}}, {"json": {}}, {}]
    for kwargs in bodies:
        body = await expect(await client.post(path, headers=h, **kwargs), 201)
        assert isinstance(body["device_id"], int)
        assert isinstance(body["token"], str)
        assert body["token"]
        assert isinstance(body["osmand_id"], str)
        assert body["osmand_id"]
    await expect_error(await client.post(path, json={"platform": 7}, headers=h))
    await expect_error(await client.post("/api/v1/subjects/999999999/devices", json={}, headers=h))


# --- device API ------------------------------------------------------------------------------


async def test_fixes_take_iso_and_epoch_ms_times_and_count_duplicates(
    client: Client, officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county, level="lenient")
    start = recent(90)
    times = [start + timedelta(minutes=i) for i in range(5)]
    lon, lat = NEAR_INSIDE
    fixes: list[dict[str, Any]] = [
        {"id": "a", "ts": iso_z(times[0]), "lat": lat, "lon": lon},
        {"id": "b", "ts": times[1].astimezone(SHANGHAI).isoformat(), "lat": lat, "lon": lon},
        {"ts": epoch_ms(times[2]), "lat": lat, "lon": lon, "accuracy_m": 12.5},
        {"ts": str(epoch_ms(times[3])), "lat": lat, "lon": lon, "crs": "wgs84"},
        {
            "id": "e",
            "ts": iso_z(times[4]),
            "lat": lat,
            "lon": lon,
            "accuracy_m": 8,
            "crs": "gcj02",
            "speed_mps": 1.2,
            "bearing": 90,
            "altitude_m": 45.0,
            "battery": 80,
            "provider": "gps",
            "mock": False,
        },
    ]
    h = bearer(world.device_token)
    body = await expect(await client.post("/api/v1/fixes", json={"fixes": fixes}, headers=h), 200)
    assert body == {"accepted": 5, "duplicates": 0, "rejected": []}
    body = await expect(await client.post("/api/v1/fixes", json={"fixes": fixes}, headers=h), 200)
    assert body == {"accepted": 0, "duplicates": 5, "rejected": []}

    # The track takes its window in either form too, and writes instants with an offset.
    for window in (
        {"from": str(epoch_ms(start - timedelta(minutes=1))), "to": str(epoch_ms(times[4]) + 1)},
        {
            "from": (start - timedelta(minutes=1)).astimezone(SHANGHAI).isoformat(),
            "to": iso_z(times[4] + timedelta(seconds=1)),
            "purpose": "核查",
        },
        # ISO-8601 without an offset reads as UTC.
        {
            "from": (start - timedelta(minutes=1)).replace(tzinfo=None).isoformat(),
            "to": (times[4] + timedelta(seconds=1)).replace(tzinfo=None).isoformat(),
        },
    ):
        resp = await client.get(
            f"/api/v1/subjects/{world.subject_id}/track",
            params=window,
            headers=bearer(world.admin_token),
        )
        collection = await expect(resp, 200)
        assert collection["type"] == "FeatureCollection"
        features = collection["features"]
        assert len(features) == 5
        stamps = [f["properties"]["ts"] for f in features]
        assert all(is_iso_with_offset(s) for s in stamps), stamps
        assert [same_instant(s, iso_z(t)) for s, t in zip(stamps, times, strict=True)] == [True] * 5
        for feature in features:
            assert feature["type"] == "Feature"
            assert feature["geometry"]["type"] == "Point"
        # The GCJ-02 fix is stored in WGS-84: some 500-600 m south-west of what was sent.
        gcj_lon, gcj_lat = features[4]["geometry"]["coordinates"]
        assert 0.003 < lon - gcj_lon < 0.01
        assert 0.0005 < lat - gcj_lat < 0.003
        assert features[0]["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-6)


async def test_fix_batches_beyond_1000_are_413(client: Client, world: World) -> None:
    start = recent(60)
    fixes = [
        {"ts": epoch_ms(start) + i, "lat": NEAR_INSIDE[1], "lon": NEAR_INSIDE[0]}
        for i in range(1001)
    ]
    resp = await client.post(
        "/api/v1/fixes", json={"fixes": fixes}, headers=bearer(world.device_token)
    )
    await expect_error(resp, 413)


async def test_phone_protocol_batches_beyond_1000_are_413(client: Client, world: World) -> None:
    start = int(recent(60).timestamp())
    lon, lat = NEAR_INSIDE
    locations = [
        {
            "timestamp": iso_z(datetime.fromtimestamp(start + i, UTC)),
            "coords": {"latitude": lat, "longitude": lon},
        }
        for i in range(1001)
    ]
    resp = await client.post("/osmand/", json={"device_id": world.osmand_id, "location": locations})
    await expect_error(resp, 413)
    messages = [
        {"_type": "location", "lat": lat, "lon": lon, "tst": start + i} for i in range(1001)
    ]
    auth = base64.b64encode(f"{world.osmand_id}:{world.device_token}".encode()).decode()
    resp = await client.post(
        "/owntracks", json=messages, headers={"Authorization": f"Basic {auth}"}
    )
    await expect_error(resp, 413)


async def test_bad_fixes_are_refused_per_fix_or_as_4xx(client: Client, world: World) -> None:
    h = bearer(world.device_token)
    when = iso_z(recent(50))
    body = await expect(
        await client.post(
            "/api/v1/fixes",
            json={
                "fixes": [
                    {"ts": when, "lat": 95, "lon": 116.3},
                    {"ts": "yesterday", "lat": 39.9, "lon": 116.3},
                    {"lat": 39.9, "lon": 116.3},
                    {"ts": when, "lat": 39.9, "lon": 116.3, "crs": "utm"},
                ]
            },
            headers=h,
        ),
        200,
    )
    assert body["accepted"] == 0
    assert body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == [0, 1, 2, 3]
    assert all(isinstance(r["reason"], str) and r["reason"] for r in body["rejected"])
    for raw in (b"", b"{", b"[]", b'{"fixes": 3}', b'{"fixes": null}'):
        resp = await client.post(
            "/api/v1/fixes", data=raw, headers=h | {"Content-Type": "application/json"}
        )
        await expect_error(resp, 400)
    await expect_error(await client.post("/api/v1/fixes", json={"fixes": []}), 401)
    resp = await client.post("/api/v1/fixes", json={"fixes": []}, headers=bearer("nope"))
    await expect_error(resp, 401)


@pytest.mark.parametrize("key", ["id", "deviceid", "device_id"])
async def test_osmand_names_the_device_three_ways(client: Client, world: World, key: str) -> None:
    # Traccar Client sends epoch seconds; each form gets its own minute so none is a duplicate.
    offset = {"id": 0, "deviceid": 1, "device_id": 2}[key]
    base = recent(40) + timedelta(minutes=3 * offset)
    lon, lat = NEAR_INSIDE
    query = {key: world.osmand_id, "lat": str(lat), "lon": str(lon), "accuracy": "10"}
    resp = await client.get("/osmand/", params=query | {"timestamp": str(int(base.timestamp()))})
    assert (await expect(resp, 200))["accepted"] == 1
    form = query | {"timestamp": str(int(base.timestamp()) + 60)}
    resp = await client.post("/osmand/", data=form)
    assert (await expect(resp, 200))["accepted"] == 1
    # Traccar Client for Android POSTs the query form with an empty body.
    resp = await client.post(
        "/osmand/", params=query | {"timestamp": str(int(base.timestamp()) + 90)}
    )
    assert (await expect(resp, 200))["accepted"] == 1
    location = {
        "timestamp": iso_z(base + timedelta(seconds=120)),
        "coords": {"latitude": lat, "longitude": lon, "accuracy": 10},
    }
    resp = await client.post("/osmand/", json={key: world.osmand_id, "location": location})
    assert (await expect(resp, 200))["accepted"] == 1


async def test_owntracks_basic_auth(client: Client, world: World) -> None:
    when = recent(30)
    message = {
        "_type": "location",
        "lat": NEAR_INSIDE[1],
        "lon": NEAR_INSIDE[0],
        "tst": int(when.timestamp()),
        "acc": 10,
    }
    good = base64.b64encode(f"{world.osmand_id}:{world.device_token}".encode()).decode()
    resp = await client.post("/owntracks", json=message, headers={"Authorization": f"Basic {good}"})
    assert resp.status == 200, await resp.text()
    stored = await track_of(client, world, when - timedelta(seconds=1), when + timedelta(seconds=1))
    assert [f["properties"]["ts"] for f in stored] == [iso_z(when)]
    bad = base64.b64encode(f"{world.osmand_id}:wrong".encode()).decode()
    resp = await client.post("/owntracks", json=message, headers={"Authorization": f"Basic {bad}"})
    await expect_error(resp, 401)


# --- alerts ----------------------------------------------------------------------------------


async def read_event(resp: ClientResponse, timeout_s: float = 10.0) -> dict[str, str]:
    """The next event of an SSE stream as its fields (comments and keep-alives skipped)."""
    fields: dict[str, str] = {}
    while True:
        line = await asyncio.wait_for(resp.content.readline(), timeout_s)
        assert line, "the stream ended"
        text = line.decode().rstrip("\r\n")
        if not text:
            if "data" in fields:
                return fields
            fields = {}
        elif not text.startswith(":"):
            name, _, value = text.partition(":")
            fields[name] = value.removeprefix(" ")


async def event_of(resp: ClientResponse, alert_id: int) -> tuple[int, dict[str, Any]]:
    """The next event about ``alert_id``: (event id, alert)."""
    while True:
        event = await read_event(resp)
        data = json.loads(event["data"])
        if data["id"] == alert_id:
            return int(event["id"]), data


def assert_alert_shape(alert: dict[str, Any]) -> None:
    assert alert.keys() >= ALERT_FIELDS, alert
    assert isinstance(alert["id"], int)
    assert isinstance(alert["subject_id"], int)
    assert isinstance(alert["type"], str)
    assert isinstance(alert["severity"], str)
    assert alert["status"] in ("open", "acknowledged", "resolved")
    assert is_iso_with_offset(alert["started_at"])
    assert is_iso_with_offset(alert["detected_at"])
    assert alert["ended_at"] is None or is_iso_with_offset(alert["ended_at"])
    assert isinstance(alert["evidence"], dict)


async def test_alert_lifecycle_list_filters_and_stream(
    client: Client, officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county, level="strict")
    h = bearer(world.admin_token)
    stream = await client.get("/api/v1/alerts/stream", headers=h)
    assert stream.status == 200
    assert stream.content_type == "text/event-stream"
    before = datetime.now(UTC)
    fixes = track(recent(60), [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 4 + [NEAR_INSIDE] * 4)
    resp = await client.post(
        "/api/v1/fixes", json={"fixes": fixes}, headers=bearer(world.device_token)
    )
    assert (await expect(resp, 200))["accepted"] == 10

    listed = await expect(
        await client.get(
            "/api/v1/alerts",
            params={"subject_id": str(world.subject_id), "type": "left_activity_area"},
            headers=h,
        ),
        200,
    )
    assert list(listed) == ["alerts"]
    [alert] = listed["alerts"]
    assert_alert_shape(alert)
    assert alert["subject_id"] == world.subject_id
    assert alert["type"] == "left_activity_area"
    assert alert["status"] == "open"
    # started_at: the first outside fix; detected_at: server time; ended_at: back inside.
    assert same_instant(alert["started_at"], fixes[2]["ts"])
    assert same_instant(alert["ended_at"], fixes[6]["ts"])
    assert datetime.fromisoformat(alert["detected_at"]) >= before - timedelta(seconds=1)

    first_id, streamed = await event_of(stream, alert["id"])
    assert_alert_shape(streamed)
    stream.close()

    for status in ("acknowledged", "resolved"):
        resp = await client.get(
            "/api/v1/alerts",
            params={"subject_id": str(world.subject_id), "status": status},
            headers=h,
        )
        assert (await expect(resp, 200))["alerts"] == []

    # Acknowledged while no one listens: a reconnect with Last-Event-ID gets it.
    acked = await expect(
        await client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=h), 200
    )
    assert_alert_shape(acked)
    assert acked["status"] == "acknowledged"
    resp = await client.get(
        "/api/v1/alerts",
        params={"subject_id": str(world.subject_id), "status": "acknowledged"},
        headers=h,
    )
    assert [a["id"] for a in (await expect(resp, 200))["alerts"]] == [alert["id"]]

    resumed = await client.get(
        "/api/v1/alerts/stream", headers=h | {"Last-Event-ID": str(first_id)}
    )
    assert resumed.status == 200
    next_id, data = await event_of(resumed, alert["id"])
    assert next_id > first_id
    assert data["status"] == "acknowledged"
    resumed.close()

    resp = await client.post(
        f"/api/v1/alerts/{alert['id']}/resolve",
        json={"disposition": "false_alarm", "note": "手机定位漂移"},
        headers=h,
    )
    resolved = await expect(resp, 200)
    assert resolved["status"] == "resolved"
    assert_alert_shape(resolved)
    resp = await client.post(
        f"/api/v1/alerts/{alert['id']}/resolve", json={"disposition": "maybe"}, headers=h
    )
    await expect_error(resp)


@pytest.mark.parametrize("disposition", ["confirmed", "justified"])
async def test_resolve_dispositions_without_a_note(
    client: Client, officers: Officers, county: County, disposition: str
) -> None:
    world = await make_world(client, officers, in_county=county, level="strict")
    fixes = track(recent(60), [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 4)
    resp = await client.post(
        "/api/v1/fixes", json={"fixes": fixes}, headers=bearer(world.device_token)
    )
    await expect(resp, 200)
    h = bearer(world.admin_token)
    resp = await client.get(
        "/api/v1/alerts", params={"subject_id": str(world.subject_id)}, headers=h
    )
    [alert] = (await expect(resp, 200))["alerts"]
    assert alert["ended_at"] is None
    resp = await client.post(
        f"/api/v1/alerts/{alert['id']}/resolve", json={"disposition": disposition}, headers=h
    )
    assert (await expect(resp, 200))["status"] == "resolved"


async def test_alert_queries_with_bad_input_are_4xx(client: Client, world: World) -> None:
    h = bearer(world.admin_token)
    for params in ({"subject_id": "x"}, {"type": "speeding"}, {"status": "closed"}):
        await expect_error(await client.get("/api/v1/alerts", params=params, headers=h), 400)
    resp = await client.get("/api/v1/alerts/stream", headers=h | {"Last-Event-ID": "abc"})
    await expect_error(resp, 400)
    await expect_error(await client.post("/api/v1/alerts/999999999/acknowledge", headers=h), 404)
    await expect_error(await client.get("/api/v1/alerts"), 401)


# --- errors anywhere -------------------------------------------------------------------------


async def test_unknown_paths_methods_and_bodies_answer_the_error_shape(
    client: Client, world: World
) -> None:
    h = bearer(world.admin_token)
    await expect_error(await client.get("/api/v1/nothing-here", headers=h), 404)
    await expect_error(await client.delete("/api/v1/alerts", headers=h), 405)
    for path in (
        "/api/v1/org-units",
        "/api/v1/geofences",
        "/api/v1/subjects",
        "/api/v1/auth/token",
    ):
        for raw in (b"", b"not json", b"[1, 2]", b'"text"', b"null"):
            resp = await client.post(
                path, data=raw, headers=h | {"Content-Type": "application/json"}
            )
            await expect_error(resp, 400)
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}/track",
        params={"from": "tomorrow", "to": "2026-13-45T00:00:00Z"},
        headers=h,
    )
    await expect_error(resp, 400)
