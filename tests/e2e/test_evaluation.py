"""Evaluation through HTTP: duplicates, live vs late delivery, episodes, spikes, accuracy discs,
coordinate systems of fences and fixes, exclusion-zone schedules and curfews.

All subjects are strict (breach confirmation 120 s, see policy/default.toml) and their phones
report every 60 s unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import shapely
from aiohttp.test_utils import TestClient

from geofences.crs import from_wgs84
from tests.conftest import Officers
from tests.e2e.helpers import (
    INSIDE,
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    County,
    alerts_of,
    iso_z,
    make_county,
    make_world,
    recent,
    send,
    track,
    track_of,
)

pytestmark = pytest.mark.e2e

SHANGHAI = ZoneInfo("Asia/Shanghai")
# ~30 km north-east of the county: a GPS cold-start jump (GeoLife traces show such first fixes).
FAR_JUMP = (116.55, 40.10)
METRES_PER_DEG_LAT = 111_000.0


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


def fix(
    ts: datetime,
    point: tuple[float, float],
    accuracy_m: float | None = 10.0,
    crs: str | None = None,
    with_id: bool = True,
) -> dict[str, Any]:
    """One native fix at ``ts`` (aware) and ``point`` (lon, lat)."""
    out: dict[str, Any] = {"ts": ts.isoformat(), "lon": point[0], "lat": point[1]}
    if accuracy_m is not None:
        out["accuracy_m"] = accuracy_m
    if crs is not None:
        out["crs"] = crs
    if with_id:
        out["id"] = f"f{ts.timestamp():.3f}"
    return out


def z(fixes: list[dict[str, Any]], i: int) -> str:
    """The instant of ``fixes[i]`` as the API writes it."""
    return iso_z(datetime.fromisoformat(fixes[i]["ts"]))


def local(day: date, hh: int, mm: int, zone: ZoneInfo = SHANGHAI) -> datetime:
    """Wall-clock time in ``zone`` (by default the stations' Asia/Shanghai) as aware UTC."""
    return datetime.combine(day, time(hh, mm), zone).astimezone(UTC)


def days_ago_in_shanghai(days: int) -> date:
    return datetime.now(SHANGHAI).date() - timedelta(days=days)


def summary(alert: dict[str, Any]) -> tuple[Any, ...]:
    ev = alert["evidence"]
    return (
        alert["type"],
        alert["started_at"],
        alert["ended_at"],
        ev["first_fix"]["at"],
        ev["last_fix"]["at"],
        ev["fixes"],
    )


# -- duplicates ------------------------------------------------------------------------------


async def test_same_batch_twice_is_all_duplicates_and_alerts_once(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    fixes = track(recent(), [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 4 + [NEAR_INSIDE] * 4)
    assert await send(client, world, fixes) == {"accepted": 10, "duplicates": 0, "rejected": []}
    first = await alerts_of(client, world)
    assert len(first) == 1
    assert await send(client, world, fixes) == {"accepted": 0, "duplicates": 10, "rejected": []}
    # Half old, half new: only the new ones are stored.
    more = track(datetime.fromisoformat(fixes[5]["ts"]), [NEAR_INSIDE] * 10)
    result = await send(client, world, more)
    assert result == {"accepted": 5, "duplicates": 5, "rejected": []}
    assert await alerts_of(client, world) == first
    assert len(await track_of(client, world)) == 15


async def test_fixes_without_id_are_deduplicated_by_device_and_time(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    start = recent()
    fixes = [fix(start + timedelta(seconds=60 * i), INSIDE, with_id=False) for i in range(4)]
    assert await send(client, world, fixes) == {"accepted": 4, "duplicates": 0, "rejected": []}
    # The same times again, even from a slightly different position: the same fixes.
    moved = [f | {"lat": f["lat"] + 0.0001} for f in fixes]
    assert await send(client, world, moved) == {"accepted": 0, "duplicates": 4, "rejected": []}
    # Repeated inside one request: stored once.
    later = start + timedelta(minutes=10)
    twice = [fix(later, INSIDE, with_id=False), fix(later, INSIDE, with_id=False)]
    assert await send(client, world, twice) == {"accepted": 1, "duplicates": 1, "rejected": []}
    stored = await track_of(client, world)
    assert [f["properties"]["ts"] for f in stored] == [z(fixes, i) for i in range(4)] + [
        iso_z(later)
    ]


async def test_concurrent_identical_requests_store_each_fix_once(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    fixes = track(recent(), [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 4 + [NEAR_INSIDE] * 4)
    results = await asyncio.gather(*(send(client, world, fixes) for _ in range(4)))
    assert sum(r["accepted"] for r in results) == len(fixes)
    assert sum(r["duplicates"] for r in results) == 3 * len(fixes)
    assert all(r["rejected"] == [] for r in results)
    stored = await track_of(client, world)
    assert [f["properties"]["ts"] for f in stored] == [z(fixes, i) for i in range(len(fixes))]
    alerts = await alerts_of(client, world)
    assert [a["type"] for a in alerts] == ["left_activity_area"]


# -- live, late, batched -------------------------------------------------------------------

# Walk: inside, one far cold-start jump (a spike), out for 4 min, back (a lone outlier resets
# the closing streak), then inside for good.
WALK = (
    [NEAR_INSIDE] * 3
    + [FAR_JUMP]
    + [NEAR_INSIDE] * 2
    + [NEAR_OUTSIDE] * 4
    + [NEAR_INSIDE]
    + [NEAR_OUTSIDE]
    + [NEAR_INSIDE] * 4
)


async def test_live_batched_and_reordered_delivery_give_the_same_alerts(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    live = await make_world(client, officers, in_county=county)
    batched = await make_world(client, officers, in_county=county)
    chunked = await make_world(client, officers, in_county=county)
    fixes = track(recent(), WALK)

    for one in fixes:  # live: one fix a request, as the phone walks
        await send(client, live, [one])
    assert await send(client, batched, fixes) == {
        "accepted": len(fixes),
        "duplicates": 0,
        "rejected": [],
    }
    # Offline buffer uploaded in parts: each part newer than the last, its fixes out of order
    # inside the request; the spike is the last fix of the first part.
    for lo, hi in ((0, 4), (4, 9), (9, len(fixes))):
        part = fixes[lo:hi][::-1]
        assert (await send(client, chunked, part))["accepted"] == hi - lo

    expected = ("left_activity_area", z(fixes, 6), z(fixes, 12), z(fixes, 6), z(fixes, 8), 3)
    for world in (live, batched, chunked):
        alerts = await alerts_of(client, world)
        assert [summary(a) for a in alerts] == [expected], world
        flags = [f["properties"]["flags"] for f in await track_of(client, world)]
        assert flags == [["spike"] if i == 3 else [] for i in range(len(fixes))], world


async def test_a_gap_filled_in_afterwards_is_evaluated_in_time_order(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    start = recent()
    # The phone reports every 30 s; between 1:30 and 5:30 it has no coverage, and it sends
    # the buffer of those minutes after its live fix at 5:30.
    live = [fix(start + timedelta(seconds=30 * i), NEAR_INSIDE) for i in (0, 1, 2, 3, 11, 12)]
    await send(client, world, live)
    # Outside and inside in turn: replayed in time order, each outside fix stands alone
    # between inside ones, so no breach; none is left unevaluated ("late").
    buffer = [
        fix(start + timedelta(seconds=30 * i), NEAR_OUTSIDE if i % 2 else NEAR_INSIDE)
        for i in range(4, 11)
    ]
    assert await send(client, world, buffer) == {"accepted": 7, "duplicates": 0, "rejected": []}
    stored = await track_of(client, world)
    assert len(stored) == 13
    flags = {f["properties"]["ts"]: f["properties"]["flags"] for f in stored}
    assert [flags[z(buffer, i)] for i in range(7)] == [["backfill"]] * 7
    assert [flags[z(live, i)] for i in range(6)] == [[]] * 6
    assert await alerts_of(client, world) == []


async def test_fixes_older_than_every_checkpoint_are_stored_as_late(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    now = recent(5)
    first = track(now - timedelta(hours=30), [NEAR_INSIDE])
    await send(client, world, first + track(now, [NEAR_INSIDE] * 3))
    # Replay reaches back one day; a fix older than that is kept as evidence only.
    old = [fix(now - timedelta(hours=28), NEAR_OUTSIDE)]
    assert await send(client, world, old) == {"accepted": 1, "duplicates": 0, "rejected": []}
    flags = {f["properties"]["ts"]: f["properties"]["flags"] for f in await track_of(client, world)}
    assert flags[z(old, 0)] == ["late", "backfill"]
    assert await alerts_of(client, world) == []


# -- episodes ------------------------------------------------------------------------------


async def test_lone_spike_between_inside_fixes_never_alerts(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    batch_world = await make_world(client, officers, in_county=county)
    live_world = await make_world(client, officers, in_county=county)
    fixes = track(recent(), [INSIDE] * 3 + [FAR_JUMP] + [INSIDE] * 4)
    await send(client, batch_world, fixes)
    for one in fixes:
        await send(client, live_world, [one])
    for world in (batch_world, live_world):
        assert await alerts_of(client, world) == []
        stored = await track_of(client, world)
        assert len(stored) == len(fixes)
        spikes = [f for f in stored if "spike" in f["properties"]["flags"]]
        assert [f["properties"]["ts"] for f in spikes] == [z(fixes, 3)]
        assert spikes[0]["geometry"]["coordinates"] == pytest.approx(list(FAR_JUMP))


async def test_cold_start_jump_as_first_fix_never_alerts(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    fixes = track(recent(), [FAR_JUMP] + [INSIDE] * 5)
    await send(client, world, fixes)
    assert await alerts_of(client, world) == []


async def test_breach_shorter_than_confirmation_does_not_alert(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    short = await make_world(client, officers, in_county=county)
    exact = await make_world(client, officers, in_county=county)
    start = recent()

    def walk(last_out_s: int) -> list[dict[str, Any]]:
        # Inside, out at +120 s, +180 s and +120 + last_out_s, back in 60 s later for good.
        back = 180 + last_out_s
        times = [0, 60, 120, 180, 120 + last_out_s, back, back + 60, back + 120]
        where = [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 3 + [NEAR_INSIDE] * 3
        return [fix(start + timedelta(seconds=t), p) for t, p in zip(times, where, strict=True)]

    await send(client, short, walk(119))  # outside 119 s: one second short
    assert await alerts_of(client, short) == []
    fixes = walk(120)  # outside exactly the confirmation time
    await send(client, exact, fixes)
    alerts = await alerts_of(client, exact)
    assert [(a["started_at"], a["ended_at"]) for a in alerts] == [(z(fixes, 2), z(fixes, 5))]


async def test_uncertain_fixes_never_open_a_breach(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    start = recent()
    # 100 m beyond the east edge with 300 m discs (and with none: 50 m by policy, at 30 m):
    # neither wholly outside.
    edge_100 = (116.4 + 100 / 85_400, 39.9)
    edge_30 = (116.4 + 30 / 85_400, 39.9)
    uncertain = [fix(start + timedelta(seconds=60 * i), edge_100, 300.0) for i in range(6)] + [
        fix(start + timedelta(seconds=60 * i), edge_30, None) for i in range(6, 12)
    ]
    await send(client, world, uncertain)
    assert await alerts_of(client, world) == []
    # The same place with sharp fixes is outside; the streak starts at the first sharp one.
    sharp = [fix(start + timedelta(seconds=60 * i), edge_100, 10.0) for i in range(12, 15)]
    await send(client, world, sharp)
    alerts = await alerts_of(client, world)
    assert [(a["type"], a["started_at"]) for a in alerts] == [("left_activity_area", z(sharp, 0))]


# -- coordinate systems ----------------------------------------------------------------------


def _densified_square(lo_lon: float, lo_lat: float, hi_lon: float, hi_lat: float) -> np.ndarray:
    ring = shapely.segmentize(
        shapely.box(lo_lon, lo_lat, hi_lon, hi_lat).exterior, max_segment_length=0.005
    )
    return np.asarray(ring.coords)


@pytest.mark.parametrize("fence_crs", ["gcj02", "bd09"])
async def test_fences_in_chinese_datums_match_wgs84_fixes(
    client: TestClient[Any, Any], officers: Officers, county: County, fence_crs: str
) -> None:
    """The county drawn in GCJ-02 / BD-09 (as Chinese map data is) against phone fixes in
    WGS-84 and in the fence's own datum, 200 m inside the true boundary: never an alert,
    though comparing the raw numbers would put them hundreds of metres outside."""
    ring = _densified_square(116.2, 39.8, 116.4, 40.0)  # the true county, WGS-84
    lon, lat = from_wgs84(ring[:, 0], ring[:, 1], fence_crs)
    drawn = {"type": "Polygon", "coordinates": [np.column_stack([lon, lat]).tolist()]}
    world = await make_world(client, officers, in_county=county, area=drawn, area_crs=fence_crs)

    metres_per_deg_lon = METRES_PER_DEG_LAT * np.cos(np.radians(39.9))
    west_in = (116.2 + 200 / metres_per_deg_lon, 39.9)
    east_in = (116.4 - 200 / metres_per_deg_lon, 39.9)
    west_out = (116.2 - 200 / metres_per_deg_lon, 39.9)
    naive = shapely.Polygon(drawn["coordinates"][0])
    # The mistake this guards against: fence numbers and fix numbers compared as they are.
    assert naive.distance(shapely.Point(west_in)) * metres_per_deg_lon > 250
    e_lon, e_lat = from_wgs84([east_in[0]], [east_in[1]], fence_crs)
    east_sent = (float(e_lon[0]), float(e_lat[0]))
    assert not shapely.Polygon(ring).contains(shapely.Point(east_sent))

    start = recent(minutes=180)
    by_wgs84 = [fix(start + timedelta(seconds=60 * i), west_in) for i in range(6)]
    # The phone's SDK reports in the fence's datum; 40 min later, on the east side.
    later = start + timedelta(minutes=40)
    by_datum = [fix(later + timedelta(seconds=60 * i), east_sent, crs=fence_crs) for i in range(6)]
    await send(client, world, by_wgs84 + by_datum)
    assert await alerts_of(client, world) == []

    stored = await track_of(client, world, later, later + timedelta(minutes=10))
    assert len(stored) == 6
    for feature in stored:
        assert feature["geometry"]["coordinates"] == pytest.approx(list(east_in), abs=2e-6)
        assert f"sent_{fence_crs}" in feature["properties"]["flags"]

    # Control: 200 m outside the true west edge is outside.
    out_start = later + timedelta(minutes=40)
    outside = [fix(out_start + timedelta(seconds=60 * i), west_out) for i in range(4)]
    await send(client, world, outside)
    alerts = await alerts_of(client, world)
    assert [(a["type"], a["started_at"]) for a in alerts] == [("left_activity_area", z(outside, 0))]
    assert 150 < alerts[0]["evidence"]["distance_outside_m"] < 250


# -- exclusion zones and curfew --------------------------------------------------------------

SCHOOL = (116.30, 39.90)  # a circle of 300 m (a 禁止令 place)
BAR = (116.25, 39.85)  # a square of ~450 m a side, forbidden from 22:00 to 02:00
BAR_SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [
            [BAR[0] - 0.0025, BAR[1] - 0.002],
            [BAR[0] + 0.0025, BAR[1] - 0.002],
            [BAR[0] + 0.0025, BAR[1] + 0.002],
            [BAR[0] - 0.0025, BAR[1] + 0.002],
            [BAR[0] - 0.0025, BAR[1] - 0.002],
        ]
    ],
}


async def test_entering_an_always_active_circle_zone_alerts(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    school = {
        "name": "某小学",
        "kind": "exclusion",
        "geometry": {"type": "Point", "coordinates": list(SCHOOL)},
        "radius_m": 300,
    }
    world = await make_world(client, officers, in_county=county, exclusions=[school])
    near = (SCHOOL[0] + 0.005, SCHOOL[1])  # ~430 m east of the centre: outside the circle
    walk = [(SCHOOL[0] + 0.01, SCHOOL[1]), near] + [SCHOOL] * 4 + [near] * 4
    fixes = track(recent(), walk)
    await send(client, world, fixes)
    alerts = await alerts_of(client, world)
    assert [(a["type"], a["started_at"], a["ended_at"]) for a in alerts] == [
        ("entered_exclusion_zone", z(fixes, 2), z(fixes, 6))
    ]
    assert alerts[0]["evidence"]["fence_id"] != world.area_id
    assert alerts[0]["severity"] == "high"


async def test_scheduled_zone_crossing_midnight_in_shanghai(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    day = days_ago_in_shanghai(3)
    bar = {
        "name": "某酒吧",
        "kind": "exclusion",
        "geometry": BAR_SQUARE,
        # Opens on `day` only, at 22:00 local, and closes at 02:00 the next morning.
        "schedule": {"windows": [{"days": [day.isoweekday()], "start": "22:00", "end": "02:00"}]},
    }
    world = await make_world(client, officers, in_county=county, exclusions=[bar])
    away = (BAR[0] + 0.012, BAR[1])  # ~1 km east

    def visit(arrive: datetime, minutes: int) -> list[dict[str, Any]]:
        """Two fixes away, then inside the bar for ``minutes``, then away again."""
        times = [arrive - timedelta(minutes=2), arrive - timedelta(minutes=1)]
        times += [arrive + timedelta(minutes=m) for m in range(minutes + 1)]
        times += [times[-1] + timedelta(minutes=m) for m in (1, 2, 3)]
        where = [away] * 2 + [BAR] * (minutes + 1) + [away] * 3
        return [fix(t, p) for t, p in zip(times, where, strict=True)]

    before_window = visit(local(day, 0, 20), 10)  # the night before: not a listed day
    midday = visit(local(day, 12, 0), 10)
    after_midnight = visit(local(day + timedelta(days=1), 0, 20), 10)  # window still open
    closing = visit(local(day + timedelta(days=1), 1, 58), 10)  # only 01:58 and 01:59 count
    await send(client, world, before_window + midday + after_midnight + closing)
    alerts = await alerts_of(client, world)
    assert [(a["type"], a["started_at"], a["ended_at"]) for a in alerts] == [
        ("entered_exclusion_zone", z(after_midnight, 2), z(after_midnight, 13))
    ]


async def test_already_inside_when_the_zone_opens(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    day = days_ago_in_shanghai(2)
    bar = {
        "name": "某酒吧",
        "kind": "exclusion",
        "geometry": BAR_SQUARE,
        "schedule": {
            "windows": [{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "02:00"}]
        },
    }
    world = await make_world(client, officers, in_county=county, exclusions=[bar])
    fixes = [fix(local(day, 21, 55) + timedelta(minutes=m), BAR) for m in range(10)]
    await send(client, world, fixes)
    alerts = await alerts_of(client, world)
    assert [(a["type"], a["started_at"]) for a in alerts] == [
        ("entered_exclusion_zone", iso_z(local(day, 22, 0)))
    ]


async def test_curfew_away_at_night_alerts_and_daytime_does_not(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    day = days_ago_in_shanghai(3)
    home = (116.28, 39.88)
    away = (116.30, 39.88)  # ~1.7 km east, still inside the county
    world = await make_world(
        client,
        officers,
        home={"lat": home[1], "lon": home[0]},
        curfew={"start": "22:00", "end": "06:00"},
    )

    def stay(at: tuple[float, float], begin: datetime, minutes: int) -> list[dict[str, Any]]:
        return [fix(begin + timedelta(minutes=m), at) for m in range(minutes)]

    daytime_away = stay(away, local(day, 14, 0), 15)
    evening_home = stay(home, local(day, 21, 0), 3)
    # Walks out at 21:56, before the curfew: it counts from 22:00.
    night_away = stay(away, local(day, 21, 56), 12)
    night_home = stay(home, local(day, 22, 8), 5)
    dawn_home = stay(home, local(day + timedelta(days=1), 5, 50), 10)
    morning_away = stay(away, local(day + timedelta(days=1), 6, 0), 15)
    await send(
        client,
        world,
        daytime_away + evening_home + night_away + night_home + dawn_home + morning_away,
    )
    alerts = await alerts_of(client, world)
    assert [(a["type"], a["started_at"], a["ended_at"]) for a in alerts] == [
        ("curfew_violation", iso_z(local(day, 22, 0)), iso_z(local(day, 22, 8)))
    ]
    assert alerts[0]["evidence"]["home_radius_m"] == 150
    assert alerts[0]["evidence"]["distance_outside_m"] > 1000


async def test_curfew_follows_the_station_time_zone(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """A Xinjiang station keeps Asia/Urumqi time (UTC+6): 22:00 there is midnight in Beijing."""
    urumqi = ZoneInfo("Asia/Urumqi")
    day = days_ago_in_shanghai(3)
    home = (116.28, 39.88)
    away = (116.30, 39.88)
    world = await make_world(
        client,
        officers,
        in_county=county,
        home={"lat": home[1], "lon": home[0]},
        curfew={"start": "22:00", "end": "06:00"},
        station_timezone="Asia/Urumqi",
    )
    # Out from 22:00 to 22:10 Beijing time: only 20:00 in Urumqi, no curfew yet.
    beijing_evening = [fix(local(day, 22, m), away) for m in range(11)]
    back = [fix(local(day, 22, 20 + m), home) for m in range(3)]
    # Out from 22:00 Urumqi time.
    urumqi_night = [fix(local(day, 22, m, urumqi), away) for m in range(11)]
    await send(client, world, beijing_evening + back + urumqi_night)
    alerts = await alerts_of(client, world)
    assert [(a["type"], a["started_at"]) for a in alerts] == [
        ("curfew_violation", iso_z(local(day, 22, 0, urumqi)))
    ]
