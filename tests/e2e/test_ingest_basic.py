"""Fixes in, alerts out: the core path through HTTP on real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer
from tests.e2e.helpers import INSIDE, OUTSIDE, alerts_of, make_world, recent, send, track

pytestmark = pytest.mark.e2e


async def test_out_and_back_in_gives_one_alert_with_true_times(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers, level="strict")  # confirm 120 s
    start = recent()
    points = [INSIDE] * 3 + [OUTSIDE] * 5 + [INSIDE] * 5
    fixes = track(start, points, step_s=60)
    result = await send(client, world, fixes)
    assert result == {"accepted": 13, "duplicates": 0, "rejected": []}
    alerts = await alerts_of(client, world)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["type"] == "left_activity_area"
    assert alert["status"] == "open"
    assert alert["started_at"] == fixes[3]["ts"].replace("+00:00", "Z")
    assert alert["ended_at"] == fixes[8]["ts"].replace("+00:00", "Z")
    assert alert["evidence"]["fence_id"] == world.area_id
    assert alert["evidence"]["distance_outside_m"] > 15_000

    again = await send(client, world, fixes)
    assert again == {"accepted": 0, "duplicates": 13, "rejected": []}
    assert len(await alerts_of(client, world)) == 1


async def test_accepted_fixes_read_back_exactly_in_the_track(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers, level="normal")
    start = recent(30)
    fixes = track(start, [(116.3012345, 39.9054321), (116.3023456, 39.9065432)], accuracy_m=7.2)
    fixes[1]["accuracy_m"] = None
    await send(client, world, fixes)
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}/track",
        params={"from": (start - timedelta(minutes=1)).isoformat(), "purpose": "test"},
        headers=bearer(world.admin_token),
    )
    assert resp.status == 200
    features = (await resp.json())["features"]
    assert [f["geometry"]["coordinates"] for f in features] == [
        [116.3012345, 39.9054321],
        [116.3023456, 39.9065432],
    ]
    assert [f["properties"]["ts"] for f in features] == [
        fixes[0]["ts"].replace("+00:00", "Z"),
        fixes[1]["ts"].replace("+00:00", "Z"),
    ]
    assert features[0]["properties"]["accuracy_m"] == 8  # stored in whole metres, rounded up
    assert features[1]["properties"]["accuracy_m"] == 50  # the policy default
    assert features[1]["properties"]["flags"] == ["no_accuracy"]


async def test_status_shows_latest_position_and_is_audited(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers, level="normal")
    fixes = track(recent(10), [INSIDE, (116.31, 39.91)])
    await send(client, world, fixes)
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}/status",
        params={"purpose": "verify alert"},
        headers=bearer(world.admin_token),
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["latest_position"]["lon"] == 116.31
    assert body["latest_position"]["at"] == fixes[1]["ts"].replace("+00:00", "Z")
    assert body["lost_contact"] is False
    resp = await client.get(
        "/api/v1/audit",
        params={"subject_id": str(world.subject_id)},
        headers=bearer(world.admin_token),
    )
    actions = [(e["action"], e["purpose"]) for e in (await resp.json())["entries"]]
    assert ("position.read", "verify alert") in actions


async def test_csv_export_is_audited_as_an_export(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers, level="normal")
    start = recent(20)
    await send(client, world, track(start, [INSIDE, INSIDE]))
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}/track.csv",
        params={"from": (start - timedelta(minutes=1)).isoformat(), "purpose": "court evidence"},
        headers=bearer(world.admin_token),
    )
    assert resp.status == 200
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    lines = (await resp.text()).strip().splitlines()
    assert lines[0] == "ts_utc,lon_wgs84,lat_wgs84,accuracy_m,device_id,flags"
    assert len(lines) == 3
    resp = await client.get(
        "/api/v1/audit",
        params={"subject_id": str(world.subject_id)},
        headers=bearer(world.admin_token),
    )
    entries = (await resp.json())["entries"]
    assert [(e["action"], e["purpose"]) for e in entries][:1] == [
        ("track.export", "court evidence")
    ]
