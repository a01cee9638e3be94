"""Group commit, the queueing side: requests wait while their fixes are committed in groups.

Requests hand their prepared batches to the process's ``GroupCommitter`` and wait. A commit
loop takes everything queued (up to ``max_group_fixes``), merges it (``ingest/merge.py``),
makes sure the days' partitions exist and commits it in one transaction
(``ingest/commit.py``). Only then are the requests answered: a 200 means the fixes are
durable. The commit's copies for Redis (latest positions, alert events) are handed to a
publisher task, off the commit path. A full queue refuses a request (``Overloaded``, 503
with Retry-After) rather than let latency grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from correction_monitor.adapters import eval_state, fix_store
from correction_monitor.adapters.hot_state import HotState
from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.domain.clock import Clock, SystemClock
from correction_monitor.ingest.batch import FixBatch
from correction_monitor.ingest.commit import Events, Positions, commit_group
from correction_monitor.ingest.merge import merge_group
from correction_monitor.ingest.profiles import ProfileCache
from correction_monitor.ingest.signals import LiveDevices
from correction_monitor.metrics import (
    COMMIT_BATCH_SIZE,
    COMMIT_SECONDS,
    FIXES_ACCEPTED,
    FIXES_DUPLICATE,
    INGEST_OVERLOAD,
    INGEST_QUEUE,
)

log = structlog.get_logger("correction_monitor.ingest")

MAX_PENDING_POSITIONS = 200_000
MAX_PENDING_EVENTS = 10_000


class CommitFailed(Exception):
    """The group holding this request could not be committed; nothing of it was stored."""


class Overloaded(Exception):
    """The commit queue is full; the client should retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("ingest queue is full")
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class IngestResult:
    """What a request's fixes came to: how many were stored, how many were repeats."""

    accepted: int
    duplicates: int


@dataclass(slots=True)
class QueuedBatch:
    """One request's prepared batch, waiting in the commit queue for its group's commit; the
    commit counts its fixes accepted and repeated, and answers through ``future``."""

    device: DeviceIdentity
    batch: FixBatch
    protocol: str
    future: asyncio.Future[IngestResult]
    accepted: int = 0
    duplicates: int = 0


