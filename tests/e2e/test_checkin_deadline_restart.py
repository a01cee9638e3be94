"""A window's close survives the service: killed before its windows close, the service
still opens each missed alert once after it comes back, and two processes coming back
together never open one twice.

Real ``correction-monitor serve`` processes on the run's database (``tests.e2e.procs``), on
the system clock; the windows are inserted with SQL to close a few seconds ahead.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers
from tests.e2e.helpers import make_world
from tests.e2e.procs import ServiceProcess, free_port

pytestmark = pytest.mark.e2e

WINDOWS = 12


@pytest.fixture
def scheduled_env(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> dict[str, str]:
    return {
        "CM_DATABASE_URL": database_url,
        "CM_REDIS_URL": redis_url,
        "CM_REDIS_PREFIX": f"{redis_prefix}deadlines:{tmp_path.name}:",
        "CM_RUN_SCHEDULER": "true",
        "CM_DATA_DIR": str(tmp_path / "cm-data"),
        "CM_LOG_LEVEL": "WARNING",
    }


async def counts(database_url: str, subject_id: int, closes: datetime) -> dict[str, int]:
    """The subject's windows closing at ``closes`` (the service may lay out windows of its
    own for the subject) by state, their alerts and the alerts' opening events."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT"
            " (SELECT count(*) FROM checkins WHERE subject_id = $1 AND closes_at = $2"
            "   AND status = 'pending') AS pending,"
            " (SELECT count(*) FROM checkins WHERE subject_id = $1 AND closes_at = $2"
            "   AND status = 'missed') AS missed,"
            " (SELECT count(*) FROM alerts WHERE subject_id = $1 AND type = 'missed_checkin')"
            "   AS alerts,"
            " (SELECT count(DISTINCT episode_key) FROM alerts"
            "   WHERE subject_id = $1 AND type = 'missed_checkin') AS episodes,"
            " (SELECT count(*) FROM events e JOIN alerts a ON a.id = e.alert_id"
            "   WHERE a.subject_id = $1 AND a.type = 'missed_checkin'"
            "   AND e.name = 'alert.opened') AS events",
            subject_id,
            closes,
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


async def test_a_service_killed_before_the_close_alerts_once_after_restart(
    client: TestClient[Any, Any],
    officers: Officers,
    database_url: str,
    scheduled_env: dict[str, str],
    tmp_path: Path,
) -> None:
    world = await make_world(client, officers, level="strict")
    first = ServiceProcess(free_port(), scheduled_env, tmp_path / "first.log")
    second = ServiceProcess(free_port(), scheduled_env, tmp_path / "second.log")
    third = ServiceProcess(free_port(), scheduled_env, tmp_path / "third.log")
    with first, second, third:
        first.start()
        closes = datetime.now(UTC) + timedelta(seconds=3)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "INSERT INTO checkins (subject_id, org_unit_id, kind, opens_at, closes_at)"
                " SELECT s.id, s.org_unit_id, 'scheduled',"
                " $2::timestamptz - make_interval(mins => 30 + n), $2::timestamptz"
                " FROM subjects s, generate_series(1, $3) AS n WHERE s.id = $1",
                world.subject_id,
                closes,
                WINDOWS,
            )
        finally:
            await conn.close()
        first.kill()  # a power cut, before any window closed
        assert datetime.now(UTC) < closes, "the service took too long to be killed"
        before = await counts(database_url, world.subject_id, closes)
        assert before == {"pending": WINDOWS, "missed": 0, "alerts": 0, "episodes": 0, "events": 0}

        await asyncio.sleep(max(0.0, (closes - datetime.now(UTC)).total_seconds()) + 1.0)
        # Nothing runs: the windows wait, pending, in PostgreSQL.
        assert (await counts(database_url, world.subject_id, closes))["pending"] == WINDOWS

        # Two processes come back at once and race over the closes they find due.
        second.start()
        third.start()
        deadline = time.monotonic() + 30
        found = before
        while time.monotonic() < deadline:
            found = await counts(database_url, world.subject_id, closes)
            if found["events"] >= WINDOWS:
                break
            await asyncio.sleep(0.25)
        expected = {
            "pending": 0,
            "missed": WINDOWS,
            "alerts": WINDOWS,
            "episodes": WINDOWS,
            "events": WINDOWS,
        }
        assert found == expected, second.log_tail() + third.log_tail()
        # Later sweeps of both (every 5 s) change nothing.
        await asyncio.sleep(6)
        assert await counts(database_url, world.subject_id, closes) == expected
