"""Fixes in, alerts out: the core path through HTTP on real PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers
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
