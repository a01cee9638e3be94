"""Durable timers against the real database: set with the change, fired once, retried.

Each test uses timer kinds of its own, so tests sharing the run's database never fire each
other's timers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from correction_monitor.adapters import timers as timer_store
from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.events import DomainEvent
from correction_monitor.domain.timers import DueTimer, Timer
from correction_monitor.service.jobs import purge_fired_timers
from correction_monitor.service.timers import TimerHandler, TimerService
from correction_monitor.service.unit_of_work import PostgresUnitOfWork, UnitOfWork
from tests.conftest import unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=6)
    yield pool
    await pool.close()


def recording(kind: str) -> TimerHandler:
    """A handler whose effect is an event in the log, named after the timer's kind."""

    async def handle(timer: DueTimer, uow: UnitOfWork) -> None:
        uow.emit(DomainEvent(f"test.{kind}", None, data={"key": timer.key}))

    return handle


async def stored(pool: asyncpg.Pool, kind: str, key: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await timer_store.get(conn, kind, key)
    assert row is not None, f"no timer {kind}/{key}"
    return row


async def fired_keys(pool: asyncpg.Pool, kind: str) -> Counter[str]:
    rows = await pool.fetch(
        "SELECT data->>'key' AS key FROM events WHERE name = $1", f"test.{kind}"
    )
    return Counter(r["key"] for r in rows)


async def set_timers(pool: asyncpg.Pool, timers: list[Timer], *, fail: bool = False) -> None:
    uow = PostgresUnitOfWork(pool)
    async with uow:
        for timer in timers:
            uow.schedule(timer)
        if fail:
            raise RuntimeError("the change failed")


async def test_a_timer_exists_only_when_its_change_commits(pool: asyncpg.Pool) -> None:
    kind = unique("k")
    with pytest.raises(RuntimeError):
        await set_timers(pool, [Timer(kind, "rolled-back", T0)], fail=True)
    await set_timers(pool, [Timer(kind, "kept", T0)])
    async with pool.acquire() as conn:
        assert await timer_store.get(conn, kind, "rolled-back") is None
    assert (await stored(pool, kind, "kept"))["due_at"] == T0


async def test_fires_once_when_the_clock_reaches_it_even_after_a_restart(
    pool: asyncpg.Pool, database_url: str
) -> None:
    kind = unique("k")
    clock = ManualClock(T0)
    await set_timers(pool, [Timer(kind, "window-1", T0 + timedelta(minutes=30))])
    service = TimerService(lambda: PostgresUnitOfWork(pool), {kind: recording(kind)}, clock)
    assert await service.fire_due() == 0
    clock.advance(30 * 60 - 1)
    assert await service.fire_due() == 0
    clock.advance(1)
    assert await service.fire_due() == 1
    assert await fired_keys(pool, kind) == Counter({"window-1": 1})
    # Another process (another pool), or this one after a restart: nothing fires again.
    other_pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        restarted = TimerService(
            lambda: PostgresUnitOfWork(other_pool), {kind: recording(kind)}, clock
        )
        clock.advance(3600)
        assert await restarted.fire_due() == 0
    finally:
        await other_pool.close()
    assert await fired_keys(pool, kind) == Counter({"window-1": 1})


async def test_setting_a_timer_again_moves_its_deadline(pool: asyncpg.Pool) -> None:
    kind = unique("k")
    clock = ManualClock(T0)
    await set_timers(pool, [Timer(kind, "sla", T0 + timedelta(minutes=15))])
    await set_timers(pool, [Timer(kind, "sla", T0 + timedelta(minutes=45))])
    service = TimerService(lambda: PostgresUnitOfWork(pool), {kind: recording(kind)}, clock)
    clock.advance(20 * 60)
    assert await service.fire_due() == 0
    clock.advance(30 * 60)
    assert await service.fire_due() == 1


async def test_processes_firing_side_by_side_fire_each_timer_once(
    pool: asyncpg.Pool, database_url: str
) -> None:
    kind = unique("k")
    clock = ManualClock(T0)
    keys = [f"checkin-{n}" for n in range(300)]
    await set_timers(
        pool, [Timer(kind, key, T0 + timedelta(seconds=n)) for n, key in enumerate(keys)]
    )
    clock.advance(3600)
    pools = [await create_pool(database_url, min_size=1, max_size=2) for _ in range(3)]
    try:
        services = [
            TimerService(
                (lambda p=p: PostgresUnitOfWork(p)),  # type: ignore[misc]
                {kind: recording(kind)},
                clock,
                batch=20,
            )
            for p in pools
        ]
        counts = await asyncio.gather(*(s.fire_due() for s in services))
    finally:
        for p in pools:
            await p.close()
    assert sum(counts) == len(keys)
    assert await fired_keys(pool, kind) == Counter({key: 1 for key in keys})


async def test_a_failing_handler_is_retried_later_and_holds_no_other_timer_back(
    pool: asyncpg.Pool,
) -> None:
    kind = unique("k")
    clock = ManualClock(T0)
    calls = Counter[str]()

    async def flaky(timer: DueTimer, uow: UnitOfWork) -> None:
        calls[timer.key] += 1
        if timer.key == "bad" and calls["bad"] < 3:
            raise ConnectionError("the receiver is down")
        await recording(kind)(timer, uow)

    await set_timers(pool, [Timer(kind, key, T0) for key in ("a", "bad", "b")])
    service = TimerService(lambda: PostgresUnitOfWork(pool), {kind: flaky}, clock)
    assert await service.fire_due() == 3  # a and b fired, bad rescheduled
    assert await fired_keys(pool, kind) == Counter({"a": 1, "b": 1})
    bad = await stored(pool, kind, "bad")
    assert bad["fired_at"] is None
    assert bad["attempts"] == 1
    assert "receiver is down" in bad["last_error"]
    assert bad["due_at"] == T0 + timedelta(seconds=5)
    clock.advance(5)
    await service.fire_due()  # fails again: next try 10 s later
    clock.advance(10)
    await service.fire_due()
    assert await fired_keys(pool, kind) == Counter({"a": 1, "b": 1, "bad": 1})


async def test_a_process_dying_mid_handler_leaves_the_timer_due(pool: asyncpg.Pool) -> None:
    kind = unique("k")
    clock = ManualClock(T0)
    started = asyncio.Event()

    async def hangs(timer: DueTimer, uow: UnitOfWork) -> None:
        uow.emit(DomainEvent(f"test.{kind}", None, data={"key": timer.key}))
        started.set()
        await asyncio.sleep(3600)

    await set_timers(pool, [Timer(kind, "deadline", T0)])
    dying = TimerService(lambda: PostgresUnitOfWork(pool), {kind: hangs}, clock)
    task = asyncio.create_task(dying.fire_due())
    await started.wait()
    task.cancel()  # what a killed process leaves: a transaction that never commits
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await fired_keys(pool, kind) == Counter()
    survivor = TimerService(lambda: PostgresUnitOfWork(pool), {kind: recording(kind)}, clock)
    assert await survivor.fire_due() == 1
    assert await fired_keys(pool, kind) == Counter({"deadline": 1})


async def test_a_kind_without_handler_waits_for_a_release_that_knows_it(
    pool: asyncpg.Pool,
) -> None:
    kind = unique("k")
    clock = ManualClock(T0)
    await set_timers(pool, [Timer(kind, "future-kind", T0)])
    older = TimerService(
        lambda: PostgresUnitOfWork(pool), {unique("other"): recording(kind)}, clock
    )
    assert await older.fire_due() == 0
    row = await stored(pool, kind, "future-kind")
    assert row["fired_at"] is None
    assert row["attempts"] == 0
    newer = TimerService(lambda: PostgresUnitOfWork(pool), {kind: recording(kind)}, clock)
    assert await newer.fire_due() == 1


async def test_fired_timers_are_forgotten_after_a_week_and_due_ones_never(
    pool: asyncpg.Pool,
) -> None:
    kind = unique("k")
    clock = ManualClock(T0)
    await set_timers(
        pool, [Timer(kind, "fired", T0), Timer(kind, "pending", T0 + timedelta(days=30))]
    )
    service = TimerService(lambda: PostgresUnitOfWork(pool), {kind: recording(kind)}, clock)
    assert await service.fire_due() == 1
    assert await purge_fired_timers(pool, T0 + timedelta(days=6)) == 0
    await purge_fired_timers(pool, T0 + timedelta(days=8))
    async with pool.acquire() as conn:
        assert await timer_store.get(conn, kind, "fired") is None
    assert (await stored(pool, kind, "pending"))["fired_at"] is None
