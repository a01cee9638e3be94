"""Check-in deadlines: a window left unanswered is reminded before it closes, then becomes
missed and opens exactly one ``missed_checkin`` alert (on the list and the live feed); an
answered window opens none; racing sweeps never open one twice.

The app runs on a manual clock and the sweep job is run directly, as the scheduler would
run it. Windows are inserted with SQL (layout is not what is tested here), a few minutes
ahead of the real time, so the sweeps of this module touch nothing other tests left behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.clock import ManualClock
from correction_monitor.policy import load_policy
from correction_monitor.service.bootstrap import bootstrap
from correction_monitor.service.checkin_deadlines import DeadlineSweep, SweepCheckinDeadlines
from correction_monitor.service.unit_of_work import PostgresUnitOfWork
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import SERVICES
from tests.conftest import Officers, bearer
from tests.e2e.helpers import INSIDE, World, alerts_of, make_county, make_world, sql_row
from tests.e2e.test_alerts_feed import next_event, open_stream

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]


@dataclass
class Clocked:
    """An app on a manual clock, its client and officers."""

    client: Client
    clock: ManualClock
    officers: Officers

    async def sweep(self) -> DeadlineSweep:
        result: DeadlineSweep = await self.client.app[SERVICES].handle(
            SweepCheckinDeadlines(self.clock.now())
        )
        return result


@pytest.fixture(scope="module")
async def clocked(settings: Settings, database_url: str) -> AsyncIterator[Clocked]:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    app = init_app(settings, clock=clock)
    async with TestClient[Any, Any](TestServer(app)) as client:
        yield Clocked(client, clock, Officers(database_url, client))


async def add_window(
    client: Client,
    subject_id: int,
    opens_at: datetime,
    closes_at: datetime,
    kind: str = "scheduled",
    status: str = "pending",
) -> int:
    """A check-in row as layout (or a challenge) would store it; its id."""
    row = await sql_row(
        client,
        "INSERT INTO checkins (subject_id, org_unit_id, kind, opens_at, closes_at, status,"
        " answered_at)"
        " SELECT id, org_unit_id, $2::text, $3::timestamptz, $4::timestamptz, $5::text,"
        " CASE WHEN $5::text = 'pending' THEN NULL ELSE $3::timestamptz END"
        " FROM subjects WHERE id = $1"
        " RETURNING id",
        subject_id,
        kind,
        opens_at,
        closes_at,
        status,
    )
    window_id: int = row["id"]
    return window_id


async def status_of(client: Client, checkin_id: int) -> str:
    row = await sql_row(client, "SELECT status FROM checkins WHERE id = $1", checkin_id)
    status: str = row["status"]
    return status


async def my_messages(client: Client, world: World, since: int = 0) -> list[Any]:
    resp = await client.get(
        "/api/v1/me/messages", params={"since": str(since)}, headers=bearer(world.device_token)
    )
    assert resp.status == 200, await resp.text()
    messages: list[Any] = (await resp.json())["messages"]
    return messages


async def test_a_missed_window_is_reminded_then_alerted_once(clocked: Clocked) -> None:
    client, clock = clocked.client, clocked.clock
    world = await make_world(client, clocked.officers, level="strict")
    opens = clock.now() + timedelta(minutes=5)
    closes = opens + timedelta(hours=1)
    checkin_id = await add_window(client, world.subject_id, opens, closes)
    stream = await open_stream(client, world.admin_token)
    try:
        # Not yet: the strict level reminds 30 minutes before the close.
        clock.set(closes - timedelta(seconds=1801))
        await clocked.sweep()
        assert await my_messages(client, world) == []

        clock.set(closes - timedelta(seconds=1799))
        await clocked.sweep()
        await clocked.sweep()  # a repeat sends nothing more
        (reminder,) = await my_messages(client, world)
        assert reminder["kind"] == "reminder"
        assert reminder["data"] == {
            "checkin_id": checkin_id,
            "closes_at": closes.isoformat().replace("+00:00", "Z"),
        }
        local_close = closes.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M")
        assert local_close in reminder["text"]
        assert "截止" in reminder["text"]
        assert reminder["read_at"] is None
        reminded = await sql_row(
            client, "SELECT reminded_at FROM checkins WHERE id = $1", checkin_id
        )
        assert reminded["reminded_at"] == clock.now()

        # Still pending at the very moment of the close is not yet missed ... (closes_at is
        # the last instant an answer is on time).
        clock.set(closes - timedelta(seconds=1))
        await clocked.sweep()
        assert await status_of(client, checkin_id) == "pending"
        assert await alerts_of(client, world, type="missed_checkin") == []

        clock.set(closes + timedelta(seconds=3))
        await clocked.sweep()
        assert await status_of(client, checkin_id) == "missed"
        for _ in range(3):  # repeats, as every process's job does every few seconds
            again = await clocked.sweep()
            assert again.alerts == 0
        (alert,) = await alerts_of(client, world, type="missed_checkin")
        assert alert["status"] == "open"
        assert alert["severity"] == "high"  # strict
        evidence = alert["evidence"]
        assert evidence["checkin_id"] == checkin_id
        assert evidence["kind"] == "scheduled"
        assert evidence["opens_at"] == opens.isoformat().replace("+00:00", "Z")
        assert evidence["closes_at"] == closes.isoformat().replace("+00:00", "Z")
        assert evidence["supervision_level"] == "strict"
        assert evidence["policy"]["reminder_lead_s"] == [1800]
        assert evidence["reminded_at"] is not None
        assert alert["started_at"] == evidence["closes_at"]
        detected = datetime.fromisoformat(alert["detected_at"].replace("Z", "+00:00"))
        assert timedelta(0) <= detected - closes <= timedelta(seconds=60)
        reminder_at = datetime.fromisoformat(reminder["created_at"].replace("Z", "+00:00"))
        assert reminder_at < closes < detected

        # The officers' live feed told it, once.
        # (The stream is an administrator's, who sees every county: other tests' windows
        # closed by this moved clock may be told first; skip them.)
        while True:
            event = await next_event(stream)
            told = json.loads(event["data"])
            if told["evidence"].get("checkin_id") == checkin_id:
                break
            assert told["id"] != alert["id"]
        assert event["event"] == "opened"
        assert (told["id"], told["type"]) == (alert["id"], "missed_checkin")
        assert told["evidence"]["checkin_id"] == checkin_id
    finally:
        stream.close()
    events = await sql_row(
        client,
        "SELECT count(*) AS n FROM events WHERE alert_id = $1 AND name = 'alert.opened'",
        alert["id"],
    )
    assert events["n"] == 1
    # No reminder goes out for a window that is no longer pending.
    assert len(await my_messages(client, world)) == 1


async def test_answered_windows_open_no_alert(clocked: Clocked) -> None:
    client, clock = clocked.client, clocked.clock
    world = await make_world(client, clocked.officers, level="normal")
    start = clock.now() + timedelta(minutes=1)
    passed = await add_window(
        client, world.subject_id, start, start + timedelta(hours=1), status="passed"
    )
    # Answered late (after its close, before any sweep): failed with "late", never missed.
    late = await add_window(
        client,
        world.subject_id,
        start + timedelta(minutes=1),
        start + timedelta(minutes=30),
        status="failed",
    )
    clock.set(start + timedelta(hours=2))
    await clocked.sweep()
    assert await status_of(client, passed) == "passed"
    assert await status_of(client, late) == "failed"
    assert await alerts_of(client, world, type="missed_checkin") == []
    # Nor is an answered window reminded.
    assert await my_messages(client, world) == []


async def test_severity_and_reminder_lead_follow_the_level(clocked: Clocked) -> None:
    client, clock = clocked.client, clocked.clock
    county = await make_county(clocked.officers)
    normal = await make_world(client, clocked.officers, level="normal", in_county=county)
    lenient = await make_world(client, clocked.officers, level="lenient", in_county=county)
    opens = clock.now() + timedelta(minutes=1)
    closes = opens + timedelta(hours=3)
    normal_id = await add_window(client, normal.subject_id, opens, closes)
    lenient_id = await add_window(client, lenient.subject_id, opens, closes)

    clock.set(closes - timedelta(seconds=7000))  # inside lenient's two hours only
    await clocked.sweep()
    assert [m["data"]["checkin_id"] for m in await my_messages(client, lenient)] == [lenient_id]
    assert await my_messages(client, normal) == []

    clock.set(closes + timedelta(seconds=1))
    await clocked.sweep()
    (normal_alert,) = await alerts_of(client, normal, type="missed_checkin")
    (lenient_alert,) = await alerts_of(client, lenient, type="missed_checkin")
    assert normal_alert["severity"] == "normal"
    assert normal_alert["evidence"]["checkin_id"] == normal_id
    assert normal_alert["evidence"]["reminded_at"] is None  # the sweep skipped its moment
    assert lenient_alert["severity"] == "high"
    assert lenient_alert["evidence"]["policy"]["label"] == "宽管"


async def test_a_challenge_is_not_announced_before_it_opens(clocked: Clocked) -> None:
    client, clock = clocked.client, clocked.clock
    world = await make_world(client, clocked.officers, level="strict")
    opens = clock.now() + timedelta(minutes=10)
    # A 30-minute challenge: the 30-minute reminder would fall on its opening, before which
    # nobody may know of it, so it gets none.
    short = await add_window(
        client, world.subject_id, opens, opens + timedelta(minutes=30), "challenge"
    )
    # A 60-minute one (an officer's, answer within an hour) is reminded half-way.
    long_opens = opens + timedelta(seconds=1)
    long = await add_window(
        client, world.subject_id, long_opens, long_opens + timedelta(hours=1), "challenge"
    )
    clock.set(opens - timedelta(seconds=5))
    await clocked.sweep()
    clock.set(opens + timedelta(minutes=1))
    await clocked.sweep()
    assert await my_messages(client, world) == []
    clock.set(long_opens + timedelta(minutes=31))
    await clocked.sweep()
    (reminder,) = await my_messages(client, world)
    assert reminder["data"]["checkin_id"] == long
    assert "随机抽查" in reminder["text"]
    assert await status_of(client, short) == "missed"


async def test_racing_sweeps_on_separate_pools_open_one_alert_per_window(
    clocked: Clocked, database_url: str
) -> None:
    """Two processes (two pools, two services) sweep the same due windows at once, in small
    batches so their transactions interleave; every round, each window is missed once and
    has one alert and one ``alert.opened`` event."""
    client, clock = clocked.client, clocked.clock
    county = await make_county(clocked.officers)
    worlds = [
        await make_world(client, clocked.officers, level="strict", in_county=county)
        for _ in range(4)
    ]
    policy = load_policy()
    pools = [await create_pool(database_url, min_size=1, max_size=3) for _ in range(2)]
    try:
        sweepers = [
            bootstrap(partial(PostgresUnitOfWork, pool), policy=policy, clock=clock)
            for pool in pools
        ]
        for round_ in range(5):
            base = clock.now() + timedelta(minutes=1)
            ids = [
                await add_window(
                    client,
                    world.subject_id,
                    base + timedelta(seconds=n),
                    base + timedelta(minutes=10, seconds=n),
                )
                for world in worlds
                for n in range(30)
            ]
            clock.set(base + timedelta(minutes=20))
            results = await asyncio.gather(
                *(s.handle(SweepCheckinDeadlines(clock.now(), batch=7)) for s in sweepers)
            )
            # Every window either sweep closed opened its alert (windows other tests left
            # pending may be among them).
            assert sum(r.alerts for r in results) == sum(r.missed for r in results)
            assert sum(r.missed for r in results) >= len(ids), (round_, results)
            counts = await sql_row(
                client,
                "SELECT count(*) FILTER (WHERE c.status = 'missed') AS missed,"
                " (SELECT count(*) FROM alerts a WHERE a.type = 'missed_checkin'"
                "   AND a.episode_key = ANY(SELECT 'checkin:' || unnest($1::bigint[]))) AS alerts,"
                " (SELECT count(*) FROM events e JOIN alerts a ON a.id = e.alert_id"
                "   WHERE a.episode_key = ANY(SELECT 'checkin:' || unnest($1::bigint[]))"
                "   AND e.name = 'alert.opened') AS events"
                " FROM checkins c WHERE c.id = ANY($1::bigint[])",
                ids,
            )
            assert dict(counts) == {"missed": len(ids), "alerts": len(ids), "events": len(ids)}
    finally:
        for pool in pools:
            await pool.close()


async def test_the_sweep_skips_windows_an_answer_holds(clocked: Clocked, database_url: str) -> None:
    """An answer holding its window's row is not waited for: the sweep closes the others, and
    the held one is the next sweep's, unless the answer settled it."""
    client, clock = clocked.client, clocked.clock
    world = await make_world(client, clocked.officers, level="strict")
    opens = clock.now() + timedelta(minutes=1)
    held = await add_window(client, world.subject_id, opens, opens + timedelta(minutes=5))
    free = await add_window(
        client, world.subject_id, opens + timedelta(seconds=1), opens + timedelta(minutes=5)
    )
    clock.set(opens + timedelta(minutes=6))
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM checkins WHERE id = $1 FOR UPDATE", held)
            result = await asyncio.wait_for(clocked.sweep(), 10)
            assert result.missed == 1
            assert await status_of(client, free) == "missed"
            # The answer that held it lands late: failed, and it is no longer pending.
            await conn.execute(
                "UPDATE checkins SET status = 'failed', reasons = '{late}' WHERE id = $1", held
            )
    finally:
        await conn.close()
    await clocked.sweep()
    assert await status_of(client, held) == "failed"
    (alert,) = await alerts_of(client, world, type="missed_checkin")
    assert alert["evidence"]["checkin_id"] == free


