"""The unit of work's contract, shown on the in-memory one, and the composition root."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from datetime import timedelta

import pytest

import correction_monitor.service
from correction_monitor.adapters import alerts as alert_rows
from correction_monitor.domain.access import Role
from correction_monitor.domain.alerts import AlertStatus, Disposition
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.timers import Timer
from correction_monitor.policy import load_policy
from correction_monitor.service.bootstrap import bootstrap
from correction_monitor.service.command import Command
from correction_monitor.service.org_units import ListOrgUnits
from tests.fakes import T0, FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


class Boom(Exception):
    pass


async def _work(uow: FakeUnitOfWork, *, fail: bool = False) -> None:
    """A change, two audit entries, a timer and two events, in one unit of work."""
    async with uow:
        unit = await uow.org_units.add("s", "station", None, "UTC")
        uow.audit(officer_id=None, action="a1", detail={"n": 1})
        uow.schedule(Timer("checkin.close", "1", T0, {"unit": unit.id}))
        uow.emit(DomainEvent(EventName.SUBJECT_CREATED, unit.id, subject_id=1))
        uow.emit(DomainEvent(EventName.SUBJECT_UPDATED, unit.id, subject_id=1))
        uow.audit(officer_id=None, action="a2")
        if fail:
            raise Boom


async def test_a_commit_keeps_changes_with_audits_timers_and_events_in_order() -> None:
    uow = FakeUnitOfWork()
    await _work(uow)
    [unit] = uow.state.org_units.values()
    assert [a.action for a in uow.audits] == ["a1", "a2"]
    assert uow.audits[0].detail == {"n": 1}
    assert [t.key for t in uow.scheduled] == ["1"]
    assert [e.name for e in uow.emitted] == [EventName.SUBJECT_CREATED, EventName.SUBJECT_UPDATED]
    assert (uow.commits, uow.rollbacks) == (1, 0)
    # What was committed is there for the next unit of work, as in the database.
    async with uow:
        logged = await uow.events.read_after(0)
        [due] = await uow.timers.take_due(T0, 10, ["checkin.close"])
    assert [(e.id, e.name, e.org_unit_id) for e in logged] == [
        (1, "subject.created", unit.id),
        (2, "subject.updated", unit.id),
    ]
    assert (due.key, due.payload) == ("1", {"unit": unit.id})


async def test_an_exception_undoes_changes_audits_timers_and_events() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(Boom):
        await _work(uow, fail=True)
    assert (uow.state.org_units, uow.audits, uow.scheduled, uow.emitted) == ({}, [], [], [])
    assert (uow.state.timers, uow.state.event_log) == ({}, {})
    assert (uow.commits, uow.rollbacks) == (0, 1)
    # What a failed block collected never leaks into the next one.
    async with uow:
        pass
    assert (uow.audits, uow.scheduled, uow.emitted) == ([], [], [])


async def test_a_unit_of_work_is_not_opened_twice_at_once() -> None:
    uow = FakeUnitOfWork()
    async with uow:
        with pytest.raises(RuntimeError):
            await uow.__aenter__()


def _command_types() -> set[type[Command[object]]]:
    found: set[type[Command[object]]] = set()
    for info in pkgutil.iter_modules(correction_monitor.service.__path__):
        module = importlib.import_module(f"correction_monitor.service.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Command) and value is not Command:
                found.add(value)
    return found


def test_every_command_has_its_handler_in_the_composition_root() -> None:
    services = fake_services(FakeUnitOfWork())
    assert _command_types() <= set(services.handlers)
    for command_type in services.handlers:
        assert dataclasses.is_dataclass(command_type)
        assert command_type.__dataclass_params__.frozen


def test_an_alert_renders_as_the_alert_rows_of_the_list_and_feed() -> None:
    uow = FakeUnitOfWork()
    station = uow.state.add_unit("s")
    alert = dataclasses.replace(
        uow.state.add_alert(uow.state.add_subject(station)),
        status=AlertStatus.RESOLVED,
        ended_at=T0 + timedelta(minutes=5),
        evidence={"distance_m": 812},
        acknowledged_at=T0,
        acknowledged_by=3,
        resolved_at=T0,
        resolved_by=3,
        disposition=Disposition.CONFIRMED,
        note="核实",
    )
    row = {f.name: getattr(alert, f.name) for f in dataclasses.fields(alert)}
    row |= {"type": alert.type.value, "status": "resolved", "disposition": "confirmed"}
    assert alert.to_json() == alert_rows.to_json(row)


async def test_the_root_runs_each_command_on_a_fresh_unit_of_work() -> None:
    state = FakeUnitOfWork().state
    admin = state.add_officer(Role.ADMIN, state.add_unit("hq"))
    made: list[FakeUnitOfWork] = []

    def factory() -> FakeUnitOfWork:
        made.append(FakeUnitOfWork(state))
        return made[-1]

    services = bootstrap(factory, policy=load_policy())
    for _ in range(2):
        [placed] = await services.handle(ListOrgUnits(actor=admin))
        assert placed.unit.code == "hq"
    assert len(made) == 2
    assert made[0] is not made[1]
