"""Building a small supervised world over HTTP: a county, a station, fences, a subject, a phone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from correction_monitor.adapters import outbox
from correction_monitor.domain.alerts import AlertChange
from correction_monitor.domain.events import alert_event
from correction_monitor.web.keys import POOL
from tests.conftest import Officers, bearer, unique

# A 0.2° × 0.2° square county near Beijing (WGS-84), about 17 km × 22 km.
COUNTY_SQUARE = {
    "type": "Polygon",
    "coordinates": [[[116.2, 39.8], [116.4, 39.8], [116.4, 40.0], [116.2, 40.0], [116.2, 39.8]]],
}
INSIDE = (116.30, 39.90)
OUTSIDE = (116.60, 39.90)  # ~17 km east of the county


@dataclass
class World:
    county: str
    station: str
    admin_token: str
    area_id: int
    subject_id: int
    device_token: str
    osmand_id: str
    device_id: int


@dataclass(frozen=True)
class County:
    """A county unit and an administrator's token, shared by several worlds."""

    code: str
    admin_token: str


async def make_county(officers: Officers) -> County:
    """A new county with its administrator (creating an officer costs ~0.7 s: share it)."""
    code = unique("c")
    _, admin = await officers.create("admin", code)
    return County(code, admin)


async def make_world(
    client: TestClient[Any, Any],
    officers: Officers,
    *,
    level: str = "strict",
    area: dict[str, Any] | None = None,
    area_crs: str = "wgs84",
    exclusions: list[dict[str, Any]] | None = None,
    home: dict[str, Any] | None = None,
    curfew: dict[str, str] | None = None,
    in_county: County | None = None,
    station_timezone: str = "Asia/Shanghai",
) -> World:
    """A station with one subject and an enrolled phone, in a new county (or ``in_county``)."""
    if in_county is None:
        in_county = await make_county(officers)
    county, admin = in_county.code, in_county.admin_token
    station = unique("s")
    h = bearer(admin)
    resp = await client.post(
        "/api/v1/org-units",
        json={
            "code": station,
            "name": "城关司法所",
            "parent_code": county,
            "timezone": station_timezone,
        },
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post(
        "/api/v1/geofences",
        json={
            "name": "XX县",
            "kind": "activity_area",
            "org_unit": county,
            "geometry": area or COUNTY_SQUARE,
            "crs": area_crs,
        },
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    area_id = (await resp.json())["id"]
    zone_ids = []
    for zone in exclusions or []:
        resp = await client.post("/api/v1/geofences", json=zone | {"org_unit": county}, headers=h)
        assert resp.status == 201, await resp.text()
        zone_ids.append((await resp.json())["id"])
    body: dict[str, Any] = {
        "name": "张三",
        "org_unit": station,
        "supervision_level": level,
        "category": "probation",
        "term_start": "2026-01-01",
        "term_end": "2027-12-31",
        "activity_area_id": area_id,
        "exclusion_zone_ids": zone_ids,
    }
    if home:
        body["home"] = home
    if curfew:
        body["curfew"] = curfew
    resp = await client.post("/api/v1/subjects", json=body, headers=h)
    assert resp.status == 201, await resp.text()
    subject_id = (await resp.json())["id"]
    resp = await client.post(f"/api/v1/subjects/{subject_id}/devices", json={}, headers=h)
    assert resp.status == 201, await resp.text()
    dev = await resp.json()
    return World(
        county,
        station,
        admin,
        area_id,
        subject_id,
        dev["token"],
        dev["osmand_id"],
        dev["device_id"],
    )


def track(
    start: datetime,
    points: list[tuple[float, float]],
    step_s: float = 60.0,
    accuracy_m: float = 10.0,
    crs: str | None = None,
) -> list[dict[str, Any]]:
    """Native fixes at ``step_s`` intervals from ``start`` through ``points``."""
    fixes = []
    for i, (lon, lat) in enumerate(points):
        ts = start + timedelta(seconds=step_s * i)
        fix: dict[str, Any] = {
            "id": f"f{ts.timestamp():.0f}",
            "ts": ts.isoformat(),
            "lat": lat,
            "lon": lon,
            "accuracy_m": accuracy_m,
        }
        if crs:
            fix["crs"] = crs
        fixes.append(fix)
    return fixes


def recent(minutes: float = 120) -> datetime:
    """A start time safely in the past (fixes may not come from the future)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(minutes=minutes)


async def send(client: TestClient[Any, Any], world: World, fixes: list[dict[str, Any]]) -> Any:
    resp = await client.post(
        "/api/v1/fixes", json={"fixes": fixes}, headers=bearer(world.device_token)
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def alerts_of(client: TestClient[Any, Any], world: World, **filters: str) -> list[Any]:
    params = {"subject_id": str(world.subject_id)} | filters
    resp = await client.get("/api/v1/alerts", params=params, headers=bearer(world.admin_token))
    assert resp.status == 200, await resp.text()
    alerts: list[Any] = (await resp.json())["alerts"]
    return sorted(alerts, key=lambda a: a["started_at"])


# Just inside / just outside the square's east edge (116.4°E): about 430 m either side, so
# stepping across at 60 s a fix is an ordinary walk, never a speed-test suspect.
NEAR_INSIDE = (116.395, 39.90)
NEAR_OUTSIDE = (116.405, 39.90)


def iso_z(moment: datetime) -> str:
    """ISO-8601 UTC with ``Z``, as the API writes instants."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def same_instant(a: str, b: str) -> bool:
    """Whether two ISO-8601 strings name the same instant (however written)."""
    return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(
        b.replace("Z", "+00:00")
    )


async def post_fixes(
    client: TestClient[Any, Any], token: str, fixes: list[dict[str, Any]]
) -> tuple[int, Any]:
    """POST a native batch; returns (status, JSON body) whatever the status."""
    resp = await client.post("/api/v1/fixes", json={"fixes": fixes}, headers=bearer(token))
    return resp.status, await resp.json()


async def track_of(
    client: TestClient[Any, Any],
    world: World,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Any]:
    """The subject's stored fixes (GeoJSON features) between ``start`` and ``end``
    (default: the last 30 days up to a minute from now)."""
    now = datetime.now(UTC)
    params = {
        "from": iso_z(start or now - timedelta(days=30)),
        "to": iso_z(end or now + timedelta(minutes=1)),
        "purpose": "e2e test",
    }
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}/track",
        params=params,
        headers=bearer(world.admin_token),
    )
    assert resp.status == 200, await resp.text()
    features: list[Any] = (await resp.json())["features"]
    return features


