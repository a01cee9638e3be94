"""The live feed's per-process hub: one subscription, one reader, streams fanned out in memory.

Every open alert stream of a process follows the same sequence of alert events, so the
process follows it once. The hub holds the process's one Redis subscription (the wake-up
channel), reads new events from PostgreSQL once per wake-up (or every ``poll_s`` when Redis
is silent or down) for all streams together, and keeps the newest ``buffer_size`` of them in
memory. Each stream (:class:`Subscription`) takes from that buffer what its caller's scope
allows, as the hub read it when it happened. A stream that starts behind the hub (one resuming
from a Last-Event-ID) replays with its own paged reads from PostgreSQL, so each replayed event
carries the alert as it is now (a console reconnecting after an alert was acknowledged sees
it acknowledged), and then follows the buffer; so does a stream whose client read so slowly
that the buffer moved past it.

Both sources are the one ordered sequence of event ids (id order is commit order), and a
stream's position only moves past an id once every event up to it has been considered, so
nothing is skipped or doubled when a stream moves from its own reads to the buffer.

A stream also ends when the token that opened it stops being valid: at its expiry moment,
or when the hub, checking every stream's token in one query every ``token_check_s``, finds
it revoked (or its officer deactivated). A token revoked in this process ends its streams
at once (:meth:`FeedHub.token_revoked`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

import asyncpg
import orjson
import structlog

from correction_monitor.adapters import alerts, officers
from correction_monitor.adapters.hot_state import HotState

log = structlog.get_logger("correction_monitor.feed")

# What a failed read from PostgreSQL can raise: the server away, the pool exhausted.
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One alert event as streams send it: its id, kind, the alert's org unit (for scope
    filtering) and the alert as JSON, serialised once for every stream."""

    id: int
    kind: str
    org_unit_id: int
    data: bytes

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> FeedEvent:
        return cls(
            row["event_id"], row["kind"], row["org_unit_id"], orjson.dumps(alerts.to_json(row))
        )


class Ended(StrEnum):
    """Why a stream ended."""

    EXPIRED = "token_expired"
    REVOKED = "token_revoked"
    SHUTDOWN = "shutdown"


class StreamEnded(Exception):
    """Raised by :meth:`Subscription.next` once the stream must end."""

    def __init__(self, reason: Ended) -> None:
        super().__init__(reason.value)
        self.reason = reason


def _in_scope(scope: frozenset[int] | None, event: FeedEvent) -> bool:
    return scope is None or event.org_unit_id in scope


