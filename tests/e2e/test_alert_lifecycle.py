"""The alert lifecycle completed, over HTTP on a moved clock: self-resolution first (a
message to the phone, a grace), release to officers (``alert.released``, on the feed too),
self-resolved alerts that never reach officers, gravity, reopening, incidents."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from correction_monitor.domain.clock import ManualClock
from correction_monitor.service.bootstrap import Services
from correction_monitor.service.checkin_deadlines import SweepCheckinDeadlines
from correction_monitor.service.self_resolution import RELEASE_TIMER, release_when_due
from correction_monitor.service.timers import TimerService
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import POOL, SERVICES
from tests.conftest import Officers, bearer
from tests.e2e.helpers import (
    INSIDE,
    OUTSIDE,
    County,
    World,
    alerts_of,
    expect_error,
    expect_json,
    make_county,
    make_world,
    send,
    sql_row,
    track,
)
from tests.e2e.test_alerts_feed import next_event, open_stream

pytestmark = pytest.mark.e2e

GRACE_S = 300  # policy [self_resolution] left_activity_area


class Moved:
    """An app on a manual clock over the session's database: consumers and the release
    timers advance only when a test says so."""

    def __init__(self, client: TestClient[Any, Any], clock: ManualClock) -> None:
        self.client = client
        self.clock = clock
        self.services: Services = client.app[SERVICES]
        # Only the release timers: other features' timers in the shared database are theirs.
        self.timers = TimerService(
            self.services.uow,
            {RELEASE_TIMER: lambda t, uow: release_when_due(t, uow, clock=clock)},
            clock,
        )

    async def settle(self) -> None:
        """Run the event consumers, then the due release timers, then the consumers again."""
        await self.services.consumers.run_all()
        await self.timers.fire_due()
        await self.services.consumers.run_all()


@pytest.fixture(scope="module")
async def moved(settings: Settings) -> AsyncIterator[Moved]:
    clock = ManualClock(datetime.now(UTC))
    app = init_app(settings, clock=clock)
    async with TestClient[Any, Any](TestServer(app)) as client:
        yield Moved(client, clock)


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


def leaving(now: datetime) -> list[dict[str, Any]]:
    """Two fixes inside, then four outside a minute apart, the last three minutes before
    ``now``: a strict subject's breach is confirmed (two minutes outside)."""
    return track(now - timedelta(minutes=8), [INSIDE] * 2 + [OUTSIDE] * 4)


def returning(now: datetime) -> list[dict[str, Any]]:
    """Back inside for two and a half minutes, ending at ``now``."""
    return track(now - timedelta(minutes=2), [INSIDE] * 5, step_s=30)


async def events_of(client: TestClient[Any, Any], alert_id: int) -> list[tuple[str, Any]]:
    """The alert's events in the log, in order: (name, data)."""
    async with client.app[POOL].acquire() as conn:
        rows = await conn.fetch(
            "SELECT name, data FROM events WHERE alert_id = $1 ORDER BY id", alert_id
        )
    return [(r["name"], r["data"]) for r in rows]


async def only_alert(client: TestClient[Any, Any], world: World, type_: str) -> Any:
    [alert] = await alerts_of(client, world, type=type_)
    return alert


async def test_a_subject_who_stays_out_is_messaged_then_reaches_officers(
    client: TestClient[Any, Any], officers: Officers, county: County, moved: Moved
) -> None:
    world = await make_world(client, officers, in_county=county)
    _, officer = await officers.create("officer", world.station)
    moved.clock.set(datetime.now(UTC))
    stream = await open_stream(client, officer)
    try:
        await send(client, world, leaving(datetime.now(UTC)))
        opened = await next_event(stream)
        assert opened["event"] == "opened"
        alert_id = json.loads(opened["data"])["id"]
        await moved.settle()

        # In its grace: listed, marked with when the grace ends, not released.
        alert = await only_alert(client, world, "left_activity_area")
        assert alert["id"] == alert_id
        detected = datetime.fromisoformat(alert["detected_at"])
        until = datetime.fromisoformat(alert["self_resolution_until"])
        assert until - detected == timedelta(seconds=GRACE_S)
        assert (alert["released_at"], alert["self_resolved"]) == (None, False)
        assert alert["status"] == "open"

        # The phone is told first, once.
        device = bearer(world.device_token)
        messages = (await expect_json(await client.get("/api/v1/me/messages", headers=device)))[
            "messages"
        ]
        [message] = [m for m in messages if m["kind"] == "self_resolution"]
        assert "活动区域" in message["text"]
        assert message["data"]["alert_id"] == alert_id

        # Half-way through the grace nothing reaches officers.
        moved.clock.set(detected + timedelta(seconds=GRACE_S / 2))
        await moved.settle()
        assert (await only_alert(client, world, "left_activity_area"))["released_at"] is None
        names = [name for name, _ in await events_of(client, alert_id)]
        assert "alert.released" not in names

        # The grace runs out with the subject still outside: released, once.
        moved.clock.set(until + timedelta(seconds=1))
        await moved.settle()
        await moved.settle()
        alert = await only_alert(client, world, "left_activity_area")
        assert alert["released_at"] is not None
        assert alert["self_resolved"] is False
        released = [d for name, d in await events_of(client, alert_id) if name == "alert.released"]
        assert len(released) == 1
        assert released[0]["type"] == "left_activity_area"
        assert released[0]["severity"] == "high"
        assert released[0]["detected_at"] == alert["detected_at"]

        # The officer's stream tells it as an alert change.
        event = await next_event(stream)
        assert event["event"] == "released"
        assert json.loads(event["data"])["id"] == alert_id
        assert json.loads(event["data"])["released_at"] == alert["released_at"]
    finally:
        stream.close()
    # The message was sent once, whatever ran again.
    messages = (
        await expect_json(
            await client.get("/api/v1/me/messages", headers=bearer(world.device_token))
        )
    )["messages"]
    assert len([m for m in messages if m["kind"] == "self_resolution"]) == 1


