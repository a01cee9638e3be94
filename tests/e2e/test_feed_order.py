"""The live feed never skips an event whose transaction commits after a later one's.

Two transactions write alert events side by side, as two commit lanes or two processes do.
The one that started writing first commits last. A feed reader that saw the second event
must still get the first: with ids from a plain sequence the first event's id is the smaller
one, the reader has already moved past it, and it is never delivered.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.adapters import alerts
from correction_monitor.adapters.db import create_pool
from tests.conftest import Officers
from tests.e2e.helpers import make_world, record_alert_event
from tests.e2e.test_alerts_feed import next_event, open_stream

pytestmark = pytest.mark.e2e

NEW_ALERT = """
INSERT INTO alerts (subject_id, org_unit_id, type, severity, episode_key, started_at)
SELECT id, org_unit_id, 'left_activity_area', 'high', $2, now() FROM subjects WHERE id = $1
RETURNING id, org_unit_id
"""


async def test_an_event_committed_late_is_delivered_in_order(
    client: TestClient[Any, Any], officers: Officers, database_url: str
) -> None:
    world = await make_world(client, officers)
    pool = await create_pool(database_url, min_size=2, max_size=3)
    first_conn = await pool.acquire()
    second_conn = await pool.acquire()
    stream = await open_stream(client, world.admin_token)
    try:
        early = await pool.fetchrow(NEW_ALERT, world.subject_id, "late-commit:1")
        later = await pool.fetchrow(NEW_ALERT, world.subject_id, "late-commit:2")
        first = first_conn.transaction()
        await first.start()
        await record_alert_event(first_conn, early["id"], early["org_unit_id"], "opened")

        async def second_writer() -> None:
            async with second_conn.transaction():
                await record_alert_event(second_conn, later["id"], later["org_unit_id"], "opened")

        second = asyncio.create_task(second_writer())
        # The second writer either waits for the first (events in commit order) or commits
        # at once; the feed, which polls every second, then delivers whatever is visible.
        await asyncio.sleep(1.5)
        await first.commit()
        await second
        delivered = []
        for _ in range(2):
            event = await next_event(stream, timeout_s=5.0)
            delivered.append((int(event["id"]), json.loads(event["data"])["id"]))
        assert [alert for _, alert in delivered] == [early["id"], later["id"]]
        assert delivered[0][0] < delivered[1][0]
    finally:
        stream.close()
        await pool.release(first_conn)
        await pool.release(second_conn)
        await pool.close()


async def test_a_reader_following_concurrent_writers_misses_nothing(
    client: TestClient[Any, Any], officers: Officers, database_url: str
) -> None:
    """Many writers commit while a reader follows the log by ``id > cursor``, as the feed
    does: at the end the reader has met every event, each once."""
    world = await make_world(client, officers)
    pool = await create_pool(database_url, min_size=4, max_size=8)
    try:
        start = await pool.fetchval("SELECT COALESCE(max(id), 0) FROM events")
        ids = [
            (await pool.fetchrow(NEW_ALERT, world.subject_id, f"concurrent:{n}"))["id"]
            for n in range(60)
        ]

        async def writer(alert_id: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                org = await conn.fetchval("SELECT org_unit_id FROM alerts WHERE id = $1", alert_id)
                await record_alert_event(conn, alert_id, org, "opened")
                # Commits land in a different order from the writes.
                await asyncio.sleep(0.002 * (alert_id % 5))

        met: list[int] = []
        writing = asyncio.gather(*(writer(a) for a in ids))
        cursor = start
        while True:
            done = writing.done()
            async with pool.acquire() as conn:
                rows = await alerts.events_after(conn, cursor, None)
            for row in rows:
                cursor = row["event_id"]
                met.append(row["id"])
            if done and not rows:
                break
            await asyncio.sleep(0.001)
        await writing
        assert sorted(met) == sorted(ids)
    finally:
        await pool.close()
