"""Lost contact (失联): the sweep opens one alert per silence, accepted fixes close it and feed
the 脱离监管 clock, rejected fixes are no contact.

The sweep command runs directly with a server clock moved forward (``now``) instead of waiting
an hour; fixes go through HTTP. The sweep covers every subject of the test database, so the
assertions look only at this module's subjects.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.policy import Policy
from correction_monitor.service.lost_contact import SweepLostContact
from correction_monitor.web.keys import POLICY, SERVICES
from tests.conftest import Officers
from tests.e2e.helpers import (
    INSIDE,
    County,
    World,
    alerts_of,
    iso_z,
    make_county,
    make_world,
    post_fixes,
    recent,
    send,
    sql_row,
    track,
)

pytestmark = pytest.mark.e2e

CONTACT = """
SELECT last_contact_at, lost_contact_since, lost_contact_total_s
FROM subject_eval_state WHERE subject_id = $1
"""
ENROLLED = "SELECT created_at FROM devices WHERE id = $1"


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


def policy_of(client: TestClient[Any, Any]) -> Policy:
    policy: Policy = client.app[POLICY]
    return policy


async def sweep_at(client: TestClient[Any, Any], now: datetime) -> None:
    await client.app[SERVICES].handle(SweepLostContact(now))


async def lost_alerts(client: TestClient[Any, Any], world: World) -> list[Any]:
    return await alerts_of(client, world, type="lost_contact")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_silence_opens_one_alert_and_the_next_accepted_fix_closes_it(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county, level="strict")
    threshold = policy_of(client).level("strict").lost_contact_after_s
    await send(client, world, track(recent(10), [INSIDE] * 3))
    last = (await sql_row(client, CONTACT, world.subject_id))["last_contact_at"]
    assert last is not None

    await sweep_at(client, last + timedelta(seconds=threshold - 60))
    assert await lost_alerts(client, world) == []

    await sweep_at(client, last + timedelta(seconds=threshold + 60))
    alerts = await lost_alerts(client, world)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["started_at"] == iso_z(last)  # the silence began at the last contact
    assert alert["ended_at"] is None
    assert alert["severity"] == "high"
    assert alert["evidence"]["silent_s"] == threshold + 60
    assert alert["evidence"]["policy"]["lost_contact_after_s"] == threshold

    # Still silent an hour later: the same episode, not a second alert.
    await sweep_at(client, last + timedelta(seconds=2 * threshold))
    assert await lost_alerts(client, world) == alerts

    # Fixes that are refused are not contact.
    now = datetime.now(UTC).replace(microsecond=0)
    refused = [
        track(now + timedelta(hours=2), [INSIDE])[0],
        track(now - timedelta(days=9), [INSIDE])[0],
        track(now - timedelta(minutes=1), [(INSIDE[0], 95.0)])[0],
    ]
    status, body = await post_fixes(client, world.device_token, refused)
    assert status == 200
    assert body["accepted"] == 0
    assert len(body["rejected"]) == 3
    assert await lost_alerts(client, world) == alerts
    state = await sql_row(client, CONTACT, world.subject_id)
    assert state["lost_contact_since"] == last
    assert state["last_contact_at"] == last

    # An accepted fix ends the episode and adds its length to the 脱离监管 clock.
    await send(client, world, track(recent(1), [INSIDE]))
    [ended] = await lost_alerts(client, world)
    assert ended["id"] == alert["id"]
    assert ended["ended_at"] is not None
    lost_s = (instant(ended["ended_at"]) - instant(ended["started_at"])).total_seconds()
    state = await sql_row(client, CONTACT, world.subject_id)
    assert state["lost_contact_since"] is None
    assert state["last_contact_at"] == instant(ended["ended_at"])
    assert state["lost_contact_total_s"] == pytest.approx(lost_s, abs=1e-3)
    assert lost_s > 0

    # The next silence counts on from there.
    second_last = state["last_contact_at"]
    await sweep_at(client, second_last + timedelta(seconds=threshold + 120))
    second = [a for a in await lost_alerts(client, world) if a["id"] != alert["id"]]
    assert len(second) == 1
    assert second[0]["started_at"] == iso_z(second_last)
    assert second[0]["evidence"]["lost_contact_clock_s"] == round(lost_s + threshold + 120)


async def test_a_phone_never_heard_from_is_lost_from_its_enrolment(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county, level="strict")
    enrolled = (await sql_row(client, ENROLLED, world.device_id))["created_at"]
    threshold = policy_of(client).level("strict").lost_contact_after_s
    await sweep_at(client, enrolled + timedelta(seconds=threshold + 1))
    alerts = await lost_alerts(client, world)
    assert [a["started_at"] for a in alerts] == [iso_z(enrolled)]


async def test_a_phone_sending_only_refused_fixes_becomes_lost(
    client: TestClient[Any, Any], officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county, level="strict")
    enrolled = (await sql_row(client, ENROLLED, world.device_id))["created_at"]
    # A phone with a clock two hours fast: everything it sends is refused.
    fast = track(datetime.now(UTC) + timedelta(hours=2), [INSIDE] * 5)
    status, body = await post_fixes(client, world.device_token, fast)
    assert (status, body["accepted"]) == (200, 0)
    threshold = policy_of(client).level("strict").lost_contact_after_s
    await sweep_at(client, enrolled + timedelta(seconds=threshold + 1))
    assert [a["started_at"] for a in await lost_alerts(client, world)] == [iso_z(enrolled)]


@pytest.mark.parametrize("level", ["strict", "normal", "lenient"])
async def test_each_level_has_its_own_threshold(
    client: TestClient[Any, Any], officers: Officers, county: County, level: str
) -> None:
    world = await make_world(client, officers, in_county=county, level=level)
    await send(client, world, track(recent(5), [INSIDE]))
    last = (await sql_row(client, CONTACT, world.subject_id))["last_contact_at"]
    threshold = policy_of(client).level(level).lost_contact_after_s
    await sweep_at(client, last + timedelta(seconds=threshold - 1))
    assert await lost_alerts(client, world) == []
    await sweep_at(client, last + timedelta(seconds=threshold + 1))
    assert len(await lost_alerts(client, world)) == 1
