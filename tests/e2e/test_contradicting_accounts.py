"""Late fixes cannot erase what happened: a second account of minutes a device has already
reported is stored and flagged, never evaluated, and raises a device_integrity alert.

The attack, as tried from outside: once an exclusion-zone alert opened, 20 fixes back-dated
into the episode, 500 m outside the zone, posted with the phone's Traccar id (or its token).
Replayed as a gap fill they would break the breach apart and retract the alert. An honest
phone's offline buffer, sent after its live fix in pages, is still evaluated as in order.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer
from tests.e2e.helpers import (
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    County,
    World,
    alerts_of,
    iso_z,
    make_county,
    make_world,
    recent,
    send,
    track_of,
)

pytestmark = pytest.mark.e2e

SCHOOL = (116.30, 39.90)
RADIUS_M = 300
DEG_PER_M_LON = 1 / 85_390  # at 39.9°N
IN_ZONE = (SCHOOL[0] + 200 * DEG_PER_M_LON, SCHOOL[1])  # 200 m east of the centre
BESIDE = (SCHOOL[0] + 430 * DEG_PER_M_LON, SCHOOL[1])  # 130 m outside the circle
FAKE = (SCHOOL[0] + 800 * DEG_PER_M_LON, SCHOOL[1])  # 500 m outside the circle


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


async def zone_world(client: TestClient[Any, Any], officers: Officers, county: County) -> World:
    school = {
        "name": "某小学",
        "kind": "exclusion",
        "geometry": {"type": "Point", "coordinates": list(SCHOOL)},
        "radius_m": RADIUS_M,
    }
    return await make_world(client, officers, in_county=county, exclusions=[school])


def at(ts: datetime, point: tuple[float, float]) -> dict[str, Any]:
    """A native fix (with an id, as the app sends) at ``ts`` and ``point`` (lon, lat)."""
    return {
        "id": f"f{ts.timestamp():.0f}",
        "ts": ts.isoformat(),
        "lon": point[0],
        "lat": point[1],
        "accuracy_m": 10,
    }


async def osmand(client: TestClient[Any, Any], world: World, fix: dict[str, Any]) -> Any:
    """Traccar Client's one-fix GET: only the 10-digit id, no token."""
    ts = datetime.fromisoformat(fix["ts"])
    query = {
        "id": world.osmand_id,
        "timestamp": str(int(ts.timestamp())),
        "lat": str(fix["lat"]),
        "lon": str(fix["lon"]),
        "accuracy": str(fix["accuracy_m"]),
    }
    resp = await client.get("/osmand/", params=query)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def post(client: TestClient[Any, Any], world: World, fixes: list[Any], route: str) -> int:
    """Send ``fixes`` the way ``route`` does (osmand: one GET each); returns how many were
    accepted (the others were duplicates)."""
    if route == "native":
        result = await send(client, world, fixes)
        assert result["rejected"] == []
        return int(result["accepted"])
    accepted = 0
    for fix in fixes:
        result = await osmand(client, world, fix)
        assert result["rejected"] == []
        accepted += result["accepted"]
    return accepted


def by_type(alerts: list[Any], kind: str) -> list[Any]:
    return [a for a in alerts if a["type"] == kind]


def flags_of(features: list[Any]) -> dict[str, list[str]]:
    return {f["properties"]["ts"]: f["properties"]["flags"] for f in features}


