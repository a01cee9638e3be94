"""Fixes arriving out of order end where in-order delivery ends (replay from checkpoints)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer
from tests.e2e.helpers import (
    INSIDE,
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    OUTSIDE,
    alerts_of,
    iso_z,
    make_world,
    recent,
    same_instant,
    send,
    track,
    track_of,
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


async def test_an_alert_a_late_fix_disproves_stays_listed_marked_until_resolved(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    """A fix of a gap, arriving after the alert was raised, shows the breach was never
    confirmed. Officers may have seen the alert: it stays in the default list, open, its
    evidence saying why and naming the fix; the feed tells the change; an officer closes it."""
    world = await make_world(client, officers, level="strict")  # confirm 120 s
    start = recent(60)
    # Near the border (~850 m apart), so no step looks like a GPS spike.
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    fixes = track(start, [i, i, o, o, i, o, o, i], accuracy_m=5.0)
    late = fixes.pop(4)  # the inside fix at minute 4, delivered last (a 2-minute gap)
    await send(client, world, fixes)
    raised = await alerts_of(client, world)
    assert [a["type"] for a in raised] == ["left_activity_area"]

    feed = await client.get(
        "/api/v1/alerts/stream",
        params={"since": "0"},
        headers=bearer(world.admin_token),
    )
    assert feed.status == 200
    try:
        await send(client, world, [late])
        told = [e async for e in sse_events(feed, until=("retracted", raised[0]["id"]))]
    finally:
        feed.close()
    assert [e["event"] for e in told if e["data"]["id"] == raised[0]["id"]] == [
        "opened",
        "retracted",
    ]

    shown = await alerts_of(client, world)
    assert [a["id"] for a in shown] == [raised[0]["id"]]
    alert = shown[0]
    assert alert["retracted_at"] is not None
    assert alert["status"] == "open"
    assert (alert["started_at"], alert["ended_at"]) == (raised[0]["started_at"], None)
    mark = alert["evidence"]["retracted"]
    assert mark["why"] == "fixes that arrived later show the breach was not confirmed"
    assert mark["superseded_by"] is None
    assert mark["late_count"] == 1
    assert mark["late_fixes"] == [
        {
            "at": iso_z(datetime.fromisoformat(late["ts"])),
            "lon": late["lon"],
            "lat": late["lat"],
            "accuracy_m": 5.0,
            "device_id": world.device_id,
        }
    ]
    # The filter from before the change still answers, with the same list.
    assert await alerts_of(client, world, include_retracted="true") == shown

    # The track has every fix, none of them flagged late: all were evaluated in order. The
    # gap's fix says it came afterwards, and it contradicts nothing.
    features = await track_of(client, world, start=datetime.fromisoformat(fixes[0]["ts"]))
    assert len(features) == 8
    flags = {f["properties"]["ts"]: f["properties"]["flags"] for f in features}
    assert flags.pop(iso_z(datetime.fromisoformat(late["ts"]))) == ["backfill"]
    assert all(f == [] for f in flags.values())

    # Only an officer closes it.
    resp = await client.post(
        f"/api/v1/alerts/{alert['id']}/resolve",
        json={"disposition": "false_alarm", "note": "补传的定位显示未越界"},
        headers=bearer(world.admin_token),
    )
    assert resp.status == 200, await resp.text()
    [closed] = await alerts_of(client, world)
    assert (closed["id"], closed["status"]) == (alert["id"], "resolved")


async def sse_events(resp: ClientResponse, until: tuple[str, int]) -> AsyncIterator[dict[str, Any]]:
    """The events of an SSE stream (``data`` decoded) up to and including the first of
    ``until`` (kind, alert id)."""
    fields: dict[str, str] = {}
    while True:
        line = await asyncio.wait_for(resp.content.readline(), 10.0)
        assert line, "the stream ended"
        text = line.decode().rstrip("\r\n")
        if text.startswith(":"):
            continue
        if text:
            name, _, value = text.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            yield {"event": fields["event"], "data": json.loads(fields["data"])}
            if (fields["event"], json.loads(fields["data"])["id"]) == until:
                return
        fields = {}


async def test_an_alert_whose_breach_started_earlier_names_the_episode_that_replaces_it(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    """Fixes of a gap show the same breach began earlier: the first alert stays listed,
    marked as superseded by the episode the replay confirmed, which is raised too."""
    world = await make_world(client, officers, level="strict")  # confirm 120 s
    start = recent(60)
    i, o = NEAR_INSIDE, NEAR_OUTSIDE
    fixes = track(start, [i, o, o, o, o, o, o, o], accuracy_m=5.0)
    gap = [fixes.pop(1), fixes.pop(1), fixes.pop(1)]  # minutes 1-3, delivered last
    await send(client, world, fixes)
    [first] = await alerts_of(client, world)
    assert same_instant(first["started_at"], fixes[1]["ts"])
    await send(client, world, gap)
    shown = {a["id"]: a for a in await alerts_of(client, world)}
    assert len(shown) == 2
    kept = shown.pop(first["id"])
    [replacement] = shown.values()
    assert same_instant(replacement["started_at"], gap[0]["ts"])
    mark = kept["evidence"]["retracted"]
    assert mark["why"] == "fixes that arrived later show the breach started at another time"
    assert mark["superseded_by"]["started_at"] == replacement["started_at"]
    assert kept["status"] == "open"