async def test_a_subject_who_returns_within_the_grace_self_resolves_and_never_reaches_officers(
    client: TestClient[Any, Any], officers: Officers, county: County, moved: Moved
) -> None:
    world = await make_world(client, officers, in_county=county)
    moved.clock.set(datetime.now(UTC))
    await send(client, world, leaving(datetime.now(UTC)))
    await moved.settle()
    alert = await only_alert(client, world, "left_activity_area")
    assert alert["self_resolution_until"] is not None

    await send(client, world, returning(datetime.now(UTC)))
    await moved.settle()
    alert = await only_alert(client, world, "left_activity_area")
    assert alert["ended_at"] is not None
    assert (alert["self_resolved"], alert["released_at"]) == (True, None)

    # Past the grace, its timer (cancelled) releases nothing.
    moved.clock.set(datetime.fromisoformat(alert["self_resolution_until"]) + timedelta(hours=1))
    await moved.settle()
    alert = await only_alert(client, world, "left_activity_area")
    assert (alert["self_resolved"], alert["released_at"]) == (True, None)
    names = [name for name, _ in await events_of(client, alert["id"])]
    assert names.count("alert.self_resolved") == 1
    assert "alert.released" not in names
    # It opens no task: tasks follow alert.released.
    assert "task.created" not in names
    # Still listed for officers who look: nothing is hidden.
    assert alert["status"] == "open"


async def test_a_type_without_grace_is_released_at_once(
    client: TestClient[Any, Any], officers: Officers, county: County, moved: Moved
) -> None:
    school = {
        "name": "某小学",
        "kind": "exclusion",
        "geometry": {"type": "Point", "coordinates": [116.30, 39.90]},
        "radius_m": 500,
    }
    world = await make_world(client, officers, in_county=county, exclusions=[school])
    fixes = track(
        datetime.now(UTC) - timedelta(minutes=6), [(116.25, 39.85)] * 2 + [(116.30, 39.90)] * 4
    )
    await send(client, world, fixes)
    await moved.settle()
    alert = await only_alert(client, world, "entered_exclusion_zone")
    assert alert["self_resolution_until"] is None
    assert alert["released_at"] is not None
    names = [name for name, _ in await events_of(client, alert["id"])]
    assert [n for n in names if n.startswith("alert.")] == ["alert.opened", "alert.released"]


async def test_resolving_with_gravity_stores_it_and_tells_it(
    client: TestClient[Any, Any], officers: Officers, county: County, moved: Moved
) -> None:
    world = await make_world(client, officers, in_county=county)
    await send(client, world, leaving(datetime.now(UTC)))
    alert = await only_alert(client, world, "left_activity_area")
    url = f"/api/v1/alerts/{alert['id']}/resolve"
    h = bearer(world.admin_token)
    await expect_error(
        await client.post(url, json={"disposition": "confirmed", "gravity": "grave"}, headers=h),
        400,
    )
    resolved = await expect_json(
        await client.post(
            url,
            json={"disposition": "confirmed", "gravity": "serious", "note": "拒不返回"},
            headers=h,
        )
    )
    assert (resolved["status"], resolved["gravity"]) == ("resolved", "serious")
    data = [d for name, d in await events_of(client, alert["id"]) if name == "alert.resolved"]
    assert (data[0]["disposition"], data[0]["gravity"]) == ("confirmed", "serious")

    # Without a gravity a resolution is minor (情节轻微).
    other = await make_world(client, officers, in_county=county)
    await send(client, other, leaving(datetime.now(UTC)))
    second = await only_alert(client, other, "left_activity_area")
    body = await expect_json(
        await client.post(
            f"/api/v1/alerts/{second['id']}/resolve", json={"disposition": "false_alarm"}, headers=h
        )
    )
    assert body["gravity"] == "minor"
    await moved.settle()


