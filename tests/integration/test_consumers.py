"""Consumers of the event log: commit order, exactly-once effects, cursors that survive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.events import DomainEvent, StoredEvent
from correction_monitor.service.consumers import Consumer, ConsumerRunner
from correction_monitor.service.unit_of_work import PostgresUnitOfWork, UnitOfWork
from tests.conftest import unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=6)
    yield pool
    await pool.close()


async def publish(pool: asyncpg.Pool, name: str, count: int, start: int = 0) -> None:
    """``count`` events named ``name``, one unit of work each, numbered from ``start``."""
    for n in range(start, start + count):
        uow = PostgresUnitOfWork(pool)
        async with uow:
            uow.emit(DomainEvent(name, None, data={"n": n}))


def echoing(into: str) -> Consumer:
    """A consumer whose effect is an event ``into`` naming the event it handled."""

    async def handle(event: StoredEvent, uow: UnitOfWork) -> None:
        uow.emit(DomainEvent(into, None, data={"n": event.data["n"], "source": event.id}))

    return Consumer(unique("consumer-"), handle, frozenset())


async def effects(pool: asyncpg.Pool, name: str) -> list[int]:
    rows = await pool.fetch("SELECT data FROM events WHERE name = $1 ORDER BY id", name)
    return [r["data"]["n"] for r in rows]


async def test_each_event_is_handled_once_in_commit_order_by_one_process_at_a_time(
    pool: asyncpg.Pool, database_url: str
) -> None:
    source, sink = unique("test.src-"), unique("test.sink-")
    await publish(pool, source, 150)
    base = echoing(sink)
    consumer = Consumer(base.name, base.handle, frozenset({source}))
    other = await create_pool(database_url, min_size=1, max_size=2)
    try:
        runners = [
            ConsumerRunner(lambda: PostgresUnitOfWork(pool), [consumer], batch=20),
            ConsumerRunner(lambda: PostgresUnitOfWork(other), [consumer], batch=20),
        ]
        await asyncio.gather(*(r.run(consumer) for r in runners))
        # Whatever the interleaving, running again finds nothing left to do.
        await asyncio.gather(*(r.run(consumer) for r in runners))
        await publish(pool, source, 5, start=150)
        assert await runners[1].run(consumer) == 5
    finally:
        await other.close()
    assert await effects(pool, sink) == list(range(155))


async def test_a_failing_handler_leaves_the_cursor_where_it_was(pool: asyncpg.Pool) -> None:
    source, sink = unique("test.src-"), unique("test.sink-")
    await publish(pool, source, 10)
    failures = {"left": 1}
    base = echoing(sink)

    async def flaky(event: StoredEvent, uow: UnitOfWork) -> None:
        await base.handle(event, uow)
        if event.data["n"] == 6 and failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("the receiver is away")

    consumer = Consumer(base.name, flaky, frozenset({source}))
    runner = ConsumerRunner(lambda: PostgresUnitOfWork(pool), [consumer], batch=4)
    await runner.run_all()  # the first batch commits, the second fails and is undone
    assert await effects(pool, sink) == [0, 1, 2, 3]
    assert await runner.run_all() == 6
    assert await effects(pool, sink) == list(range(10))


async def test_the_cursor_passes_events_the_consumer_does_not_want(pool: asyncpg.Pool) -> None:
    wanted, unwanted, sink = unique("test.a-"), unique("test.b-"), unique("test.sink-")
    base = echoing(sink)
    consumer = Consumer(base.name, base.handle, frozenset({wanted}))
    runner = ConsumerRunner(lambda: PostgresUnitOfWork(pool), [consumer])
    await publish(pool, unwanted, 3)
    assert await runner.run(consumer) == 0
    position = await pool.fetchval(
        "SELECT position FROM event_cursors WHERE consumer = $1", consumer.name
    )
    assert position == await pool.fetchval("SELECT max(id) FROM events")
    await publish(pool, wanted, 2)
    assert await runner.run(consumer) == 2
    assert await effects(pool, sink) == [0, 1]
