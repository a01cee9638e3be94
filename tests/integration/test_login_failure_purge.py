"""Failed logins are forgotten once they have left the throttle's window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from correction_monitor.adapters import officers
from correction_monitor.adapters.db import create_pool
from correction_monitor.service.jobs import purge_login_failures
from correction_monitor.service.officers import LOGIN_FAILURE_WINDOW
from tests.conftest import unique

pytestmark = pytest.mark.integration


async def test_failures_older_than_the_window_are_purged(database_url: str) -> None:
    username = unique("f")
    now = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            for age in (
                LOGIN_FAILURE_WINDOW + timedelta(seconds=1),
                LOGIN_FAILURE_WINDOW,
                LOGIN_FAILURE_WINDOW - timedelta(seconds=1),
                timedelta(0),
            ):
                await officers.record_login_failure(conn, username, now - age)
        assert await purge_login_failures(pool, now) >= 2
        async with pool.acquire() as conn:
            kept = await officers.login_failures_since(
                conn, username, now - timedelta(days=1), limit=10
            )
        assert kept == [now, now - LOGIN_FAILURE_WINDOW + timedelta(seconds=1)]
    finally:
        await pool.close()