async def test_reopening_follows_its_rules(
    client: TestClient[Any, Any], officers: Officers, county: County, moved: Moved
) -> None:
    world = await make_world(client, officers, in_county=county)
    neighbour = await make_world(client, officers, in_county=county)
    _, officer = await officers.create("officer", world.station)
    _, supervisor = await officers.create("supervisor", world.station)
    _, foreign = await officers.create("supervisor", neighbour.station)
    await send(client, world, leaving(datetime.now(UTC)))
    alert = await only_alert(client, world, "left_activity_area")
    url = f"/api/v1/alerts/{alert['id']}/reopen"
    why = {"reason": "复核发现定位漂移"}

    # Only a resolved alert; only a supervisor or above; only within the jurisdiction.
    await expect_error(
        await client.post(url, json=why, headers=bearer(supervisor)), 409, "alert_not_resolved"
    )
    await expect_json(
        await client.post(
            f"/api/v1/alerts/{alert['id']}/resolve",
            json={"disposition": "confirmed", "gravity": "serious", "note": "确认越界"},
            headers=bearer(officer),
        )
    )
    await expect_error(await client.post(url, json=why, headers=bearer(officer)), 403)
    await expect_error(await client.post(url, json=why, headers=bearer(foreign)), 404)
    await expect_error(
        await client.post(url, json={"reason": "  "}, headers=bearer(supervisor)), 400
    )
    await expect_error(await client.post(url, json={}, headers=bearer(supervisor)), 400)

    reopened = await expect_json(await client.post(url, json=why, headers=bearer(supervisor)))
    assert reopened["status"] == "acknowledged"
    assert (reopened["disposition"], reopened["gravity"], reopened["resolved_at"]) == (
        None,
        None,
        None,
    )
    assert reopened["reopen_count"] == 1
    assert reopened["reopened_at"] is not None
    [history] = reopened["evidence"]["resolution_history"]
    assert (history["disposition"], history["gravity"], history["note"]) == (
        "confirmed",
        "serious",
        "确认越界",
    )
    assert history["reason"] == why["reason"]
    data = [d for name, d in await events_of(client, alert["id"]) if name == "alert.reopened"]
    assert data[-1]["reason"] == why["reason"]
    assert data[-1]["previous"]["disposition"] == "confirmed"
    audit = await sql_row(
        client,
        "SELECT detail FROM audit_log WHERE action = 'alert.reopen' AND subject_id = $1",
        world.subject_id,
    )
    assert audit["detail"]["alert_id"] == alert["id"]

    # Resolved again, it may be reopened again; not once 30 days have passed.
    await expect_json(
        await client.post(
            f"/api/v1/alerts/{alert['id']}/resolve",
            json={"disposition": "justified"},
            headers=bearer(officer),
        )
    )
    await sql_row(
        client,
        "UPDATE alerts SET resolved_at = $2 WHERE id = $1 RETURNING id",
        alert["id"],
        moved.clock.now() - timedelta(days=31),
    )
    await expect_error(
        await client.post(url, json=why, headers=bearer(supervisor)), 409, "reopen_window_passed"
    )


async def test_leaving_and_missing_a_check_in_on_one_trip_make_one_incident(
    client: TestClient[Any, Any], officers: Officers, county: County, moved: Moved
) -> None:
    world = await make_world(client, officers, in_county=county)
    other = await make_world(client, officers)
    _, other_admin = await officers.create("county_admin", other.county)
    moved.clock.set(datetime.now(UTC))
    await send(client, world, leaving(datetime.now(UTC)))
    await moved.settle()
    # A challenge on the moved clock, left unanswered: the deadline sweep opens missed_checkin.
    challenge = await expect_json(
        await moved.client.post(
            f"/api/v1/subjects/{world.subject_id}/challenges",
            json={"answer_within_s": 60},
            headers=bearer(world.admin_token),
        ),
        201,
    )
    moved.clock.advance(120)
    await moved.services.handle(SweepCheckinDeadlines(moved.clock.now()))
    await moved.settle()
    away = await only_alert(client, world, "left_activity_area")
    missed = await only_alert(client, world, "missed_checkin")
    assert missed["evidence"]["checkin_id"] == challenge["id"]
    assert away["incident_id"] is not None
    assert missed["incident_id"] == away["incident_id"]

    incident = await expect_json(
        await client.get(
            f"/api/v1/incidents/{away['incident_id']}", headers=bearer(world.admin_token)
        )
    )
    assert incident["alert_ids"] == [away["id"], missed["id"]]
    assert [a["type"] for a in incident["alerts"]] == ["left_activity_area", "missed_checkin"]
    assert (incident["status"], incident["subject_id"]) == ("open", world.subject_id)
    # Another county's administrator is not told it exists.
    await expect_error(
        await client.get(f"/api/v1/incidents/{away['incident_id']}", headers=bearer(other_admin)),
        404,
    )
    await expect_error(
        await client.get("/api/v1/incidents/999999999", headers=bearer(world.admin_token)), 404
    )
    # Alerts of another subject never join it.
    await send(client, other, leaving(datetime.now(UTC)))
    await moved.settle()
    assert (await only_alert(client, other, "left_activity_area"))["incident_id"] is None
