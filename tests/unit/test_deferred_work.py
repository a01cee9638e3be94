"""Durable timers and event-log consumers on the in-memory unit of work, wired through the
composition root as the app wires them on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from correction_monitor.domain.access import Role
from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.events import DomainEvent, EventName, StoredEvent
from correction_monitor.domain.timers import DueTimer, Timer
from correction_monitor.service.alerts import AcknowledgeAlert
from correction_monitor.service.consumers import Consumer
from correction_monitor.service.unit_of_work import UnitOfWork
from tests.fakes import T0, FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


async def escalate(timer: DueTimer, uow: UnitOfWork) -> None:
    """What an SLA deadline does: announce that it passed (an event committed with it)."""
    uow.emit(DomainEvent("test.escalated", None, data={"task": timer.key}))


async def test_a_timer_fires_once_when_the_clock_passes_its_deadline() -> None:
    clock = ManualClock(T0)
    uow = FakeUnitOfWork(clock=clock)
    services = fake_services(uow, timer_handlers={"sla": escalate})
    async with uow:
        uow.schedule(Timer("sla", "task-7", T0 + timedelta(minutes=15), {"level": 1}))
    assert await services.timers.fire_due() == 0
    clock.advance(15 * 60)
    assert await services.timers.fire_due() == 1
    assert await services.timers.fire_due() == 0
    assert [(e.name, e.data) for e in uow.emitted] == [("test.escalated", {"task": "task-7"})]
    assert uow.state.timers[("sla", "task-7")].fired_at == clock.now()


async def test_a_failing_timer_is_retried_with_backoff_and_the_others_fire() -> None:
    clock = ManualClock(T0)
    uow = FakeUnitOfWork(clock=clock)

    async def flaky(timer: DueTimer, uow: UnitOfWork) -> None:
        if timer.key == "b" and timer.attempts < 2:
            raise TimeoutError("webhook did not answer")
        await escalate(timer, uow)

    services = fake_services(uow, timer_handlers={"sla": flaky})
    async with uow:
        for key in "abc":
            uow.schedule(Timer("sla", key, T0))
    await services.timers.fire_due()
    assert sorted(e.data["task"] for e in uow.emitted) == ["a", "c"]
    row = uow.state.timers[("sla", "b")]
    assert row.attempts == 1
    assert row.due_at == T0 + timedelta(seconds=5)
    assert row.last_error is not None
    assert "webhook" in row.last_error
    clock.advance(5)
    await services.timers.fire_due()
    assert uow.state.timers[("sla", "b")].due_at == T0 + timedelta(seconds=15)
    clock.advance(10)
    await services.timers.fire_due()
    assert sorted(e.data["task"] for e in uow.emitted) == ["a", "b", "c"]


async def test_a_consumer_sees_handlers_events_once_in_order() -> None:
    uow = FakeUnitOfWork()
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    first, second = uow.state.add_alert(subject), uow.state.add_alert(subject)
    seen: list[tuple[str, int | None]] = []

    async def note(event: StoredEvent, uow: UnitOfWork) -> None:
        seen.append((event.name, event.alert_id))

    consumer = Consumer("tasks", note, frozenset({EventName.ALERT_ACKNOWLEDGED}))
    services = fake_services(uow, consumers=[consumer])
    await services.handle(AcknowledgeAlert(actor=officer, alert_id=first.id))
    assert await services.consumers.run_all() == 1
    await services.handle(AcknowledgeAlert(actor=officer, alert_id=second.id))
    assert await services.consumers.run_all() == 1
    assert await services.consumers.run_all() == 0
    assert seen == [
        (EventName.ALERT_ACKNOWLEDGED, first.id),
        (EventName.ALERT_ACKNOWLEDGED, second.id),
    ]
    assert uow.state.cursors["tasks"] == max(uow.state.event_log)


async def test_a_consumer_that_fails_resumes_from_the_same_event() -> None:
    uow = FakeUnitOfWork()
    attempts: list[int] = []

    async def fails_first(event: StoredEvent, uow: UnitOfWork) -> None:
        attempts.append(event.id)
        if len(attempts) == 1:
            raise ConnectionError("receiver away")

    services = fake_services(uow, consumers=[Consumer("notify", fails_first)])
    async with uow:
        uow.emit(DomainEvent("test.happened", None))
    await services.consumers.run_all()  # fails, logged; the cursor stays
    assert uow.state.cursors.get("notify", 0) == 0
    assert await services.consumers.run_all() == 1
    assert attempts == [1, 1]
