"""A stream resuming from before the feed hub's buffer catches up from PostgreSQL with its own
reads, then follows the buffer: every event in its scope arrives once, in order, while new
events keep arriving during the hand-over."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.adapters import alerts, hot_state
from correction_monitor.service.feed import FeedEvent, FeedHub
from correction_monitor.web.keys import HOT_STATE, POOL
from tests.conftest import Officers
from tests.e2e.helpers import make_world, record_alert_event

pytestmark = pytest.mark.e2e

NEW_ALERT = """
INSERT INTO alerts (subject_id, org_unit_id, type, severity, episode_key, started_at)
SELECT id, org_unit_id, 'left_activity_area', 'high', $2, now() FROM subjects WHERE id = $1
RETURNING id, org_unit_id
"""
# A scope no event is in: org unit ids are positive.
NOBODY = frozenset({-1})


async def test_a_stream_older_than_the_buffer_catches_up_and_hands_over_exactly(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers)
    pool = client.app[POOL]
    async with pool.acquire() as conn:
        start = await alerts.last_event_id(conn)
        alert = await conn.fetchrow(NEW_ALERT, world.subject_id, "catch-up")
    scope = frozenset({alert["org_unit_id"]})

    recorded: list[int] = []

    async def record(count: int) -> None:
        for _ in range(count):
            async with pool.acquire() as conn, conn.transaction():
                recorded.append(
                    await record_alert_event(
                        conn, alert["id"], alert["org_unit_id"], "acknowledged"
                    )
                )
            await asyncio.sleep(0)

    # Events only PostgreSQL holds, then a hub whose buffer keeps four and whose reads
    # return three, so the stream needs pages of its own and the buffer moves on under it.
    await record(7)
    hub = FeedHub(pool, client.app[HOT_STATE], poll_s=0.05, buffer_size=4, page=3)
    await hub.start()
    # With no stream open the hub only follows the head; one open stream (seeing nothing
    # in its scope) makes it read and keep events.
    keeper = hub.subscribe(hub.head, NOBODY, b"keeper", time.time() + 60)
    await keeper.__aenter__()
    try:
        await record(6)
        for _ in range(200):
            if hub.head == recorded[-1]:
                break
            await asyncio.sleep(0.02)
        # The buffer holds the last four: the stream starts well before it.
        assert hub.floor == recorded[-5]

        delivered: list[FeedEvent] = []
        expires = time.time() + 60
        async with (
            hub.subscribe(start, scope, b"catching-up", expires) as sub,
            hub.subscribe(start, NOBODY, b"nobody", expires) as other,
        ):
            writer = asyncio.create_task(record(9))
            try:
                while len(delivered) < 7 + 6 + 9:
                    delivered += await sub.next(10.0)
            finally:
                await writer
            assert await other.next(0.3) == []
            # Nothing more was made, so nothing more comes.
            assert await sub.next(0.3) == []

            # A stream following live whose client falls behind by more than the buffer
            # holds reads what it missed from PostgreSQL, then follows the buffer again.
            behind = len(recorded)
            await record(6)
            for _ in range(200):
                if hub.head == recorded[-1]:
                    break
                await asyncio.sleep(0.02)
            assert sub.position < hub.floor
            writer = asyncio.create_task(record(3))
            try:
                while len(delivered) < behind + 6 + 3:
                    delivered += await sub.next(10.0)
            finally:
                await writer
            assert await sub.next(0.3) == []
    finally:
        await keeper.__aexit__(None, None, None)
        await hub.close()

    async with pool.acquire() as conn:
        truth = await alerts.events_after(conn, start, scope, 1000)
    assert [e.id for e in delivered] == [r["event_id"] for r in truth]
    assert len(truth) == 7 + 6 + 9 + 6 + 3
    assert {e.kind for e in delivered} == {"acknowledged"}
    assert {e.org_unit_id for e in delivered} == set(scope)


async def test_without_redis_the_hub_advances_by_polling(
    client: TestClient[Any, Any], officers: Officers, redis_prefix: str
) -> None:
    world = await make_world(client, officers)
    pool = client.app[POOL]
    async with pool.acquire() as conn:
        alert = await conn.fetchrow(NEW_ALERT, world.subject_id, "no-redis")
    # Nothing listens on port 1: every subscription attempt fails.
    down = hot_state.connect("redis://127.0.0.1:1/0", f"{redis_prefix}down:")
    hub = FeedHub(pool, down, poll_s=0.1)
    await hub.start()
    try:
        async with hub.subscribe(
            hub.head, frozenset({alert["org_unit_id"]}), b"no-redis", time.time() + 60
        ) as sub:
            async with pool.acquire() as conn, conn.transaction():
                event_id = await record_alert_event(
                    conn, alert["id"], alert["org_unit_id"], "acknowledged"
                )
            events = await sub.next(10.0)
        assert [e.id for e in events] == [event_id]
        assert down.failures > 0
    finally:
        await hub.close()
        await down.close()


async def test_with_no_stream_open_the_hub_keeps_no_events_and_a_late_stream_misses_none(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers)
    pool = client.app[POOL]
    async with pool.acquire() as conn:
        alert = await conn.fetchrow(NEW_ALERT, world.subject_id, "idle-hub")
    scope = frozenset({alert["org_unit_id"]})
    hub = FeedHub(pool, client.app[HOT_STATE], poll_s=0.05, buffer_size=100, page=3)
    await hub.start()
    start = hub.head
    recorded = []
    try:
        for _ in range(5):
            async with pool.acquire() as conn, conn.transaction():
                recorded.append(
                    await record_alert_event(
                        conn, alert["id"], alert["org_unit_id"], "acknowledged"
                    )
                )
        for _ in range(200):
            if hub.head == recorded[-1]:
                break
            await asyncio.sleep(0.02)
        assert hub.head == recorded[-1]
        assert hub.buffered_after(start, None) == ([], hub.head)  # nothing kept
        async with hub.subscribe(start, scope, b"late", time.time() + 60) as sub:
            delivered: list[FeedEvent] = []
            while len(delivered) < len(recorded):
                delivered += await sub.next(10.0)
        assert [e.id for e in delivered] == recorded
    finally:
        await hub.close()