def _closed(conn: asyncpg.Connection) -> bool:
    """Whether a lane's pooled connection is gone. When the server ends a session (a
    restart, a fast shutdown) the pool takes the connection back at once and detaches the
    lane's proxy, and then even ``is_closed()`` raises ``InterfaceError``: that means gone
    too, not an error that may end the lane and leave its queued requests unanswered."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


class GroupCommitter:
    """Persists and evaluates fixes in groups; one instance per process.

    ``lanes`` commit loops run side by side, each owning the subjects whose id falls in its
    lane, so one subject's fixes are always committed in arrival order by one loop. One
    lane is the default: a process's whole queue then forms each group, and bigger groups
    share the per-group round trips and work among more fixes (measured faster than two
    lanes overlapping their round trips, see docs/benchmarks.md).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        profiles: ProfileCache,
        hot_state: HotState,
        *,
        queue_limit: int,
        lanes: int = 1,
        max_group_fixes: int = 20_000,
        clock: Clock | None = None,
    ) -> None:
        self.pool = pool
        # Alerts raised by a commit are detected at this clock's now.
        self.clock = clock or SystemClock()
        self.profiles = profiles
        self.hot_state = hot_state
        self.queue_limit = queue_limit
        self.max_group_fixes = max_group_fixes
        self._queues: list[list[QueuedBatch]] = [[] for _ in range(lanes)]
        self._wakeups = [asyncio.Event() for _ in range(lanes)]
        self._queued_fixes = 0
        self._partitions = fix_store.Partitions()
        self._last_seen = eval_state.LastSeen()
        self._live_devices = LiveDevices()
        self._pending_positions: dict[int, dict[str, Any]] = {}
        self._pending_events: list[dict[str, Any]] = []
        self._publish_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def queued_fixes(self) -> int:
        return self._queued_fixes

    async def submit(self, device: DeviceIdentity, batch: FixBatch, protocol: str) -> IngestResult:
        """Queue a prepared batch and wait until it is committed (or raise ``Overloaded``)."""
        if len(batch) == 0:
            return IngestResult(0, 0)
        # An empty queue admits any batch, even one larger than the limit: refusing it would
        # have the phone retry, as Retry-After invites, a request that can never get in.
        if self._queued_fixes and self._queued_fixes + len(batch) > self.queue_limit:
            INGEST_OVERLOAD.inc()
            raise Overloaded()
        lane = device.subject_id % len(self._queues)
        job = QueuedBatch(device, batch, protocol, asyncio.get_running_loop().create_future())
        self._queues[lane].append(job)
        self._queued_fixes += len(batch)
        self._wakeups[lane].set()
        return await job.future

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._tasks = [
            asyncio.create_task(self._loop(lane), name=f"group-commit-{lane}")
            for lane in range(len(self._queues))
        ]
        self._tasks.append(asyncio.create_task(self._publisher(), name="hot-state-publisher"))
        try:
            yield
        finally:
            # redis-py and asyncpg wait with Python 3.11's asyncio.wait_for, which swallows a
            # cancellation landing just as the awaited operation completes; the task then
            # carries on and awaiting it once would never return (a stop that hangs). So
            # cancel again until every task has finished.
            pending = set(self._tasks)
            while pending:
                for task in pending:
                    task.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.5)
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self, lane: int) -> None:
        queue, wakeup = self._queues, self._wakeups[lane]
        conn: asyncpg.Connection | None = None
        try:
            while True:
                await wakeup.wait()
                wakeup.clear()
                while queue[lane]:
                    pending, taken, size = queue[lane], 0, 0
                    while taken < len(pending) and size < self.max_group_fixes:
                        size += len(pending[taken].batch)
                        taken += 1
                    group = pending[:taken]
                    del pending[:taken]
                    # Each lane keeps one connection: no pool round trip per commit.
                    if conn is None or _closed(conn):
                        if conn is not None:
                            await self._release(conn)
                        conn = await self._connect(group, size)
                        if conn is None:
                            continue
                    await self._commit_group(conn, group, size)
        finally:
            if conn is not None:
                await self._release(conn)

    async def _connect(self, group: list[QueuedBatch], size: int) -> asyncpg.Connection | None:
        """A connection for the lane, or None after failing the group's requests (503):
        whatever PostgreSQL or the network does, the lane itself must live on."""
        try:
            conn: asyncpg.Connection = await self.pool.acquire(timeout=10.0)
        except Exception as exc:  # any failure is answered (503); the lane survives
            log.warning("no database connection for a commit", error=repr(exc))
            self._fail(group, size, exc)
            await asyncio.sleep(0.5)  # do not spin while the database is away
            return None
        return conn

    async def _release(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    def _fail(self, group: list[QueuedBatch], size: int, exc: BaseException) -> None:
        self._queued_fixes -= size
        INGEST_QUEUE.set(self._queued_fixes)
        for job in group:
            if not job.future.done():
                job.future.set_exception(CommitFailed(repr(exc)))

    async def _commit_group(
        self, conn: asyncpg.Connection, group: list[QueuedBatch], size: int
    ) -> None:
        started = time.perf_counter()
        # The queue's gauge is set at each commit's start and end, not on every request.
        INGEST_QUEUE.set(self._queued_fixes)
        try:
            events, positions = await self._commit(conn, group)
        except Exception as exc:
            log.exception("group commit failed; requests answered with an error", fixes=size)
            for job in group:
                if not job.future.done():
                    job.future.set_exception(CommitFailed(repr(exc)))
            return
        finally:
            self._queued_fixes -= size
            INGEST_QUEUE.set(self._queued_fixes)
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        COMMIT_BATCH_SIZE.observe(size)
        # Counted once per group and protocol: a metric update costs as much as a small
        # request's share of the commit.
        accepted: dict[str, int] = defaultdict(int)
        duplicates = 0
        for job in group:
            accepted[job.protocol] += job.accepted
            duplicates += job.duplicates
            if not job.future.done():
                job.future.set_result(IngestResult(job.accepted, job.duplicates))
        for protocol, count in accepted.items():
            FIXES_ACCEPTED.labels(protocol).inc(count)
        if duplicates:
            FIXES_DUPLICATE.inc(duplicates)
        self._publish(events, positions)

    async def _commit(
        self, conn: asyncpg.Connection, group: list[QueuedBatch]
    ) -> tuple[Events, Positions]:
        """Merge the group, make sure the partitions of its days exist, and commit it."""
        for job in group:
            job.duplicates = job.batch.duplicates
        merged = merge_group(group)
        await self._partitions.ensure(conn, merged.fixes.values())
        return await commit_group(
            conn,
            merged,
            self.profiles,
            self._last_seen,
            self._live_devices,
            now=self.clock.now(),
        )

    def _publish(self, events: Events, positions: Positions) -> None:
        """Hand a commit's copies for Redis to the publisher task, off the commit path.

        Redis holds copies only: the feed replays events from PostgreSQL and the hot state
        is rebuilt from it, so when Redis lags or is down the backlog is bounded by dropping
        position updates (a newer one always follows) and never blocks a commit.
        """
        self._pending_positions.update(positions)
        self._pending_events.extend(events)
        if len(self._pending_positions) > MAX_PENDING_POSITIONS:
            self._pending_positions.clear()
        if len(self._pending_events) > MAX_PENDING_EVENTS:
            del self._pending_events[: len(self._pending_events) - MAX_PENDING_EVENTS]
        self._publish_wakeup.set()

    async def _publisher(self) -> None:
        while True:
            await self._publish_wakeup.wait()
            self._publish_wakeup.clear()
            positions, self._pending_positions = self._pending_positions, {}
            events, self._pending_events = self._pending_events, []
            await self.hot_state.publish_commit(positions, events)
