"""The app's services run on the clock the app is built with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.bootstrap import create_officer
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from tests.conftest import Officers, unique
from tests.e2e.helpers import INSIDE, OUTSIDE, alerts_of, make_world, send, track

pytestmark = pytest.mark.e2e


async def test_a_token_expires_by_the_apps_clock(settings: Settings) -> None:
    username = unique("clk")
    await create_officer(
        settings.database_url or "",
        username=username,
        password="s3cret-pass",
        role="officer",
        org_code=unique("s"),
    )
    clock = ManualClock(datetime(2031, 5, 1, 8, 0, tzinfo=UTC))
    app = init_app(settings.model_copy(update={"token_ttl_s": 600}), clock=clock)
    async with TestClient[Any, Any](TestServer(app)) as client:
        resp = await client.post(
            "/api/v1/auth/token", json={"username": username, "password": "s3cret-pass"}
        )
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["expires_at"] == iso(clock.now() + timedelta(seconds=600))


async def test_alerts_are_detected_acknowledged_and_resolved_by_the_apps_clock(
    settings: Settings, officers: Officers
) -> None:
    # Two hours ahead of the wall clock: fixes from then are on time for this app, and a
    # left_activity_area alert they raise is detected at this clock's now, not PostgreSQL's.
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2))
    app = init_app(settings, clock=clock)
    async with TestClient[Any, Any](TestServer(app)) as client:
        world = await make_world(client, officers)
        start = clock.now() - timedelta(minutes=10)
        await send(client, world, track(start, [INSIDE] * 2 + [OUTSIDE] * 6))
        (alert,) = await alerts_of(client, world, type="left_activity_area")
        assert alert["detected_at"] == iso(clock.now())
        # So are an officer's acknowledgement and resolution: the report's times to
        # acknowledge and to resolve count on one clock.
        h = {"Authorization": f"Bearer {world.admin_token}"}
        clock.advance(180)
        resp = await client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=h)
        assert resp.status == 200, await resp.text()
        acknowledged_at = iso(clock.now())
        clock.advance(420)
        resp = await client.post(
            f"/api/v1/alerts/{alert['id']}/resolve", json={"disposition": "justified"}, headers=h
        )
        assert resp.status == 200, await resp.text()
        resolved = await resp.json()
    assert resolved["acknowledged_at"] == acknowledged_at
    assert resolved["resolved_at"] == iso(clock.now())
