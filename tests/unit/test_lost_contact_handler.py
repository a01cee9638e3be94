"""The lost-contact sweep as a handler, on the in-memory unit of work."""

from __future__ import annotations

from datetime import timedelta

import pytest

from correction_monitor.domain.alerts import AlertType
from correction_monitor.domain.events import EventName
from correction_monitor.domain.models import SilentSubject
from correction_monitor.policy import load_policy
from correction_monitor.service.lost_contact import SweepLostContact
from tests.fakes import T0, FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


async def test_a_silence_beyond_the_level_opens_one_alert_with_its_clock_and_article() -> None:
    uow = FakeUnitOfWork()
    station = uow.state.add_unit("station")
    quiet, recent = uow.state.add_subject(station), uow.state.add_subject(station)
    threshold = load_policy().level("strict").lost_contact_after_s
    for subject, silent_s in ((quiet, threshold + 60), (recent, threshold - 60)):
        uow.state.contact[subject.id] = SilentSubject(
            subject.id, station.id, "strict", T0 - timedelta(seconds=silent_s), 3600.0
        )
    services = fake_services(uow)
    assert await services.handle(SweepLostContact(T0)) == 1
    [alert] = uow.state.alerts.values()
    assert (alert.subject_id, alert.type) == (quiet.id, AlertType.LOST_CONTACT)
    assert alert.evidence["lost_contact_clock_s"] == round(3600 + threshold + 60)
    assert alert.evidence["article"] == load_policy().lost_contact_article
    assert [e.name for e in uow.emitted] == [EventName.ALERT_OPENED]
    # The next sweep finds the silence recorded: nothing more.
    assert await services.handle(SweepLostContact(T0 + timedelta(minutes=1))) == 0
    assert len(uow.state.alerts) == 1
