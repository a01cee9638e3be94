"""Login hardening over HTTP: ten failures in fifteen minutes refuse every login for the
username (429 with Retry-After) until the window passes on the app's clock, and a saturated
password pool refuses with 503 rather than queueing."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from correction_monitor.domain.clock import ManualClock
from correction_monitor.service.bootstrap import create_officer
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import SERVICES
from tests.conftest import unique
from tests.e2e.helpers import expect_error, expect_json, sql_row

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-pass"


async def _officer(settings: Settings) -> str:
    username = unique("thr")
    await create_officer(
        settings.database_url or "",
        username=username,
        password=PASSWORD,
        role="officer",
        org_code=unique("s"),
    )
    return username


async def _login(client: TestClient[Any, Any], username: str, password: str) -> Any:
    return await client.post(
        "/api/v1/auth/token", json={"username": username, "password": password}
    )


async def test_ten_failures_lock_the_username_until_the_window_passes(
    settings: Settings,
) -> None:
    username = await _officer(settings)
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with TestClient[Any, Any](TestServer(init_app(settings, clock=clock))) as client:
        for _ in range(10):
            await expect_error(
                await _login(client, username, "wrong-password"), 401, "invalid_credentials"
            )
            clock.advance(30)
        # The right password too: refused, with how long to wait.
        resp = await _login(client, username, PASSWORD)
        await expect_error(resp, 429, "too_many_attempts")
        retry_after = int(resp.headers["Retry-After"])
        # The first failure was 300 s ago; it leaves the 15-minute window in 600 s.
        assert retry_after == 15 * 60 - 300
        count = await sql_row(
            client, "SELECT count(*) AS n FROM login_failures WHERE username = $1", username
        )
        assert count["n"] == 10
        clock.advance(retry_after - 1)
        await expect_error(await _login(client, username, PASSWORD), 429, "too_many_attempts")
        clock.advance(1)
        body = await expect_json(await _login(client, username, PASSWORD))
        assert body["token_type"] == "bearer"


async def test_unknown_usernames_are_throttled_too(settings: Settings) -> None:
    ghost = unique("ghost")
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with TestClient[Any, Any](TestServer(init_app(settings, clock=clock))) as client:
        for _ in range(10):
            await expect_error(await _login(client, ghost, "guess-1234"), 401)
        resp = await _login(client, ghost, "guess-1234")
        await expect_error(resp, 429, "too_many_attempts")
        assert int(resp.headers["Retry-After"]) == 15 * 60


async def test_a_saturated_password_pool_answers_503_with_retry_after(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    username = await _officer(settings)
    passwords = client.app[SERVICES].passwords
    assert passwords is not None
    release = threading.Event()
    held = [
        asyncio.ensure_future(passwords.run(release.wait, 30)) for _ in range(passwords.capacity)
    ]
    try:
        await asyncio.sleep(0)
        resp = await _login(client, username, PASSWORD)
        await expect_error(resp, 503, "try_again")
        assert resp.headers["Retry-After"] == "1"
    finally:
        release.set()
        await asyncio.gather(*held)
    # Refused for load, not counted as a failure; the next login goes through.
    count = await sql_row(
        client, "SELECT count(*) AS n FROM login_failures WHERE username = $1", username
    )
    assert count["n"] == 0
    await expect_json(await _login(client, username, PASSWORD))
