"""人机分离 signals through HTTP: mock locations and a second live phone raise one
device_integrity alert per subject and rule, with evidence, extended while unresolved, new
after an officer resolved it, and nothing when the policy switches the rule off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from tests.conftest import FrontTestServer, Officers, bearer
from tests.e2e.helpers import (
    INSIDE,
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    OUTSIDE,
    County,
    World,
    alerts_of,
    expect_json,
    make_county,
    make_world,
    post_fixes,
    recent,
    send,
    sql_row,
    track,
    track_of,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


def mocked(fixes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f | {"mock": True} for f in fixes]


async def integrity_alerts(client: TestClient[Any, Any], world: World, rule: str) -> list[Any]:
    found = await alerts_of(client, world, type="device_integrity")
    return [a for a in found if a["evidence"].get("rule") == rule]


async def enrol(client: TestClient[Any, Any], world: World, platform: str | None) -> Any:
    body = {} if platform is None else {"platform": platform}
    resp = await client.post(
        f"/api/v1/subjects/{world.subject_id}/devices", json=body, headers=bearer(world.admin_token)
    )
    return await expect_json(resp, 201)


async def send_as(client: TestClient[Any, Any], token: str, fixes: list[dict[str, Any]]) -> Any:
    resp = await client.post("/api/v1/fixes", json={"fixes": fixes}, headers=bearer(token))
    return await expect_json(resp)


async def resolve(client: TestClient[Any, Any], world: World, alert_id: int) -> None:
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"disposition": "false_alarm", "note": "phone settings checked at the station"},
        headers=bearer(world.admin_token),
    )
    await expect_json(resp)


async def test_mock_fixes_raise_one_alert_extended_until_resolved(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    start = recent(120)
    first = mocked(track(start, [INSIDE, INSIDE]))
    assert (await send(client, world, first))["accepted"] == 2
    [alert] = await integrity_alerts(client, world, "mock_location")
    evidence = alert["evidence"]
    assert (evidence["rule"], evidence["reason"], evidence["count"]) == (
        "mock_location",
        "mock_location",
        2,
    )
    assert evidence["policy"] == {"switch": "integrity.mock_location", "enabled": True}
    assert "not a finding" in evidence["note"]
    assert [i["device_id"] for i in evidence["first"]] == [world.device_id] * 2
    assert (evidence["first"][0]["lon"], evidence["first"][0]["lat"]) == INSIDE
    assert alert["started_at"] == evidence["from"]
    assert alert["status"] == "open"
    # Stored, flagged, never dropped.
    assert [f["properties"]["flags"] for f in await track_of(client, world)] == [["mock"]] * 2

    # The same fixes again are repeats: no second alert, nothing added.
    assert (await send(client, world, first))["duplicates"] == 2
    # Ordinary fixes add nothing either.
    await send(client, world, track(start + timedelta(minutes=5), [INSIDE]))
    # More mock fixes extend the open alert.
    more = mocked(track(start + timedelta(minutes=10), [INSIDE] * 8))
    await send(client, world, more)
    [same] = await integrity_alerts(client, world, "mock_location")
    assert same["id"] == alert["id"]
    assert same["evidence"]["count"] == 10
    assert len(same["evidence"]["first"]) == 5
    assert len(same["evidence"]["latest"]) == 5
    assert same["evidence"]["to"] == same["evidence"]["latest"][-1]["at"]

    # Resolved by an officer: the next mock fix opens a new alert.
    await resolve(client, world, alert["id"])
    await send(client, world, mocked(track(start + timedelta(minutes=30), [INSIDE])))
    old, new = await integrity_alerts(client, world, "mock_location")
    assert old["id"] == alert["id"]
    assert old["status"] == "resolved"
    assert old["evidence"]["count"] == 10
    assert new["status"] == "open"
    assert new["evidence"]["count"] == 1


async def test_mock_fixes_never_decide_a_breach(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """Twenty minutes outside the area (strict level: confirmed after two) breach only
    when the fixes are real; mock ones raise the integrity signal instead."""
    start = recent(60)
    outside = track(start, [NEAR_INSIDE] + [NEAR_OUTSIDE] * 20)
    honest = await make_world(client, officers, in_county=county)
    await send(client, honest, outside)
    assert [a["type"] for a in await alerts_of(client, honest)] == ["left_activity_area"]

    faked = await make_world(client, officers, in_county=county)
    await send(client, faked, outside[:1] + mocked(outside[1:]))
    found = await alerts_of(client, faked)
    assert [a["type"] for a in found] == ["device_integrity"]
    assert found[0]["evidence"]["count"] == 20


async def test_traccar_client_mock_flag_raises_the_signal(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    ts = recent(30)
    query = {
        "id": world.osmand_id,
        "timestamp": str(int(ts.timestamp())),
        "lat": str(INSIDE[1]),
        "lon": str(INSIDE[0]),
        "accuracy": "12",
        "mock": "true",
    }
    await expect_json(await client.get("/osmand/", params=query))
    [alert] = await integrity_alerts(client, world, "mock_location")
    assert alert["evidence"]["first"][0]["device_id"] == world.device_id


async def test_enrolling_a_phone_while_another_is_live_raises_new_device(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)  # its phone never reported
    android = await enrol(client, world, "android")
    assert await integrity_alerts(client, world, "new_device") == []  # nothing else was live
    await send_as(client, android["token"], track(recent(10), [INSIDE]))

    ios = await enrol(client, world, "ios")
    [alert] = await integrity_alerts(client, world, "new_device")
    evidence = alert["evidence"]
    assert evidence["policy"] == {
        "switch": "integrity.new_device",
        "enabled": True,
        "new_device_overlap_s": 86400.0,
    }
    [item] = evidence["first"]
    assert item["trigger"] == "enrolment"
    assert item["device"] == {
        "device_id": ios["device_id"],
        "platform": "ios",
        "last_seen_at": None,
    }
    [active] = item["active_devices"]
    assert (active["device_id"], active["platform"]) == (android["device_id"], "android")
    seen = await sql_row(
        client, "SELECT last_seen_at FROM devices WHERE id = $1", android["device_id"]
    )
    assert datetime.fromisoformat(active["last_seen_at"].replace("Z", "+00:00")) == seen[0]
    assert item["platform_changed"] is True
    # Enrolment revokes nothing: the officer decides.
    devices = await sql_row(
        client,
        "SELECT count(*) FROM devices WHERE subject_id = $1 AND revoked_at IS NULL",
        world.subject_id,
    )
    assert devices[0] == 3


async def test_an_old_phone_silent_beyond_the_overlap_raises_nothing(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    await send(client, world, track(recent(10), [INSIDE]))
    await sql_row(
        client,
        "UPDATE devices SET last_seen_at = now() - interval '2 days' WHERE id = $1",
        world.device_id,
    )
    await enrol(client, world, "ios")
    assert await integrity_alerts(client, world, "new_device") == []


async def test_two_phones_reporting_side_by_side_raise_new_device(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    second = await enrol(client, world, "ios")  # the first phone is silent so far
    assert await integrity_alerts(client, world, "new_device") == []
    start = recent(20)
    await send(client, world, track(start, [INSIDE]))
    assert await integrity_alerts(client, world, "new_device") == []  # one phone heard
    await send_as(client, second["token"], track(start + timedelta(seconds=30), [INSIDE]))
    [alert] = await integrity_alerts(client, world, "new_device")
    [item] = alert["evidence"]["first"]
    assert item["trigger"] == "report"
    assert (item["device"]["device_id"], item["device"]["platform"]) == (second["device_id"], "ios")
    assert [d["device_id"] for d in item["active_devices"]] == [world.device_id]
    # Both keep reporting: the pair is not signalled again on every upload.
    for minute in range(1, 4):
        at = start + timedelta(minutes=minute)
        await send(client, world, track(at, [INSIDE]))
        await send_as(client, second["token"], track(at, [INSIDE]))
    [same] = await integrity_alerts(client, world, "new_device")
    assert same["evidence"]["count"] == 1


async def test_switched_off_rules_raise_nothing(
    settings: Settings, officers: Officers, tmp_path: Path
) -> None:
    policy = tmp_path / "integrity-off.toml"
    policy.write_text("[integrity]\nmock_location = false\nnew_device = false\n", encoding="utf-8")
    app = init_app(settings.model_copy(update={"policy_file": policy}))
    async with TestClient(FrontTestServer(app)) as client:
        local = Officers(officers.database_url, client)
        world = await make_world(client, local)
        start = recent(30)
        await send(client, world, mocked(track(start, [INSIDE, OUTSIDE, OUTSIDE, OUTSIDE])))
        second = await enrol(client, world, "ios")  # while the first phone is live
        await send_as(client, second["token"], track(start + timedelta(minutes=5), [INSIDE]))
        assert await alerts_of(client, world) == []
        # The fixes are still stored and flagged.
        flags = [f["properties"]["flags"] for f in await track_of(client, world)]
        assert flags[:4] == [["mock"]] * 4


@pytest.fixture(scope="module")
async def second_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """Another app instance on the same database: a second process's committer."""
    app = init_app(settings)
    async with TestClient(FrontTestServer(app)) as other:
        yield other


