"""Enrolling a subject's phone and revoking it.

A device authenticates with a bearer token (kept only as its SHA-256 digest) or, for Traccar
Client, with a short numeric identifier typed on the phone (``osmand_id``). A new device's
identifiers are random; should one collide with an existing device's, others are drawn.

Enrolling a device while another unrevoked device of the subject is still being heard from
raises the ``new_device`` integrity signal (docs/integrity.md): two live phones is what a
phone left at home looks like. Whether to revoke the old device is the officer's decision,
so enrolment never revokes anything by itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal
from correction_monitor.domain.clock import Clock, SystemClock
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.integrity import Rule, active_others, device_fact, new_device_item
from correction_monitor.domain.models import Device
from correction_monitor.policy import IntegrityPolicy, load_policy
from correction_monitor.service.auth import new_token, token_hash
from correction_monitor.service.command import Command
from correction_monitor.service.errors import NotFound, TryAgain
from correction_monitor.service.integrity import raise_signal
from correction_monitor.service.jurisdiction import visible_subject
from correction_monitor.service.unit_of_work import UnitOfWork

ENROL_ATTEMPTS = 5

Credentials = Callable[[], tuple[str, str]]
"""Draws a new device's (bearer token, OsmAnd identifier)."""


def new_osmand_id() -> str:
    """Ten random digits, never starting with 0.

    Traccar Client's identifier field is typed on a phone: keep it short and numeric.

    >>> len(new_osmand_id()), new_osmand_id().isdigit()
    (10, True)
    """
    return str(secrets.randbelow(9 * 10**9) + 10**9)


def new_credentials() -> tuple[str, str]:
    """A fresh bearer token and OsmAnd identifier."""
    return new_token(), new_osmand_id()


@dataclass(frozen=True, slots=True)
class EnrolledDevice:
    """A device just enrolled, with its token: the only time the token is ever shown."""

    device: Device
    token: str


@dataclass(frozen=True, slots=True)
class EnrolDevice(Command[EnrolledDevice]):
    actor: Principal
    subject_id: int
    platform: str | None = None
    request_id: str | None = None


async def enrol_device(
    command: EnrolDevice,
    uow: UnitOfWork,
    *,
    credentials: Credentials = new_credentials,
    integrity: IntegrityPolicy | None = None,
    clock: Clock | None = None,
) -> EnrolledDevice:
    """Enrol a phone for the subject; TryAgain when no free identifiers were drawn.

    ``integrity`` is the policy's ``[integrity]`` section (the default file's when not
    given), ``clock`` what "still active" is measured against."""
    integrity = integrity or load_policy().integrity
    now = (clock or SystemClock()).now()
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        for _attempt in range(ENROL_ATTEMPTS):
            token, osmand_id = credentials()
            try:
                device = await uow.devices.add(
                    subject.id, token_hash(token), osmand_id, command.platform
                )
                break
            except stored.AlreadyExists:
                continue
        else:
            raise TryAgain("try_again", "could not allocate a device identifier; retry")
        await _signal_new_device(uow, device, subject.org_unit_id, integrity, now)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="device.enrol",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={"device_id": device.id, "platform": device.platform},
        )
        uow.emit(
            DomainEvent(
                EventName.DEVICE_ENROLLED,
                subject.org_unit_id,
                subject_id=subject.id,
                data={"device_id": device.id, "platform": device.platform},
            )
        )
    return EnrolledDevice(device, token)


async def _signal_new_device(
    uow: UnitOfWork, device: Device, org_unit_id: int, integrity: IntegrityPolicy, now: datetime
) -> None:
    """Raise ``new_device`` when another unrevoked device of the subject was heard from
    within the policy's overlap: the evidence names both (or all) devices, their platforms
    and when each was last heard from."""
    if not integrity.enabled(Rule.NEW_DEVICE):
        return
    heard = await uow.integrity.devices_heard(device.subject_id)
    others = [d for d in heard if d[0] != device.id]
    active = active_others(others, now, integrity.new_device_overlap_s)
    if not active:
        return
    item = new_device_item(
        now,
        "enrolment",
        device_fact(device.id, device.platform, None),
        [device_fact(*d) for d in active],
    )
    await raise_signal(
        uow,
        subject_id=device.subject_id,
        org_unit_id=org_unit_id,
        rule=Rule.NEW_DEVICE,
        at=now,
        item=item,
        policy=integrity,
    )


@dataclass(frozen=True, slots=True)
class ListDevices(Command[list[Device]]):
    """Every device ever enrolled for the subject, revoked ones included, by id."""

    actor: Principal
    subject_id: int


async def list_devices(command: ListDevices, uow: UnitOfWork) -> list[Device]:
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        return await uow.devices.list_for(subject.id)


@dataclass(frozen=True, slots=True)
class RevokeDevice(Command[Device]):
    """Revoke a device of the subject: it is refused from then on (every process learns
    of it within a few seconds, see ``service/device_identity.py``)."""

    actor: Principal
    subject_id: int
    device_id: int
    request_id: str | None = None


async def revoke_device(command: RevokeDevice, uow: UnitOfWork) -> Device:
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        try:
            device = await uow.devices.revoke(subject.id, command.device_id)
        except stored.NotFound as exc:
            raise NotFound(f"device {command.device_id}") from exc
        uow.audit(
            officer_id=command.actor.officer_id,
            action="device.revoke",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={"device_id": device.id},
        )
        uow.emit(
            DomainEvent(
                EventName.DEVICE_REVOKED,
                subject.org_unit_id,
                subject_id=subject.id,
                data={"device_id": device.id},
            )
        )
    return device
