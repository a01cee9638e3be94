"""The officers' alert API over HTTP: listing with filters, acknowledging, resolving with a
disposition, jurisdiction, and the live ``text/event-stream`` feed with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from correction_monitor.adapters.hot_state import FEED_CHANNEL
from correction_monitor.web.keys import FEED_HUB
from tests.conftest import Officers, bearer
from tests.e2e.helpers import (
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    County,
    World,
    alerts_of,
    make_county,
    make_world,
    recent,
    send,
    track,
)

pytestmark = pytest.mark.e2e

STREAM = "/api/v1/alerts/stream"
OUT_AND_BACK = [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 4 + [NEAR_INSIDE] * 4
SCHOOL = (116.30, 39.90)


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


async def next_event(resp: ClientResponse, timeout_s: float = 10.0) -> dict[str, str]:
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
            continue
        if text.startswith(":"):
            continue
        name, _, value = text.partition(":")
        fields[name] = value.removeprefix(" ")


async def open_stream(
    client: TestClient[Any, Any], token: str, last_event_id: str | None = None
) -> ClientResponse:
    headers = bearer(token)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    resp = await client.get(STREAM, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    # The preamble is written once the stream has taken its starting point.
    assert (await asyncio.wait_for(resp.content.readline(), 5.0)).startswith(b": connected")
    return resp


async def test_stream_sends_changes_of_own_station_and_resumes_after_last_event_id(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    neighbour = await make_world(client, officers, in_county=county)
    _, mine = await officers.create("officer", world.station)
    _, theirs = await officers.create("officer", neighbour.station)
    stream = await open_stream(client, mine)
    other_stream = await open_stream(client, theirs)
    try:
        fixes = track(recent(), OUT_AND_BACK)
        await send(client, world, fixes)
        opened = await next_event(stream)
        ended = await next_event(stream)
        assert (opened["event"], ended["event"]) == ("opened", "ended")
        assert int(ended["id"]) > int(opened["id"])
        alert = json.loads(opened["data"])
        assert alert["subject_id"] == world.subject_id
        assert alert["type"] == "left_activity_area"
        assert json.loads(ended["data"])["id"] == alert["id"]

        # The neighbouring station's feed skips all of that: its first event is its own.
        await send(client, neighbour, fixes)
        first = json.loads((await next_event(other_stream))["data"])
        assert first["subject_id"] == neighbour.subject_id
    finally:
        stream.close()
        other_stream.close()

    # Reconnecting after the first event replays only what came later, then follows on.
    resumed = await open_stream(client, mine, last_event_id=opened["id"])
    try:
        replayed = await next_event(resumed)
        assert (replayed["id"], replayed["event"]) == (ended["id"], "ended")
        resp = await client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=bearer(mine))
        assert resp.status == 200, await resp.text()
        acked = await next_event(resumed)
        assert acked["event"] == "acknowledged"
        assert int(acked["id"]) > int(ended["id"])
        assert json.loads(acked["data"])["status"] == "acknowledged"
    finally:
        resumed.close()


async def test_stream_refuses_bad_last_event_id_and_anonymous_callers(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    resp = await client.get(STREAM)
    assert resp.status == 401
    # Event ids are positive 64-bit integers; anything else is refused before streaming.
    for last in ("yesterday", "-1", str(2**63), "99999999999999999999"):
        resp = await client.get(
            STREAM, headers=bearer(county.admin_token) | {"Last-Event-ID": last}
        )
        assert resp.status == 400, last
        assert (await resp.json())["error"]["code"] == "invalid_request"


async def _two_alerts(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> tuple[World, dict[str, Any], dict[str, Any]]:
    """A subject who visits a forbidden school (episode over) and later leaves the county
    (still away): an ended exclusion alert and an ongoing activity-area alert."""
    school = {
        "name": "某小学",
        "kind": "exclusion",
        "geometry": {"type": "Point", "coordinates": list(SCHOOL)},
        "radius_m": 300,
    }
    world = await make_world(client, officers, in_county=county, exclusions=[school])
    start = recent(180)
    near = (SCHOOL[0] + 0.01, SCHOOL[1])
    visit = track(start, [near] + [SCHOOL] * 4 + [near] * 3)
    leave = track(recent(60), [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 4)
    await send(client, world, visit + leave)
    by_type = {a["type"]: a for a in await alerts_of(client, world)}
    assert sorted(by_type) == ["entered_exclusion_zone", "left_activity_area"]
    return world, by_type["entered_exclusion_zone"], by_type["left_activity_area"]


async def test_list_filters_acknowledge_and_resolve(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world, zone, area = await _two_alerts(client, officers, county)
    assert zone["ended_at"] is not None
    assert area["ended_at"] is None
    _, officer = await officers.create("officer", world.station)
    h = bearer(officer)

    async def listed(**params: str) -> list[int]:
        resp = await client.get("/api/v1/alerts", params=params, headers=h)
        assert resp.status == 200, await resp.text()
        return sorted(a["id"] for a in (await resp.json())["alerts"])

    sid = str(world.subject_id)
    assert await listed() == sorted([zone["id"], area["id"]])
    assert await listed(subject_id=sid, type="entered_exclusion_zone") == [zone["id"]]
    assert await listed(subject_id=sid, type="curfew_violation") == []
    assert await listed(subject_id=sid, status="open") == sorted([zone["id"], area["id"]])

    resp = await client.post(f"/api/v1/alerts/{zone['id']}/acknowledge", headers=h)
    assert resp.status == 200, await resp.text()
    acked = await resp.json()
    assert acked["status"] == "acknowledged"
    assert acked["acknowledged_at"] is not None
    # Acknowledging again changes nothing.
    resp = await client.post(f"/api/v1/alerts/{zone['id']}/acknowledge", headers=h)
    assert resp.status == 200
    assert (await resp.json())["acknowledged_at"] == acked["acknowledged_at"]
    assert await listed(subject_id=sid, status="acknowledged") == [zone["id"]]
    assert await listed(subject_id=sid, status="open") == [area["id"]]

    resp = await client.post(
        f"/api/v1/alerts/{zone['id']}/resolve",
        json={"disposition": "confirmed", "note": "电话核实：曾进入校园周边"},
        headers=h,
    )
    assert resp.status == 200, await resp.text()
    resolved = await resp.json()
    assert (resolved["status"], resolved["disposition"]) == ("resolved", "confirmed")
    assert resolved["note"] == "电话核实：曾进入校园周边"
    assert resolved["resolved_by"] == resolved["acknowledged_by"]
    assert await listed(subject_id=sid, status="resolved") == [zone["id"]]

    resp = await client.post(
        f"/api/v1/alerts/{zone['id']}/resolve", json={"disposition": "false_alarm"}, headers=h
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "alert_resolved"
    resp = await client.post(f"/api/v1/alerts/{zone['id']}/acknowledge", headers=h)
    assert resp.status == 409

    for body in ({"disposition": "guilty"}, {}, {"disposition": None}):
        resp = await client.post(f"/api/v1/alerts/{area['id']}/resolve", json=body, headers=h)
        assert resp.status == 400, body
    resp = await client.get(f"/api/v1/alerts/{area['id']}", headers=h)
    assert (await resp.json())["status"] == "open"
    # Resolving without acknowledging first records the resolver as acknowledging too.
    resp = await client.post(
        f"/api/v1/alerts/{area['id']}/resolve", json={"disposition": "justified"}, headers=h
    )
    assert resp.status == 200
    assert (await resp.json())["acknowledged_by"] is not None


async def test_list_rejects_unknown_filters(client: TestClient[Any, Any], county: County) -> None:
    h = bearer(county.admin_token)
    for params in (
        {"type": "speeding"},
        {"status": "closed"},
        {"subject_id": "abc"},
        {"limit": "-1"},
        {"limit": "0"},
    ):
        resp = await client.get("/api/v1/alerts", params=params, headers=h)
        assert resp.status == 400, params
        assert (await resp.json())["error"]["code"] == "invalid_request"
    # No subject has such an id: nothing to list (and no database error either).
    for subject_id in ("99999999999", "-5"):
        resp = await client.get("/api/v1/alerts", params={"subject_id": subject_id}, headers=h)
        assert resp.status == 200, subject_id
        assert (await resp.json())["alerts"] == []
    resp = await client.get("/api/v1/alerts/2147480000", headers=h)
    assert resp.status == 404


async def test_other_station_cannot_see_or_touch_the_alerts(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world, zone, area = await _two_alerts(client, officers, county)
    neighbour = await make_world(client, officers, in_county=county)
    _, theirs = await officers.create("officer", neighbour.station)
    h = bearer(theirs)
    resp = await client.get(
        "/api/v1/alerts", params={"subject_id": str(world.subject_id)}, headers=h
    )
    assert resp.status == 200
    assert (await resp.json())["alerts"] == []
    resp = await client.get("/api/v1/alerts", headers=h)
    listed = {a["id"] for a in (await resp.json())["alerts"]}
    assert not listed & {zone["id"], area["id"]}
    for alert in (zone, area):
        resp = await client.get(f"/api/v1/alerts/{alert['id']}", headers=h)
        assert resp.status == 404
        resp = await client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=h)
        assert resp.status == 404
        resp = await client.post(
            f"/api/v1/alerts/{alert['id']}/resolve", json={"disposition": "justified"}, headers=h
        )
        assert resp.status == 404
    # Nothing changed for the station that owns them.
    assert [a["status"] for a in await alerts_of(client, world)] == ["open", "open"]


async def test_a_closed_stream_lets_go_of_its_resources(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """Consoles reconnect often (EventSource retries on every network blip): a stream whose
    client has gone must leave the feed promptly, not at its next keep-alive. The process's
    one Redis subscription stays, whatever the streams do."""
    hub = client.app[FEED_HUB]
    channel = hub.hot.key(FEED_CHANNEL)

    async def subscribers() -> int:
        counts = await hub.hot.client.pubsub_numsub(channel)
        return int(counts[0][1])

    baseline = len(hub.subscriptions)
    stream = await open_stream(client, county.admin_token)
    assert len(hub.subscriptions) == baseline + 1
    assert await subscribers() == 1
    stream.close()
    for _ in range(60):
        if len(hub.subscriptions) == baseline:
            break
        await asyncio.sleep(0.05)
    assert len(hub.subscriptions) == baseline, "the stream outlived its client"
    assert await subscribers() == 1


async def test_streams_closed_at_once_all_let_go(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    """A console that gives up right after connecting (a page reload, a flaky network) must
    not leave its stream behind, however early in its start-up the stream is cut off."""
    hub = client.app[FEED_HUB]
    baseline = len(hub.subscriptions)
    for _ in range(40):
        resp = await client.get(STREAM, headers=bearer(county.admin_token))
        assert resp.status == 200
        resp.close()
    for _ in range(60):
        if len(hub.subscriptions) == baseline:
            break
        await asyncio.sleep(0.05)
    assert len(hub.subscriptions) == baseline, "streams outlived their clients"
