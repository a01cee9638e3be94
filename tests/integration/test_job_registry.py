"""Scheduled jobs run with their declared guarantee, across processes and restarts.

"Processes" here are job runners on pools of their own against the run's database, as
``serve --workers N`` has; the clock is moved by the tests, never waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.clock import ManualClock
from correction_monitor.service.jobs import Job, JobRunner
from tests.conftest import unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC)


@pytest.fixture
async def pools(database_url: str) -> AsyncIterator[list[asyncpg.Pool]]:
    pools = [await create_pool(database_url, min_size=1, max_size=3) for _ in range(3)]
    yield pools
    for pool in pools:
        await pool.close()


class Counting:
    """A job body that counts its runs and can be held mid-run."""

    def __init__(self) -> None:
        self.runs = 0
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()


async def test_a_cluster_job_runs_once_per_slot_whatever_the_number_of_processes(
    pools: list[asyncpg.Pool],
) -> None:
    clock = ManualClock(T0)
    body = Counting()
    job = Job(unique("job-"), 60, body, once_across_processes=True)
    runners = [JobRunner(pool, clock) for pool in pools]
    ran = await asyncio.gather(*(r.run(job) for r in runners))
    assert sorted(ran) == [False, False, True]
    assert body.runs == 1
    clock.advance(30)  # the same minute: nobody runs it again
    assert not any([await r.run(job) for r in runners])
    clock.advance(30)  # the next minute's slot
    assert [await r.run(job) for r in runners].count(True) == 1
    assert body.runs == 2


async def test_a_restarted_process_does_not_run_a_claimed_slot_again(
    pools: list[asyncpg.Pool],
) -> None:
    clock = ManualClock(T0)
    body = Counting()
    job = Job(unique("job-"), 3600, body, once_across_processes=True)
    assert await JobRunner(pools[0], clock).run(job)
    restarted = JobRunner(pools[1], clock)  # a new process, same hour
    assert not await restarted.run(job)
    assert body.runs == 1
    async with pools[2].acquire() as conn:
        row = await conn.fetchrow("SELECT outcome, runs FROM job_runs WHERE name = $1", job.name)
    assert (row["outcome"], row["runs"]) == ("ok", 1)


async def test_a_slot_whose_process_died_mid_run_is_run_by_another(
    pools: list[asyncpg.Pool],
) -> None:
    clock = ManualClock(T0)
    body = Counting()
    body.hold = asyncio.Event()
    job = Job(unique("job-"), 60, body, once_across_processes=True)
    dying = asyncio.create_task(JobRunner(pools[0], clock).run(job))
    await body.started.wait()
    # While it runs, the others skip it (the job's lock is held).
    assert not await JobRunner(pools[1], clock).run(job)
    dying.cancel()  # the process dies: its claim never commits
    with pytest.raises(asyncio.CancelledError):
        await dying
    body.hold = None
    assert await JobRunner(pools[2], clock).run(job)
    assert body.runs == 2


async def test_a_failing_job_records_its_failure_and_the_next_slot_runs(
    pools: list[asyncpg.Pool],
) -> None:
    clock = ManualClock(T0)
    attempts = []

    async def fails_once() -> None:
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise RuntimeError("PostgreSQL said no")

    job = Job(unique("job-"), 60, fails_once, once_across_processes=True)
    runner = JobRunner(pools[0], clock)
    assert await runner.run(job)
    async with pools[0].acquire() as conn:
        outcome = await conn.fetchval("SELECT outcome FROM job_runs WHERE name = $1", job.name)
    assert outcome.startswith("failed: RuntimeError")
    clock.advance(60)
    assert await runner.run(job)
    assert len(attempts) == 2


async def test_a_per_process_job_runs_in_every_process(pools: list[asyncpg.Pool]) -> None:
    clock = ManualClock(T0)
    body = Counting()
    job = Job(unique("job-"), 5, body, once_across_processes=False)
    assert all(await asyncio.gather(*(JobRunner(p, clock).run(job) for p in pools)))
    assert body.runs == 3