async def sql_row(client: TestClient[Any, Any], query: str, *args: Any) -> Any:
    """One row read straight from the app's database (for state no endpoint shows)."""
    async with client.app[POOL].acquire() as conn:
        return await conn.fetchrow(query, *args)


async def expect_error(resp: ClientResponse, status: int, code: str | None = None) -> Any:
    """Assert the contract's error shape and status; return the ``error`` object."""
    text = await resp.text()
    assert resp.status == status, text
    body = json.loads(text)
    assert list(body) == ["error"], body
    error = body["error"]
    assert isinstance(error["code"], str), error
    assert error["code"]
    assert isinstance(error["message"], str), error
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


async def expect_json(resp: ClientResponse, status: int = 200) -> Any:
    text = await resp.text()
    assert resp.status == status, text
    return json.loads(text)


async def record_alert_event(
    conn: asyncpg.Connection, alert_id: int, org_unit_id: int, kind: str
) -> int:
    """Append one event of an alert to the event log on ``conn``, as a change of that alert
    would (the transaction's last write); returns its id."""
    subject_id: int = await conn.fetchval("SELECT subject_id FROM alerts WHERE id = $1", alert_id)
    event = alert_event(AlertChange(kind), alert_id, org_unit_id, subject_id)
    (event_id,) = await outbox.append(conn, [event])
    return event_id
