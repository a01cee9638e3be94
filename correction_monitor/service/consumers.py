"""Consumers of the event log: each reads the events in commit order from its own cursor.

A consumer (tasks opened from alerts, notifications to send, ...) names the events it wants
and handles them one by one in a unit of work; the cursor advances in that same unit of
work. So a consumer whose effects are in PostgreSQL applies each event exactly once, and one
with effects outside (a webhook) at least once, never skipping one: it must be idempotent,
for instance by keying its effect on the event's id.

Any process may run any consumer: the cursor row is taken ``FOR UPDATE SKIP LOCKED``, so one
process at a time advances a consumer and the others skip it until it is free.

The live feed is not a consumer: every reader of the feed sees every event, with the
position kept by the reader itself (``Last-Event-ID``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from correction_monitor.domain.events import StoredEvent
from correction_monitor.service.unit_of_work import UnitOfWork

log = structlog.get_logger("correction_monitor.consumers")

EventHandler = Callable[[StoredEvent, UnitOfWork], Awaitable[None]]
BatchHandler = Callable[[Sequence[StoredEvent], UnitOfWork], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Consumer:
    """A named reader of the event log: ``handle`` runs for each event named in
    ``events`` (every event when empty), in commit order."""

    name: str
    handle: EventHandler
    events: frozenset[str] = frozenset()
    # Optional: handles a whole batch at once (one statement for many events) instead of
    # ``handle`` per event, in the same unit of work.
    handle_batch: BatchHandler | None = None


class ConsumerRunner:
    """Advances consumers through the log, one batch per unit of work."""

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        consumers: Sequence[Consumer],
        *,
        batch: int = 200,
    ) -> None:
        self._uow = uow
        self.consumers = tuple(consumers)
        self._batch = batch

    async def run(self, consumer: Consumer, *, limit: int = 10_000) -> int:
        """Handle the consumer's pending events (up to ``limit``); returns how many. Zero
        when another process is advancing this consumer right now."""
        handled = 0
        while handled < limit:
            async with self._uow() as uow:
                position = await uow.events.take_cursor(consumer.name)
                if position is None:
                    return handled
                newest = await uow.events.last_id()
                batch = await uow.events.read_after(
                    position, names=sorted(consumer.events), limit=self._batch
                )
                if consumer.handle_batch is not None:
                    await consumer.handle_batch(batch, uow)
                else:
                    for event in batch:
                        await consumer.handle(event, uow)
                if len(batch) == self._batch:
                    reached = batch[-1].id
                else:
                    # Ids are drawn in commit order (adapters/outbox.py): every event up to
                    # the newest visible one has committed or never will, so the cursor may
                    # pass the ones this consumer does not want.
                    reached = max(newest, batch[-1].id if batch else position)
                if reached > position:
                    await uow.events.advance_cursor(consumer.name, reached)
            handled += len(batch)
            if len(batch) < self._batch:
                return handled
        return handled

    async def run_all(self) -> int:
        """Run every consumer once over what is pending; a failing consumer is logged and
        retried at the next run, without holding the others back."""
        total = 0
        for consumer in self.consumers:
            try:
                total += await self.run(consumer)
            except Exception:
                log.exception(
                    "event consumer failed; retrying at the next run", consumer=consumer.name
                )
        return total


CONSUMERS: list[Consumer] = []
"""The service's consumers of the event log; each capability that reacts to events
registers its consumer here (tasks from alerts, notifications)."""
