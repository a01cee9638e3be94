"""Exactly-once ingestion and event-time evaluation under adversarial delivery.

Every test feeds one subject the fixes in some awkward way — repeated, concurrently, late,
through two app instances — and a *control* subject the same fixes in order in one batch;
the stored track must hold every fix once and the alerts standing must be the control's (same
types, started_at and ended_at). Alerts a replay retracted stay listed, marked; they are not
among those standing. Late fixes fill gaps in the phone's reports, as offline buffers and
retries do (a fix inside a span the phone had already covered is a contradicting account,
tests/e2e/test_contradicting_accounts.py). Subjects are strict (breach confirmed after 120 s)
unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.ingest.batch import client_key
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from tests.conftest import FrontTestServer, Officers, bearer, unique
from tests.e2e.helpers import (
    INSIDE,
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    County,
    World,
    alerts_of,
    iso_z,
    make_county,
    make_world,
    post_fixes,
    recent,
    send,
    track,
    track_of,
)

pytestmark = pytest.mark.e2e

SHANGHAI = ZoneInfo("Asia/Shanghai")
Summary = list[tuple[str, str, str | None]]


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


@pytest.fixture(scope="module")
async def second_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """Another app instance on the same database: a second process's committer."""
    app = init_app(settings)
    async with TestClient(FrontTestServer(app)) as other:
        yield other


def summary(alerts: list[Any]) -> Summary:
    """The alerts standing (not retracted): type, started_at, ended_at."""
    return [(a["type"], a["started_at"], a["ended_at"]) for a in alerts if not a["retracted_at"]]


def at(start: datetime, seconds: float, point: tuple[float, float], acc: float = 5.0) -> Any:
    """One native fix ``seconds`` after ``start`` at ``point`` (lon, lat), with an id."""
    ts = start + timedelta(seconds=seconds)
    return {
        "id": f"f{ts.timestamp():.3f}",
        "ts": ts.isoformat(),
        "lon": point[0],
        "lat": point[1],
        "accuracy_m": acc,
    }


async def control(
    client: TestClient[Any, Any], officers: Officers, county: County, fixes: list[Any], **kw: Any
) -> Summary:
    """Alerts of a fresh subject sent ``fixes`` in time order in one batch."""
    world = await make_world(client, officers, in_county=county, **kw)
    await send(client, world, sorted(fixes, key=lambda f: f["ts"]))
    return summary(await alerts_of(client, world))


async def stored_once(client: TestClient[Any, Any], world: World, fixes: list[Any]) -> None:
    """The subject's track holds each of ``fixes`` exactly once."""
    features = await track_of(client, world, start=recent(24 * 60 * 6))
    times = sorted(f["properties"]["ts"] for f in features)
    assert times == sorted(iso_z(datetime.fromisoformat(f["ts"])) for f in fixes)


async def retracted(client: TestClient[Any, Any], world: World) -> list[Any]:
    resp = await client.get(
        "/api/v1/alerts",
        params={"subject_id": str(world.subject_id), "include_retracted": "true"},
        headers=bearer(world.admin_token),
    )
    return [a for a in (await resp.json())["alerts"] if a["retracted_at"] is not None]


# -- duplicates ------------------------------------------------------------------------------


