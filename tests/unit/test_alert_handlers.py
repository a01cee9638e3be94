"""Acknowledging and resolving alerts through the handlers, on the in-memory unit of work."""

from __future__ import annotations

import pytest

from correction_monitor.domain.access import Role
from correction_monitor.domain.alerts import AlertStatus, Disposition
from correction_monitor.domain.events import EventName
from correction_monitor.service.alerts import AcknowledgeAlert, ResolveAlert
from correction_monitor.service.errors import Conflict, NotFound
from tests.fakes import FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


async def test_acknowledging_changes_an_open_alert_once(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    alert = uow.state.add_alert(subject)
    services = fake_services(uow)
    command = AcknowledgeAlert(actor=officer, alert_id=alert.id, request_id="r1")
    acked = await services.handle(command)
    assert acked.status is AlertStatus.ACKNOWLEDGED
    assert acked.acknowledged_by == officer.officer_id
    [event] = uow.emitted
    assert (event.name, event.alert_id, event.subject_id, event.org_unit_id) == (
        EventName.ALERT_ACKNOWLEDGED,
        alert.id,
        subject.id,
        station.id,
    )
    assert event.data == {"status": "acknowledged", "by": officer.officer_id}
    # Again: nothing changes and nothing is announced, but the answer is audited.
    again = await services.handle(command)
    assert again == acked
    assert len(uow.emitted) == 1
    assert [(e.action, e.subject_id, e.request_id, e.detail) for e in uow.audits] == [
        ("alert.acknowledge", subject.id, "r1", {"alert_id": alert.id, "changed": True}),
        ("alert.acknowledge", subject.id, "r1", {"alert_id": alert.id, "changed": False}),
    ]


async def test_resolving_records_the_disposition_and_acknowledges(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.SUPERVISOR, station)
    alert = uow.state.add_alert(uow.state.add_subject(station))
    services = fake_services(uow)
    resolved = await services.handle(
        ResolveAlert(
            actor=officer,
            alert_id=alert.id,
            disposition=Disposition.JUSTIFIED,
            note="请假外出",
            request_id="r2",
        )
    )
    assert resolved.status is AlertStatus.RESOLVED
    assert (resolved.disposition, resolved.note) == (Disposition.JUSTIFIED, "请假外出")
    assert resolved.acknowledged_by == resolved.resolved_by == officer.officer_id
    assert resolved.to_json()["disposition"] == "justified"
    [event] = uow.emitted
    assert event.name == EventName.ALERT_RESOLVED
    assert event.data["disposition"] == "justified"
    [entry] = uow.audits
    assert (entry.action, entry.detail) == (
        "alert.resolve",
        {"alert_id": alert.id, "disposition": "justified", "gravity": "minor"},
    )


@pytest.mark.parametrize("command_type", [AcknowledgeAlert, ResolveAlert])
async def test_a_resolved_alert_refuses_both_and_records_nothing(
    uow: FakeUnitOfWork, command_type: type[AcknowledgeAlert] | type[ResolveAlert]
) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    alert = uow.state.add_alert(uow.state.add_subject(station), status=AlertStatus.RESOLVED)
    services = fake_services(uow)
    command = (
        AcknowledgeAlert(actor=officer, alert_id=alert.id)
        if command_type is AcknowledgeAlert
        else ResolveAlert(actor=officer, alert_id=alert.id, disposition=Disposition.CONFIRMED)
    )
    with pytest.raises(Conflict) as refused:
        await services.handle(command)
    assert refused.value.code == "alert_resolved"
    assert (uow.emitted, uow.audits, uow.state.alerts[alert.id]) == ([], [], alert)


async def test_another_stations_alert_is_not_found(uow: FakeUnitOfWork) -> None:
    station, other = uow.state.add_unit("station"), uow.state.add_unit("other")
    officer = uow.state.add_officer(Role.OFFICER, station)
    theirs = uow.state.add_alert(uow.state.add_subject(other))
    services = fake_services(uow)
    for alert_id in (theirs.id, 9999):
        with pytest.raises(NotFound) as missing:
            await services.handle(AcknowledgeAlert(actor=officer, alert_id=alert_id))
        assert missing.value.message == f"alert {alert_id} not found"
        with pytest.raises(NotFound):
            await services.handle(
                ResolveAlert(actor=officer, alert_id=alert_id, disposition=Disposition.CONFIRMED)
            )
    assert uow.state.alerts[theirs.id].status is AlertStatus.OPEN
    assert (uow.emitted, uow.audits) == ([], [])