async def test_concurrent_signals_through_two_instances_make_one_alert(
    client: TestClient[Any, Any],
    second_client: TestClient[Any, Any],
    officers: Officers,
    county: County,
) -> None:
    world = await make_world(client, officers, in_county=county)
    fixes = mocked(track(recent(60), [INSIDE] * 12))
    # Every mock fix goes out twice, in overlapping chunks, through both instances at once.
    chunks = [fixes[n : n + 4] for n in range(0, len(fixes), 3)]
    chunks += [fixes[n : n + 5] for n in range(1, len(fixes), 4)][::-1]
    results = await asyncio.gather(
        *(
            post_fixes(client if n % 2 else second_client, world.device_token, chunk)
            for n, chunk in enumerate(chunks)
        )
    )
    assert sum(body["accepted"] for _, body in results) == len(fixes)
    [alert] = await integrity_alerts(client, world, "mock_location")
    assert alert["evidence"]["count"] == len(fixes)
    times = [i["at"] for i in alert["evidence"]["first"] + alert["evidence"]["latest"]]
    assert len(times) == len(set(times)) == len(fixes)

    # An enrolment and a second phone's first upload signal new_device at the same moment.
    second = await enrol(client, world, "ios")  # the first phone has reported: one signal
    [opened] = await integrity_alerts(client, world, "new_device")
    assert opened["evidence"]["count"] == 1
    await asyncio.gather(
        enrol(client, world, "harmony"),
        send_as(second_client, second["token"], track(recent(5), [INSIDE])),
    )
    [same] = await integrity_alerts(client, world, "new_device")
    assert same["id"] == opened["id"]
    assert same["evidence"]["count"] == 3
    triggers = [i["trigger"] for i in same["evidence"]["first"]]
    assert sorted(triggers) == ["enrolment", "enrolment", "report"]
