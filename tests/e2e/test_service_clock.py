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
from tests.conftest import unique

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
