"""Fixes arriving out of order end where in-order delivery ends (replay from checkpoints)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer
from tests.e2e.helpers import (
    INSIDE,
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    OUTSIDE,
    alerts_of,
    make_world,
    recent,
    send,
    track,
)

pytestmark = pytest.mark.e2e


def summary(alerts: list[Any]) -> list[tuple[str, str, str | None]]:
    return [(a["type"], a["started_at"], a["ended_at"]) for a in alerts]


async def test_shuffled_batches_give_the_in_order_alerts(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    points = [INSIDE] * 3 + [OUTSIDE] * 5 + [INSIDE] * 4 + [OUTSIDE] * 4 + [INSIDE] * 3
    start = recent(90)
    fixes = track(start, points, step_s=60)
    ordered = await make_world(client, officers, level="strict")
    await send(client, ordered, fixes)
    expected = summary(await alerts_of(client, ordered))
    assert len(expected) == 2

    shuffled = await make_world(client, officers, level="strict")
    rng = random.Random(7)
    order = list(range(len(fixes)))
    rng.shuffle(order)
    for chunk in (order[:6], order[6:13], order[13:]):
        await send(client, shuffled, [fixes[i] for i in chunk])
    assert summary(await alerts_of(client, shuffled)) == expected


async def test_a_late_fix_inside_retracts_an_alert_it_disproves(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers, level="strict")  # confirm 120 s
    start = recent(60)
    # Near the border (~850 m apart), so no step looks like a GPS spike.
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    fixes = track(start, [i, i, o, o, i, o, o, i], accuracy_m=5.0)
    late = fixes.pop(4)  # the inside fix at minute 4, delivered last
    await send(client, world, fixes)
    raised = await alerts_of(client, world)
    assert [a["type"] for a in raised] == ["left_activity_area"]

    await send(client, world, [late])
    assert await alerts_of(client, world) == []
    resp = await client.get(
        "/api/v1/alerts",
        params={"subject_id": str(world.subject_id), "include_retracted": "true"},
        headers=bearer(world.admin_token),
    )
    kept = (await resp.json())["alerts"]
    assert [a["id"] for a in kept] == [raised[0]["id"]]
    assert kept[0]["retracted_at"] is not None

    # The track has every fix, none of them flagged late: all were evaluated in order.
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}/track",
        params={"from": fixes[0]["ts"], "purpose": "test"},
        headers=bearer(world.admin_token),
    )
    features = (await resp.json())["features"]
    assert len(features) == 8
    assert all("late" not in f["properties"]["flags"] for f in features)