@pytest.mark.parametrize("route", ["osmand", "native"])
async def test_back_dated_fixes_cannot_erase_an_exclusion_zone_alert(
    client: TestClient[Any, Any], officers: Officers, county: County, route: str
) -> None:
    world = await zone_world(client, officers, county)
    start = recent(60)
    minute = timedelta(minutes=1)
    # Beside the school, then inside it for 21 minutes, one fix a minute.
    live = [at(start + n * minute, BESIDE if n < 2 else IN_ZONE) for n in range(23)]
    assert await post(client, world, live, route) == len(live)
    [zone_alert] = await alerts_of(client, world)
    assert zone_alert["type"] == "entered_exclusion_zone"
    assert zone_alert["started_at"] == iso_z(start + 2 * minute)
    assert zone_alert["ended_at"] is None

    # Half a minute after each inside fix: "I was 500 m away" (20 m/s from the fix before:
    # a plausible walk, no spike).
    fakes = [at(start + (n + 0.5) * minute, FAKE) for n in range(2, 22)]
    assert await post(client, world, fakes, route) == 20

    shown = await alerts_of(client, world)
    [kept] = by_type(shown, "entered_exclusion_zone")
    assert kept == zone_alert, "the alert must stand exactly as raised"
    [integrity] = by_type(shown, "device_integrity")
    assert integrity["status"] == "open"
    assert integrity["started_at"] == iso_z(start + 2.5 * minute)
    evidence = integrity["evidence"]
    assert evidence["reason"] == "contradicting_account"
    assert evidence["device_id"] == world.device_id
    assert evidence["covered_gap_s"] == 90.0
    assert (evidence["from"], evidence["to"]) == (
        iso_z(start + 2.5 * minute),
        iso_z(start + 21.5 * minute),
    )
    assert evidence["late_count"] == 20
    assert evidence["late_fixes"] == [
        {
            "at": iso_z(start + (n + 0.5) * minute),
            "lon": pytest.approx(FAKE[0], abs=1e-7),
            "lat": pytest.approx(FAKE[1], abs=1e-7),
            "accuracy_m": 10.0,
            "device_id": world.device_id,
            "after": iso_z(start + n * minute),
            "before": iso_z(start + (n + 1) * minute),
        }
        for n in range(2, 22)
    ]
    assert evidence["stored_fixes"] == [
        {
            "at": iso_z(start + n * minute),
            "lon": pytest.approx(IN_ZONE[0], abs=1e-7),
            "lat": pytest.approx(IN_ZONE[1], abs=1e-7),
            "accuracy_m": 10.0,
            "device_id": world.device_id,
        }
        for n in range(2, 23)
    ]

    # Both accounts are kept; the second one is flagged by name on the track.
    flags = flags_of(await track_of(client, world, start=start))
    assert len(flags) == len(live) + len(fakes)
    for fix in fakes:
        assert flags[iso_z(datetime.fromisoformat(fix["ts"]))] == ["contradicting", "backfill"]
    for fix in live:
        assert flags[iso_z(datetime.fromisoformat(fix["ts"]))] == []

    # A resend changes nothing; more of the same burst adds to the same alert.
    assert await post(client, world, fakes, route) == 0
    more = [at(start + (n + 0.25) * minute, FAKE) for n in range(5, 10)]
    assert await post(client, world, more, "native" if route == "osmand" else "osmand") == 5
    shown = await alerts_of(client, world)
    assert by_type(shown, "entered_exclusion_zone") == [zone_alert]
    [same] = by_type(shown, "device_integrity")
    assert same["id"] == integrity["id"]
    assert same["evidence"]["late_count"] == 25
    assert len(same["evidence"]["late_fixes"]) == 25
    assert same["evidence"]["late_fixes"][3]["at"] == iso_z(start + 5.25 * minute)

    # Once an officer has closed the case, another contradiction is a new one.
    resp = await client.post(
        f"/api/v1/alerts/{integrity['id']}/resolve",
        json={"disposition": "confirmed", "note": "手机被他人补传伪造定位"},
        headers=bearer(world.admin_token),
    )
    assert resp.status == 200, await resp.text()
    again = [at(start + 15.75 * minute, FAKE)]
    assert await post(client, world, again, route) == 1
    integrity_alerts = by_type(await alerts_of(client, world), "device_integrity")
    assert [a["status"] for a in integrity_alerts] == ["resolved", "open"]
    assert integrity_alerts[1]["evidence"]["late_count"] == 1
    assert by_type(await alerts_of(client, world), "entered_exclusion_zone") == [zone_alert]


async def test_an_offline_buffer_sent_in_pages_after_the_live_fix_is_evaluated(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """A phone reporting every 15 s is out of coverage for 4 minutes (outside its area all
    that time), sends its live fix as soon as it is back, then the buffer oldest first, five
    fixes a request: each page fills what is left of the gap, so every fix is evaluated and
    the alert is the one in-order delivery gives."""
    start = recent(30)
    step = timedelta(seconds=15)
    points = [NEAR_INSIDE] * 8 + [NEAR_OUTSIDE] * 15 + [NEAR_INSIDE] * 12
    fixes = [at(start + n * step, p) for n, p in enumerate(points)]
    control = await make_world(client, officers, in_county=county)
    await send(client, control, fixes)
    expected = [
        (a["type"], a["started_at"], a["ended_at"]) for a in await alerts_of(client, control)
    ]
    assert [e[0] for e in expected] == ["left_activity_area"]

    world = await make_world(client, officers, in_county=county)
    offline = range(8, 24)  # the 15 outside fixes and the first inside one
    for n in range(8):
        await send(client, world, [fixes[n]])
    await send(client, world, [fixes[24]])  # back in coverage: the live fix first
    buffer = [fixes[n] for n in offline]
    for page in range(0, len(buffer), 5):
        assert (await send(client, world, buffer[page : page + 5]))["accepted"] == len(
            buffer[page : page + 5]
        )
    for n in range(25, len(fixes)):
        await send(client, world, [fixes[n]])

    shown = await alerts_of(client, world)
    assert [(a["type"], a["started_at"], a["ended_at"]) for a in shown] == expected
    flags = flags_of(await track_of(client, world, start=start))
    assert len(flags) == len(fixes)
    for n, fix in enumerate(fixes):
        assert flags[iso_z(datetime.fromisoformat(fix["ts"]))] == (
            ["backfill"] if n in offline else []
        ), n