async def test_same_late_batch_sent_twice_concurrently(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    fixes = track(recent(60), [i, i, o, o, o, i, o, o, o, o, i, i], accuracy_m=5.0)
    expected = await control(client, officers, county, fixes)
    world = await make_world(client, officers, in_county=county)
    late = [fixes[n] for n in (2, 5, 7)]
    await send(client, world, [f for f in fixes if f not in late])
    results = await asyncio.gather(*(send(client, world, late) for _ in range(2)))
    assert sorted(r["accepted"] for r in results) == [0, 3]
    assert sorted(r["duplicates"] for r in results) == [0, 3]
    await stored_once(client, world, fixes)
    assert summary(await alerts_of(client, world)) == expected


async def test_late_batch_mixing_stored_duplicates_and_new_fixes(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    fixes = track(recent(60), [i, i, o, o, i, o, o, o, i, i], accuracy_m=5.0)
    expected = await control(client, officers, county, fixes)
    world = await make_world(client, officers, in_county=county)
    await send(client, world, fixes[5:])
    # Everything again, in reverse: five fixes are repeats, five are new and late.
    body = await send(client, world, fixes[::-1])
    assert (body["accepted"], body["duplicates"]) == (5, 5)
    body = await send(client, world, fixes)
    assert (body["accepted"], body["duplicates"]) == (0, 10)
    await stored_once(client, world, fixes)
    assert summary(await alerts_of(client, world)) == expected


async def test_id_less_repeat_and_same_time_other_id(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """Without an id, device and ts identify a fix; a fix at a stored ts under another id
    is a new fix."""
    start = recent(30)
    plain = [{k: v for k, v in at(start, 60 * n, INSIDE).items() if k != "id"} for n in range(5)]
    world = await make_world(client, officers, in_county=county)
    await send(client, world, plain)
    body = await send(client, world, plain[1:3])
    assert (body["accepted"], body["duplicates"]) == (0, 2)
    other = at(start, 120, INSIDE) | {"id": "another"}
    body = await send(client, world, [other])
    assert (body["accepted"], body["duplicates"]) == (1, 0)
    body = await send(client, world, [other])
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    features = await track_of(client, world, start=start - timedelta(minutes=1))
    assert len(features) == 6


# -- concurrency across processes --------------------------------------------------------


async def test_two_app_instances_interleaving_batches_store_each_fix_once(
    client: TestClient[Any, Any],
    second_client: TestClient[Any, Any],
    officers: Officers,
    county: County,
) -> None:
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    points = ([i] * 3 + [o] * 5) * 3 + [i] * 3
    fixes = track(recent(60), points, accuracy_m=5.0)
    expected = await control(client, officers, county, fixes)
    assert len(expected) == 3
    world = await make_world(client, officers, in_county=county)
    # Every fix goes out twice, in overlapping chunks, half through each instance.
    chunks = [fixes[n : n + 4] for n in range(0, len(fixes), 3)]
    chunks += [fixes[n : n + 5] for n in range(1, len(fixes), 4)][::-1]
    sends = [
        post_fixes(client if n % 2 else second_client, world.device_token, chunk)
        for n, chunk in enumerate(chunks)
    ]
    results = await asyncio.gather(*sends)
    assert all(status == 200 for status, _ in results)
    assert sum(body["accepted"] for _, body in results) == len(fixes)
    sent = sum(len(c) for c in chunks)
    assert sum(body["duplicates"] for _, body in results) == sent - len(fixes)
    await stored_once(client, world, fixes)
    assert summary(await alerts_of(client, world)) == expected


# -- late fixes reshaping episodes -------------------------------------------------------


async def test_late_fix_moves_an_alerts_end(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    start = recent(60)
    points = [i, i, o, o, o, o, o, None, i, i, i, i]
    fixes = [at(start, 60 * n, p) for n, p in enumerate(points) if p is not None]
    # An earlier return, in the 2-minute gap the phone left: inside at 6.5 min, confirmed by
    # the stored 8, 9 and 10 min fixes.
    early_back = at(start, 390, i)
    expected = await control(client, officers, county, [*fixes, early_back])
    world = await make_world(client, officers, in_county=county)
    await send(client, world, fixes)
    before = summary(await alerts_of(client, world))
    assert before[0][2] == iso_z(start + timedelta(seconds=480))
    await send(client, world, [early_back])
    after = summary(await alerts_of(client, world))
    assert after == expected
    assert after[0][2] == iso_z(start + timedelta(seconds=390))


async def test_late_fix_reopens_an_ended_episode(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    start = recent(60)
    points = [i, i, o, o, o, o, i, None, i, o, o]
    fixes = [at(start, 60 * n, p) for n, p in enumerate(points) if p is not None]
    # Outside at 7.5 min, in the 2-minute gap the phone left, breaks the inside streak before
    # it is confirmed: not back after all.
    still_out = at(start, 450, o)
    expected = await control(client, officers, county, [*fixes, still_out])
    assert [a[2] for a in expected] == [None]
    world = await make_world(client, officers, in_county=county)
    await send(client, world, fixes)
    assert summary(await alerts_of(client, world))[0][2] is not None
    await send(client, world, [still_out])
    assert summary(await alerts_of(client, world)) == expected


async def test_late_fixes_raise_an_episode_before_an_existing_one(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    start = recent(90)
    early = [at(start, 60 * n, p) for n, p in enumerate([i, o, o, o, o, i, i, i])]
    later = [at(start, 1800 + 60 * n, p) for n, p in enumerate([i, o, o, o, o, i, i, i])]
    expected = await control(client, officers, county, early + later)
    assert len(expected) == 2
    world = await make_world(client, officers, in_county=county)
    await send(client, world, [early[0], *later])
    assert len(await alerts_of(client, world)) == 1
    await send(client, world, early[1:])
    assert summary(await alerts_of(client, world)) == expected
    assert await retracted(client, world) == []


async def test_retracted_episode_is_restored_when_later_fixes_confirm_it(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """The phone's offline buffer comes in pages after its live fix. The first page's only
    fix, back inside, breaks the breach apart and retracts the alert; the next page shows
    that fix was a GPS jump, so the same episode (same started_at) stands after all and its
    alert is restored, unmarked."""
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    west = (116.385, 39.90)  # inside, 1.7 km west of NEAR_OUTSIDE
    east = (116.41, 39.90)  # ~430 m east of NEAR_OUTSIDE
    far_east = (116.44, 39.90)  # ~3 km east
    start = recent(60)
    live = [at(start, 0, i), at(start, 60, i), at(start, 120, o), at(start, 180, o)]
    live += [at(start, 300 + 60 * n, far_east) for n in range(5)]  # after a 2-minute gap
    # Too far from the 3-min fix for 20 s: a suspect, but the 5-min fix is plausible from
    # it, so with only those around it is evaluated, and breaks the streak.
    jump = at(start, 200, west)
    # Plausible from the 3-min fix, 2.1 km from `jump` 10 s later: `jump` is a spike.
    after = at(start, 210, east)
    expected = await control(client, officers, county, [*live, jump, after])
    assert [(a[0], a[1]) for a in expected] == [
        ("left_activity_area", iso_z(start + timedelta(seconds=120)))
    ]

    world = await make_world(client, officers, in_county=county)
    await send(client, world, live)
    first = await alerts_of(client, world)
    assert summary(first) == expected
    await send(client, world, [jump])
    assert summary(await alerts_of(client, world)) != expected
    [marked] = await retracted(client, world)
    assert marked["id"] == first[0]["id"]
    assert marked["evidence"]["retracted"]["late_count"] == 1
    await send(client, world, [after])
    assert summary(await alerts_of(client, world)) == expected
    restored = next(a for a in await alerts_of(client, world) if a["id"] == first[0]["id"])
    assert restored["retracted_at"] is None
    assert "retracted" not in restored["evidence"]
    assert not [a for a in await alerts_of(client, world) if a["type"] == "device_integrity"]


async def test_replay_across_a_spike_flags_it_as_in_order(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    start = recent(60)
    far = (116.60, 40.10)  # ~25 km away: a GPS cold-start jump
    points = [INSIDE] * 4 + [far] + [INSIDE] * 4
    fixes = [at(start, 10 * n, p) for n, p in enumerate(points)]
    expected = await control(client, officers, county, fixes)
    assert expected == []
    world = await make_world(client, officers, in_county=county)
    # The jump and the fix after it arrive first; the fixes before them come late.
    await send(client, world, fixes[4:])
    await send(client, world, fixes[:4])
    assert summary(await alerts_of(client, world)) == expected
    features = await track_of(client, world, start=start - timedelta(minutes=1))
    flagged = {f["properties"]["ts"] for f in features if "spike" in f["properties"]["flags"]}
    assert flagged == {iso_z(start + timedelta(seconds=40))}
    assert all("late" not in f["properties"]["flags"] for f in features)

    # The jump was the phone's last fix before two minutes without coverage; once back it
    # reports again, the jump is judged a spike, and then the buffer brings a fix beside
    # the jump: a real move, not a spike, and the flag is cleared.
    world2 = await make_world(client, officers, in_county=county)
    resumed = [at(start, 150 + 10 * n, INSIDE) for n in range(4)]
    await send(client, world2, fixes[:5])
    await send(client, world2, resumed)
    features = await track_of(client, world2, start=start - timedelta(minutes=1))
    flagged = {f["properties"]["ts"] for f in features if "spike" in f["properties"]["flags"]}
    assert flagged == {iso_z(start + timedelta(seconds=40))}
    beside = at(start, 45, far)
    await send(client, world2, [beside])
    features = await track_of(client, world2, start=start - timedelta(minutes=1))
    assert not any("spike" in f["properties"]["flags"] for f in features)
    assert summary(await alerts_of(client, world2)) == await control(
        client, officers, county, [*fixes[:5], *resumed, beside]
    )


# -- schedules, curfew and subjects without an activity area -------------------------------

BAR = (116.25, 39.85)
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
HOME = (116.28, 39.88)
AWAY = (116.30, 39.88)  # ~1.7 km east of home, inside the county


def local(day: date, hh: int, mm: int) -> datetime:
    return datetime.combine(day, time(hh, mm), SHANGHAI).astimezone(UTC)


def shuffled_deliveries(fixes: list[Any], parts: int) -> list[list[Any]]:
    """The fixes newest part first (every later part is wholly late), each part reversed."""
    size = -(-len(fixes) // parts)
    chunks = [fixes[n : n + size] for n in range(0, len(fixes), size)]
    return [c[::-1] for c in chunks[::-1]]


async def test_scheduled_zone_and_curfew_under_replay(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    day = datetime.now(SHANGHAI).date() - timedelta(days=2)
    bar = {
        "name": "某酒吧",
        "kind": "exclusion",
        "geometry": BAR_SQUARE,
        "schedule": {
            "windows": [{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "02:00"}]
        },
    }
    kw: dict[str, Any] = {
        "exclusions": [bar],
        "home": {"lat": HOME[1], "lon": HOME[0]},
        "curfew": {"start": "22:00", "end": "06:00"},
    }
    fixes = [at(local(day, 21, 50), 60 * m, BAR, 10.0) for m in range(20)]
    fixes += [at(local(day, 22, 20), 60 * m, HOME, 10.0) for m in range(5)]
    fixes += [at(local(day, 23, 0), 60 * m, AWAY, 10.0) for m in range(6)]
    fixes += [at(local(day, 23, 6), 60 * m, HOME, 10.0) for m in range(4)]
    expected = await control(client, officers, county, fixes, **kw)
    assert sorted(a[0] for a in expected) == [
        "curfew_violation",
        "curfew_violation",
        "entered_exclusion_zone",
    ]
    world = await make_world(client, officers, in_county=county, **kw)
    for part in shuffled_deliveries(fixes, 5):
        await send(client, world, part)
    await stored_once(client, world, fixes)
    assert summary(await alerts_of(client, world)) == expected


async def bare_world(
    client: TestClient[Any, Any], county: County, exclusions: list[dict[str, Any]]
) -> World:
    """A subject with no activity area, only ``exclusions`` (possibly none)."""
    h = bearer(county.admin_token)
    station = unique("s")
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": station, "name": "城关司法所", "parent_code": county.code},
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    zone_ids = []
    for zone in exclusions:
        resp = await client.post(
            "/api/v1/geofences", json=zone | {"org_unit": county.code}, headers=h
        )
        assert resp.status == 201, await resp.text()
        zone_ids.append((await resp.json())["id"])
    body = {
        "name": "李四",
        "org_unit": station,
        "supervision_level": "strict",
        "category": "probation",
        "term_start": "2026-01-01",
        "term_end": "2027-12-31",
        "exclusion_zone_ids": zone_ids,
    }
    resp = await client.post("/api/v1/subjects", json=body, headers=h)
    assert resp.status == 201, await resp.text()
    subject_id = (await resp.json())["id"]
    resp = await client.post(f"/api/v1/subjects/{subject_id}/devices", json={}, headers=h)
    assert resp.status == 201, await resp.text()
    dev = await resp.json()
    return World(
        county.code,
        station,
        county.admin_token,
        0,
        subject_id,
        dev["token"],
        dev["osmand_id"],
        dev["device_id"],
    )


async def test_subjects_without_activity_area_under_replay(
    client: TestClient[Any, Any], county: County
) -> None:
    school = {
        "name": "某小学",
        "kind": "exclusion",
        "geometry": {"type": "Point", "coordinates": list(INSIDE)},
        "radius_m": 300,
    }
    near = (INSIDE[0] + 0.005, INSIDE[1])  # ~430 m east: outside the circle
    start = recent(60)
    walk = [near, near] + [INSIDE] * 5 + [near] * 4 + [INSIDE] * 4 + [(117.5, 39.9)] * 3
    fixes = [at(start, 60 * n, p, 10.0) for n, p in enumerate(walk)]
    ordered = await bare_world(client, county, [school])
    await send(client, ordered, fixes)
    expected = summary(await alerts_of(client, ordered))
    assert [a[0] for a in expected] == ["entered_exclusion_zone"] * 2
    only_zones = await bare_world(client, county, [school])
    nothing = await bare_world(client, county, [])
    for world in (only_zones, nothing):
        for part in shuffled_deliveries(fixes, 4):
            await send(client, world, part)
        await send(client, world, fixes)  # all repeats
        await stored_once(client, world, fixes)
    assert summary(await alerts_of(client, only_zones)) == expected
    assert await alerts_of(client, nothing) == []


async def test_a_fix_beyond_the_replay_window_does_not_block_the_batchs_others(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    day_before = recent(30 * 60)
    old = [at(day_before, 0, i), at(day_before, 60, i)]
    start = recent(120)
    quiet = [at(start, 0, i), at(start, 60, i)]
    walk = [at(start, 3600 + 60 * n, p) for n, p in enumerate([o, o, o, o, o, i, i, i])]
    expected = await control(client, officers, county, old + quiet + walk)
    assert len(expected) == 1
    world = await make_world(client, officers, in_county=county)
    await send(client, world, old[:1])
    await send(client, world, quiet)  # a day later: a checkpoint here, none before
    await send(client, world, [walk[0], *walk[5:]])
    assert await alerts_of(client, world) == []
    # One fix from the day before (only stored, flagged late) and four within reach.
    await send(client, world, [old[1], *walk[1:5]])
    assert summary(await alerts_of(client, world)) == expected
    features = await track_of(client, world, start=day_before - timedelta(minutes=1))
    late = [f["properties"]["ts"] for f in features if "late" in f["properties"]["flags"]]
    assert late == [iso_z(day_before + timedelta(seconds=60))]


async def test_late_fix_at_the_newest_stored_time_under_another_id(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """Fixes sharing a timestamp are evaluated in one fixed order (by client key), whichever
    arrived first: the one at the newest stored time included."""
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    start = recent(30)
    fixes = [at(start, 60 * n, p) for n, p in enumerate([i, o, o, o])]
    # Another fix at the newest time, back inside, under an id that sorts first.
    ids = sorted((f"x{n}" for n in range(40)), key=client_key)
    stored_key = client_key(fixes[-1]["id"])
    first_id = next(x for x in ids if client_key(x) < stored_key)
    back = at(start, 180, i) | {"id": first_id}
    expected = await control(client, officers, county, [*fixes, back])
    world = await make_world(client, officers, in_county=county)
    await send(client, world, fixes)
    await send(client, world, [back])
    await stored_once(client, world, [*fixes, back])
    assert summary(await alerts_of(client, world)) == expected


async def status_position(client: TestClient[Any, Any], world: World) -> Any:
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}/status",
        params={"purpose": "e2e test"},
        headers=bearer(world.admin_token),
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["latest_position"]


async def test_late_fixes_leave_the_latest_position_alone(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    start = recent(30)
    fixes = [at(start, 60 * n, INSIDE) for n in range(5)]
    world = await make_world(client, officers, in_county=county)
    marker = await make_world(client, officers, in_county=county)
    await send(client, world, fixes[2:])
    await send(client, world, fixes[:2])  # late: older than the position already shown
    # Positions reach Redis in commit order, off the request path: once a later commit's
    # position shows, the late commit's has been published too.
    await send(client, marker, [at(start, 0, NEAR_INSIDE)])
    for _ in range(100):
        if await status_position(client, marker) is not None:
            break
        await asyncio.sleep(0.02)
    position = await status_position(client, world)
    assert position["at"] == iso_z(start + timedelta(seconds=240))


async def test_retracted_episode_confirmed_again_by_a_live_fix(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """A late fix on the edge makes the confirming fix a suspect (the alert is retracted);
    the next live fix clears the suspect and confirms the same episode: the alert is back."""
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    edge = (116.40, 39.90)  # on the boundary: uncertain, moves no episode
    start = recent(30)
    live = [at(start, 0, i), at(start, 60, o), at(start, 180, o)]
    on_edge = at(start, 179, edge)  # 430 m from the 180 s fix one second later
    then = at(start, 240, o)
    expected = await control(client, officers, county, [*live, on_edge, then])
    assert [(a[0], a[1]) for a in expected] == [
        ("left_activity_area", iso_z(start + timedelta(seconds=60)))
    ]
    world = await make_world(client, officers, in_county=county)
    await send(client, world, live)
    first = await alerts_of(client, world)
    assert summary(first) == expected
    await send(client, world, [on_edge])
    assert summary(await alerts_of(client, world)) == []
    assert [a["id"] for a in await retracted(client, world)] == [first[0]["id"]]
    await send(client, world, [then])
    shown = await alerts_of(client, world)
    assert summary(shown) == expected
    assert shown[0]["id"] == first[0]["id"]
