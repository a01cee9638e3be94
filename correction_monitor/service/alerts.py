"""What officers do with an alert: acknowledge it (签收) and resolve it (处置) with a
disposition. The evidence side of an alert (opened, ended, retracted) belongs to evaluation;
the allowed changes of both are in ``domain/alerts.py``.

Each change is audited and, when it changed the alert, told as an ``alert.acknowledged`` or
``alert.resolved`` event in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from correction_monitor.adapters import errors as stored
from correction_monitor.domain import alerts as lifecycle
from correction_monitor.domain.access import Principal
from correction_monitor.domain.alerts import AlertChange, Disposition, TransitionRefused
from correction_monitor.domain.events import alert_event
from correction_monitor.domain.models import Alert
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Conflict, NotFound
from correction_monitor.service.unit_of_work import UnitOfWork


async def _visible_alert(uow: UnitOfWork, who: Principal, alert_id: int) -> Alert:
    try:
        alert = await uow.alerts.get(alert_id)
    except stored.NotFound as exc:
        raise NotFound(f"alert {alert_id}") from exc
    if not who.sees(alert.org_unit_id):
        raise NotFound(f"alert {alert_id}")
    return alert


def _refused(alert_id: int, exc: TransitionRefused) -> Conflict:
    return Conflict(exc.code, f"alert {alert_id}: {exc}")


@dataclass(frozen=True, slots=True)
class AcknowledgeAlert(Command[Alert]):
    """Acknowledge an alert of the caller's jurisdiction. Acknowledging it again changes
    nothing and answers the alert as it is; a resolved alert is a conflict."""

    actor: Principal
    alert_id: int
    request_id: str | None = None


async def acknowledge_alert(command: AcknowledgeAlert, uow: UnitOfWork) -> Alert:
    who = command.actor
    async with uow:
        alert = await _visible_alert(uow, who, command.alert_id)
        try:
            wanted = lifecycle.acknowledge(alert.status)
        except TransitionRefused as exc:
            raise _refused(alert.id, exc) from exc
        # The update changes only an alert still open: another officer may have got there
        # first, and then this acknowledgement changes nothing.
        changed = wanted is not None and await uow.alerts.acknowledge(alert.id, who.officer_id)
        if changed:
            uow.emit(
                alert_event(
                    AlertChange.ACKNOWLEDGED,
                    alert.id,
                    alert.org_unit_id,
                    alert.subject_id,
                    {"status": lifecycle.AlertStatus.ACKNOWLEDGED.value, "by": who.officer_id},
                )
            )
        # Audited whether or not it changed anything: the officer answered the alert.
        uow.audit(
            officer_id=who.officer_id,
            action="alert.acknowledge",
            subject_id=alert.subject_id,
            request_id=command.request_id,
            detail={"alert_id": alert.id, "changed": changed},
        )
        return await uow.alerts.get(alert.id)


@dataclass(frozen=True, slots=True)
class ResolveAlert(Command[Alert]):
    """Close an alert of the caller's jurisdiction with a disposition (acknowledging it too
    when it was open); a resolved alert is a conflict."""

    actor: Principal
    alert_id: int
    disposition: Disposition
    note: str | None = None
    request_id: str | None = None


async def resolve_alert(command: ResolveAlert, uow: UnitOfWork) -> Alert:
    who = command.actor
    async with uow:
        alert = await _visible_alert(uow, who, command.alert_id)
        try:
            lifecycle.resolve(alert.status)
        except TransitionRefused as exc:
            raise _refused(alert.id, exc) from exc
        if not await uow.alerts.resolve(
            alert.id, who.officer_id, command.disposition, command.note
        ):
            # Resolved by someone else since it was read.
            refused = TransitionRefused("alert_resolved", "the alert is already resolved")
            raise _refused(alert.id, refused)
        uow.emit(
            alert_event(
                AlertChange.RESOLVED,
                alert.id,
                alert.org_unit_id,
                alert.subject_id,
                {
                    "status": lifecycle.AlertStatus.RESOLVED.value,
                    "by": who.officer_id,
                    "disposition": command.disposition.value,
                },
            )
        )
        uow.audit(
            officer_id=who.officer_id,
            action="alert.resolve",
            subject_id=alert.subject_id,
            request_id=command.request_id,
            detail={"alert_id": alert.id, "disposition": command.disposition.value},
        )
        return await uow.alerts.get(alert.id)