class Subscription:
    """One open stream's view of the feed: its position, scope and token.

    ``position`` is where the stream has considered every event up to (it may pass events
    outside the scope without sending them); ``expires_at`` is the token's expiry in epoch
    seconds. Events up to ``replay_until`` (the hub's head when the stream opened) are
    replayed from PostgreSQL.
    """

    def __init__(
        self,
        hub: FeedHub,
        position: int,
        scope: frozenset[int] | None,
        token_digest: bytes,
        expires_at: float,
    ) -> None:
        self.hub = hub
        self.position = position
        self.scope = scope
        self.token_digest = token_digest
        self.expires_at = expires_at
        self.ended: Ended | None = None
        self.wake = asyncio.Event()
        self.replay_until = hub.head

    def end(self, reason: Ended) -> None:
        if self.ended is None:
            self.ended = reason
        self.wake.set()

    async def next(self, timeout_s: float) -> list[FeedEvent]:
        """The next events in scope, oldest first, waiting up to ``timeout_s`` for some.

        Returns
        -------
        list of FeedEvent
            Empty when ``timeout_s`` passed without any (time for a keep-alive).

        Raises
        ------
        StreamEnded
            When the token expired or was revoked, or the hub is closing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            # Cleared before looking, so a change arriving while we look wakes the wait below.
            self.wake.clear()
            if self.ended is None and time.time() >= self.expires_at:
                self.ended = Ended.EXPIRED
            if self.ended is not None:
                raise StreamEnded(self.ended)
            wait_s = deadline - loop.time()
            try:
                events = await self._take()
            except DB_ERRORS as exc:
                log.warning("feed catch-up read failed; retrying", error=repr(exc))
                events = []
                wait_s = min(wait_s, self.hub.poll_s)
            if events:
                return events
            if deadline <= loop.time():
                return []
            wait_s = min(wait_s, self.expires_at - time.time())
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait_s)

    async def _take(self) -> list[FeedEvent]:
        hub = self.hub
        if self.position >= max(hub.floor, self.replay_until):
            events, self.position = hub.buffered_after(self.position, self.scope)
            return events
        # Replaying, or older than the buffer: a page of our own. Every event up to the hub's
        # head had committed before this read began, so a short page has seen all of them in
        # scope.
        head = hub.head
        async with hub.pool.acquire() as conn:
            rows = await alerts.events_after(conn, self.position, self.scope, hub.page)
        events = [FeedEvent.from_row(r) for r in rows]
        if events:
            self.position = events[-1].id
        if len(rows) < hub.page:
            self.position = max(self.position, head)
        return events


class FeedHub:
    """The process's one follower of the alert feed; see the module docstring.

    Parameters
    ----------
    pool
        The process's PostgreSQL pool (the hub holds a connection only while reading).
    hot
        The Redis hot state, for the wake-up subscription.
    poll_s
        How often to read when no wake-up comes (Redis silent or down).
    buffer_size
        How many recent events to keep for streams to take from.
    page
        The most events one read returns.
    token_check_s
        How often every stream's token is checked for revocation.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        hot: HotState,
        *,
        poll_s: float = 1.0,
        buffer_size: int = 1000,
        page: int = 500,
        token_check_s: float = 2.0,
    ) -> None:
        self.pool = pool
        self.hot = hot
        self.poll_s = poll_s
        self.buffer_size = buffer_size
        self.page = page
        self.token_check_s = token_check_s
        # The buffer holds the events with ids in (floor, head], oldest first.
        self.head = 0
        self.floor = 0
        self._ids: list[int] = []
        self._events: list[FeedEvent] = []
        self.subscriptions: set[Subscription] = set()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def start(self) -> None:
        """Start at the newest event and begin following."""
        async with self.pool.acquire() as conn:
            self.head = self.floor = await alerts.last_event_id(conn)
        self._tasks = [
            asyncio.create_task(self.hot.follow_feed(self._wakeup.set), name="feed-wakeups"),
            asyncio.create_task(self._follow(), name="feed-reader"),
            asyncio.create_task(self._watch_tokens(), name="feed-tokens"),
        ]

    def end_streams(self) -> None:
        """End every open stream and refuse new ones (the server is shutting down)."""
        self.closed = True
        for sub in list(self.subscriptions):
            sub.end(Ended.SHUTDOWN)

    async def close(self) -> None:
        """End the streams and stop following."""
        self.end_streams()
        for task in self._tasks:
            await _stop(task)
        self._tasks = []

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        after_id: int,
        scope: frozenset[int] | None,
        token_digest: bytes,
        expires_at: float,
    ) -> AsyncIterator[Subscription]:
        """A stream of the events after ``after_id`` within ``scope``, for as long as the
        block runs and the token (its digest and expiry, epoch seconds) stays valid."""
        sub = Subscription(self, after_id, scope, token_digest, expires_at)
        if self.closed:
            sub.end(Ended.SHUTDOWN)
        self.subscriptions.add(sub)
        try:
            yield sub
        finally:
            self.subscriptions.discard(sub)

    def token_revoked(self, token_digest: bytes) -> None:
        """End the streams opened with this token now (it was revoked in this process)."""
        for sub in list(self.subscriptions):
            if sub.token_digest == token_digest:
                sub.end(Ended.REVOKED)

    def buffered_after(
        self, position: int, scope: frozenset[int] | None
    ) -> tuple[list[FeedEvent], int]:
        """The buffered events after ``position`` within ``scope``, and the position reached
        (the head, or ``position`` itself when that is ahead of the head)."""
        start = bisect.bisect_right(self._ids, position)
        events = [e for e in self._events[start:] if _in_scope(scope, e)]
        return events, max(position, self.head)

    def _append(self, events: list[FeedEvent]) -> None:
        self._ids.extend(e.id for e in events)
        self._events.extend(events)
        self.head = events[-1].id
        excess = len(self._ids) - self.buffer_size
        if excess > 0:
            self.floor = self._ids[excess - 1]
            del self._ids[:excess]
            del self._events[:excess]
        for sub in self.subscriptions:
            sub.wake.set()

    async def _follow(self) -> None:
        failing = False
        while True:
            self._wakeup.clear()
            rows = []
            try:
                if self.subscriptions:
                    async with self.pool.acquire() as conn:
                        rows = await alerts.events_after(conn, self.head, None, self.page)
                    if rows:
                        self._append([FeedEvent.from_row(r) for r in rows])
                else:
                    await self._skip_ahead()
            except DB_ERRORS as exc:
                if not failing:
                    log.warning("feed read failed; retrying", error=repr(exc))
                failing = True
            except Exception:
                # Every stream of the process hangs on this loop: log, and carry on.
                log.exception("feed read failed; retrying")
                failing = True
            else:
                failing = False
                if len(rows) == self.page:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll_s)

    async def _skip_ahead(self) -> None:
        """With no stream open, only follow the head: reading and keeping events that nobody
        takes would cost a read per wake-up and the buffer's memory. A stream that opens
        later replays up to the head from PostgreSQL, as any stream behind the buffer does."""
        async with self.pool.acquire() as conn:
            head = await alerts.last_event_id(conn)
        if head > self.head:
            self.head = self.floor = head
            self._ids.clear()
            self._events.clear()

    async def _watch_tokens(self) -> None:
        while True:
            await asyncio.sleep(self.token_check_s)
            if not self.subscriptions:
                continue
            digests = list({sub.token_digest for sub in self.subscriptions})
            try:
                async with self.pool.acquire() as conn:
                    live = await officers.live_tokens(conn, digests)
            except DB_ERRORS as exc:
                log.warning("feed token check failed; retrying", error=repr(exc))
                continue
            except Exception:
                log.exception("feed token check failed; retrying")
                continue
            now = time.time()
            for sub in list(self.subscriptions):
                if sub.token_digest not in live:
                    expired = now >= sub.expires_at
                    sub.end(Ended.EXPIRED if expired else Ended.REVOKED)


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait until it has really finished.

    redis-py can swallow a cancellation that lands while it is connecting or subscribing
    (redis/redis-py#2028); the wake-up task then carries on into ``listen()`` and awaiting
    it would never return, leaving a Redis connection behind. So cancel again until it is
    done.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()
