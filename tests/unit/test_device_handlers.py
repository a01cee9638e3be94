"""Enrolling and revoking a subject's phone through the handlers, on the in-memory unit of
work."""

from __future__ import annotations

import pytest

from correction_monitor.domain.access import Role
from correction_monitor.domain.events import EventName
from correction_monitor.service.auth import token_hash
from correction_monitor.service.devices import EnrolDevice, ListDevices, RevokeDevice
from correction_monitor.service.errors import NotFound, TryAgain
from tests.fakes import FakeUnitOfWork, fake_services, fixed_credentials

pytestmark = pytest.mark.unit


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


async def test_enrolment_keeps_only_the_tokens_digest_and_is_announced(
    uow: FakeUnitOfWork,
) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    services = fake_services(uow, device_credentials=fixed_credentials(("secret", "1234567890")))
    enrolled = await services.handle(
        EnrolDevice(actor=officer, subject_id=subject.id, platform="android", request_id="r")
    )
    device = enrolled.device
    assert (enrolled.token, device.osmand_id, device.platform) == (
        "secret",
        "1234567890",
        "android",
    )
    assert uow.state.device_digests[device.id] == token_hash("secret")
    [entry] = uow.audits
    assert (entry.action, entry.subject_id, entry.detail) == (
        "device.enrol",
        subject.id,
        {"device_id": device.id, "platform": "android"},
    )
    [event] = uow.emitted
    assert (event.name, event.org_unit_id, event.subject_id) == (
        EventName.DEVICE_ENROLLED,
        station.id,
        subject.id,
    )
    # Events may reach webhooks: they never carry a credential.
    assert "secret" not in repr(event)
    assert "1234567890" not in repr(event)


async def test_colliding_identifiers_are_drawn_again(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    drawn = [("a", "1000000001"), ("a", "1000000002"), ("b", "1000000001"), ("c", "1000000003")]
    services = fake_services(uow, device_credentials=fixed_credentials(*drawn))
    first = await services.handle(EnrolDevice(actor=officer, subject_id=subject.id))
    second = await services.handle(EnrolDevice(actor=officer, subject_id=subject.id))
    assert (first.token, second.token) == ("a", "c")
    assert second.device.osmand_id == "1000000003"


async def test_enrolment_gives_up_after_five_collisions(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    services = fake_services(uow, device_credentials=fixed_credentials(*[("a", "1000000001")] * 6))
    await services.handle(EnrolDevice(actor=officer, subject_id=subject.id))
    with pytest.raises(TryAgain):
        await services.handle(EnrolDevice(actor=officer, subject_id=subject.id))
    assert len(uow.state.devices) == 1
    assert [e.name for e in uow.emitted] == [EventName.DEVICE_ENROLLED]


async def test_revocation_is_audited_announced_and_happens_once(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    services = fake_services(uow)
    device = (await services.handle(EnrolDevice(actor=officer, subject_id=subject.id))).device
    revoked = await services.handle(
        RevokeDevice(actor=officer, subject_id=subject.id, device_id=device.id)
    )
    assert revoked.revoked_at is not None
    assert [e.action for e in uow.audits] == ["device.enrol", "device.revoke"]
    assert [e.name for e in uow.emitted] == [EventName.DEVICE_ENROLLED, EventName.DEVICE_REVOKED]
    assert uow.emitted[-1].data == {"device_id": device.id}
    with pytest.raises(NotFound) as again:
        await services.handle(
            RevokeDevice(actor=officer, subject_id=subject.id, device_id=device.id)
        )
    assert again.value.message == f"device {device.id} not found"
    assert len(uow.emitted) == 2
    [listed] = await services.handle(ListDevices(actor=officer, subject_id=subject.id))
    assert listed == revoked


async def test_a_device_of_another_subject_is_not_found(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject, other = uow.state.add_subject(station), uow.state.add_subject(station)
    services = fake_services(uow)
    device = (await services.handle(EnrolDevice(actor=officer, subject_id=other.id))).device
    with pytest.raises(NotFound):
        await services.handle(
            RevokeDevice(actor=officer, subject_id=subject.id, device_id=device.id)
        )
    assert uow.state.devices[device.id].revoked_at is None


async def test_subjects_outside_the_jurisdiction_are_not_found(uow: FakeUnitOfWork) -> None:
    station, other_station = uow.state.add_unit("station"), uow.state.add_unit("other")
    officer = uow.state.add_officer(Role.OFFICER, station)
    theirs = uow.state.add_subject(other_station)
    services = fake_services(uow)
    for command in (
        EnrolDevice(actor=officer, subject_id=theirs.id),
        ListDevices(actor=officer, subject_id=theirs.id),
        RevokeDevice(actor=officer, subject_id=theirs.id, device_id=1),
    ):
        with pytest.raises(NotFound) as missing:
            await services.handle(command)
        assert missing.value.message == f"subject {theirs.id} not found"
    assert uow.state.devices == {}
    assert uow.audits == []