async def answer(client: Client, world: World, checkin_id: int, ts: datetime) -> Any:
    """The app's answer to a check-in, from inside the activity area with a good face match."""
    resp = await client.post(
        f"/api/v1/me/checkins/{checkin_id}",
        json={
            "ts": ts.isoformat(),
            "lat": INSIDE[1],
            "lon": INSIDE[0],
            "accuracy_m": 10,
            "face": {"score": 0.97, "liveness": True},
        },
        headers=bearer(world.device_token),
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_through_the_app_an_answer_in_time_opens_nothing_and_a_late_one_no_second_alert(
    clocked: Clocked,
) -> None:
    client, clock = clocked.client, clocked.clock
    world = await make_world(client, clocked.officers, level="strict")
    opens = clock.now() + timedelta(minutes=1)
    on_time = await add_window(client, world.subject_id, opens, opens + timedelta(minutes=30))
    late = await add_window(
        client, world.subject_id, opens + timedelta(seconds=1), opens + timedelta(minutes=30)
    )
    clock.set(opens + timedelta(minutes=10))
    assert (await answer(client, world, on_time, clock.now()))["status"] == "passed"

    clock.set(opens + timedelta(minutes=31))
    await clocked.sweep()
    assert await status_of(client, on_time) == "passed"
    assert await status_of(client, late) == "missed"
    (alert,) = await alerts_of(client, world, type="missed_checkin")
    assert alert["evidence"]["checkin_id"] == late

    # The app answers the missed window after all: failed as late, and still one alert.
    clock.advance(60)
    answered = await answer(client, world, late, clock.now())
    assert answered["status"] == "failed"
    assert "late" in answered["reasons"]
    await clocked.sweep()
    assert [a["id"] for a in await alerts_of(client, world, type="missed_checkin")] == [alert["id"]]


async def test_each_of_several_leads_reminds_once(
    clocked: Clocked, database_url: str, tmp_path: Path
) -> None:
    """A province reminding twice (an hour and ten minutes ahead) sends two reminders, each
    once; a window whose first moment passed unswept gets only the later one."""
    client, clock = clocked.client, clocked.clock
    overlay = tmp_path / "province.toml"
    overlay.write_text("[levels.strict]\nreminder_lead_s = [600, 3600]\n", encoding="utf-8")
    world = await make_world(client, clocked.officers, level="strict")
    opens = clock.now() + timedelta(minutes=1)
    closes = opens + timedelta(hours=2)
    both = await add_window(client, world.subject_id, opens, closes)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        services = bootstrap(
            partial(PostgresUnitOfWork, pool), policy=load_policy(overlay), clock=clock
        )

        async def sweep() -> None:
            await services.handle(SweepCheckinDeadlines(clock.now()))

        clock.set(closes - timedelta(seconds=3599))
        await sweep()
        await sweep()
        # Laid out (or swept) only after its hour's moment.
        late = await add_window(client, world.subject_id, opens + timedelta(seconds=1), closes)
        clock.set(closes - timedelta(seconds=599))
        await sweep()
        await sweep()
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT dedupe_key FROM subject_messages WHERE subject_id = $1 ORDER BY id",
                world.subject_id,
            )
    finally:
        await pool.close()
    assert sorted(r["dedupe_key"] for r in rows) == sorted(
        [f"reminder:{both}:3600", f"reminder:{both}:600", f"reminder:{late}:600"]
    )
