"""Firing durable timers: each due timer's handler runs once, in the timer's transaction.

Every process runs :meth:`TimerService.fire_due` every second or so. Due timers are taken
with ``FOR UPDATE SKIP LOCKED``, so processes share the work and never take the same timer
twice at once. A batch of timers fires in one unit of work: the handlers' effects and the
timers' ``fired_at`` commit together, so a handler whose effects are in PostgreSQL runs
exactly once, whatever crashes (a crash before the commit leaves the timers due; after it,
they are fired and their effects stored). Handlers with effects outside PostgreSQL (sending
a message) run at least once and must be idempotent.

When a handler fails, the batch is rolled back and its timers are fired again one per unit
of work, so one bad timer cannot hold the others back; the one that fails is retried with
backoff (``domain.timers.retry_delay_s``) and its error kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import structlog

from correction_monitor.domain.clock import Clock
from correction_monitor.domain.timers import DueTimer, retry_delay_s
from correction_monitor.service.unit_of_work import UnitOfWork

log = structlog.get_logger("correction_monitor.timers")

TimerHandler = Callable[[DueTimer, UnitOfWork], Awaitable[None]]
"""Runs when a timer of its kind is due; works through the unit of work it is given."""


class TimerService:
    """Fires due timers through their kinds' handlers."""

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        handlers: Mapping[str, TimerHandler],
        clock: Clock,
        *,
        batch: int = 100,
    ) -> None:
        self._uow = uow
        self._handlers = dict(handlers)
        # Only kinds this release handles are taken: during a rolling upgrade an older
        # process leaves a newer kind's timers to the processes that know it.
        self._kinds = sorted(self._handlers)
        self._clock = clock
        self._batch = batch

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def fire_due(self, *, limit: int = 10_000) -> int:
        """Fire timers due by the clock's now until none is left (or ``limit`` fired);
        returns how many fired."""
        fired = 0
        if not self._kinds:
            return fired  # no kind handled here: nothing this process may take
        while fired < limit:
            try:
                count = await self._fire_batch(min(self._batch, limit - fired))
            except Exception:
                count = await self._fire_one_by_one(min(self._batch, limit - fired))
            if count == 0:
                return fired
            fired += count
        return fired

    async def _run(self, timer: DueTimer, uow: UnitOfWork) -> None:
        await self._handlers[timer.kind](timer, uow)

    async def _fire_batch(self, size: int) -> int:
        now = self._clock.now()
        async with self._uow() as uow:
            due = await uow.timers.take_due(now, size, self._kinds)
            for timer in due:
                await self._run(timer, uow)
                await uow.timers.mark_fired(timer.id, now)
        return len(due)

    async def _fire_one_by_one(self, size: int) -> int:
        """After a batch failed: each timer in a unit of work of its own; a failing one is
        rescheduled with its error. Returns how many were handled (fired or rescheduled)."""
        handled = 0
        while handled < size:
            now = self._clock.now()
            failed: tuple[DueTimer, Exception] | None = None
            try:
                async with self._uow() as uow:
                    due = await uow.timers.take_due(now, 1, self._kinds)
                    if not due:
                        return handled
                    timer = due[0]
                    try:
                        await self._run(timer, uow)
                    except Exception as exc:
                        failed = (timer, exc)
                        raise
                    await uow.timers.mark_fired(timer.id, now)
            except Exception as exc:
                if failed is None:
                    raise  # the unit of work itself failed: PostgreSQL is away; try later
                timer, error = failed
                retry_at = now + timedelta(seconds=retry_delay_s(timer.attempts + 1))
                log.warning(
                    "timer failed; retrying later",
                    kind=timer.kind,
                    key=timer.key,
                    attempts=timer.attempts + 1,
                    retry_at=retry_at.isoformat(),
                    error=repr(error),
                )
                async with self._uow() as uow:
                    await uow.timers.mark_failed(timer.id, repr(exc), retry_at)
            handled += 1
        return handled


TIMER_HANDLERS: dict[str, TimerHandler] = {}
"""The service's timer handlers by kind; each capability that sets timers registers its
handlers here (check-in windows, SLA deadlines, leave ends, notification retries)."""
