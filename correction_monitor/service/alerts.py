"""What officers do with alerts: read them, follow them, acknowledge one (签收) and resolve
it (处置) with a disposition. The evidence side of an alert (opened, ended, retracted) belongs
to evaluation; the allowed changes of both are in ``domain/alerts.py``.

An alert's evidence holds positions (its first and last fixes, the distance outside), so
every read of alerts is audited like a track read (RULES.md §4), in the transaction of the
read, with the caller's ``purpose``: a list as ``alert.list``, one alert as ``alert.read``,
the opening of the live feed as ``alert.stream`` (once, not per event it carries). Each
change is audited and, when it changed the alert, told as an ``alert.acknowledged`` or
``alert.resolved`` event in the same transaction.

Resolving records a gravity (情节: ``minor`` 轻微 by default, or ``serious`` 较重) with the
disposition; the legal ladder reads both. A supervisor, county administrator or
administrator may **reopen** a resolved alert within 30 days of its resolution, giving a
reason: it goes back to ``acknowledged`` (its acknowledgement stands), its resolution moves
into the evidence's ``resolution_history`` and the audit entry, and ``alert.reopened`` is
told with the resolution undone. A proposal that a confirmed resolution fed stays as it is
(pending or decided: officers decide proposals, a reopening does not withdraw one); resolving
the alert again as confirmed proposes nothing twice (proposals are keyed by their alert).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from correction_monitor.adapters import errors as stored
from correction_monitor.domain import alerts as lifecycle
from correction_monitor.domain.access import Principal, Role
from correction_monitor.domain.alerts import (
    AlertChange,
    AlertStatus,
    AlertType,
    Disposition,
    Gravity,
    TransitionRefused,
)
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import alert_event
from correction_monitor.domain.models import Alert
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Conflict, Forbidden, NotFound, Unauthenticated
from correction_monitor.service.unit_of_work import UnitOfWork

AUDIT_IDS_MAX = 200
"""An audit entry names at most this many alert ids and subject ids (it always has the
counts)."""


async def _visible_alert(uow: UnitOfWork, who: Principal, alert_id: int) -> Alert:
    try:
        alert = await uow.alerts.get(alert_id)
    except stored.NotFound as exc:
        raise NotFound(f"alert {alert_id}") from exc
    if not who.sees(alert.org_unit_id):
        raise NotFound(f"alert {alert_id}")
    return alert


@dataclass(frozen=True, slots=True)
class ListAlerts(Command[list[Alert]]):
    """The newest ``limit`` alerts of the caller's jurisdiction, narrowed to a subject, a
    type or a status when given. Retracted alerts are listed like the others (an alert
    officers could see is never hidden); ``include_retracted`` is kept in the audit entry as
    the caller asked it and changes nothing."""

    actor: Principal
    subject_id: int | None = None
    type: AlertType | None = None
    status: AlertStatus | None = None
    limit: int = 500
    include_retracted: bool = False
    purpose: str | None = None
    request_id: str | None = None


async def list_alerts(command: ListAlerts, uow: UnitOfWork) -> list[Alert]:
    who = command.actor
    async with uow:
        found = await uow.alerts.list_in(
            who.scope,
            subject_id=command.subject_id,
            type=command.type,
            status=command.status,
            limit=command.limit,
        )
        subject_ids = list(dict.fromkeys(a.subject_id for a in found))
        about = command.subject_id
        if about is None and len(subject_ids) == 1:
            # Only one subject's alerts were read: the entry is about that subject.
            about = subject_ids[0]
        uow.audit(
            officer_id=who.officer_id,
            action="alert.list",
            subject_id=about,
            purpose=command.purpose,
            request_id=command.request_id,
            detail={
                "filters": {
                    "subject_id": command.subject_id,
                    "type": command.type.value if command.type else None,
                    "status": command.status.value if command.status else None,
                    "limit": command.limit,
                    "include_retracted": command.include_retracted,
                },
                "alerts": len(found),
                "alert_ids": [a.id for a in found[:AUDIT_IDS_MAX]],
                "subjects": len(subject_ids),
                "subject_ids": subject_ids[:AUDIT_IDS_MAX],
            },
        )
    return found


@dataclass(frozen=True, slots=True)
class GetAlert(Command[Alert]):
    """One alert of the caller's jurisdiction (others' are not found)."""

    actor: Principal
    alert_id: int
    purpose: str | None = None
    request_id: str | None = None


async def get_alert(command: GetAlert, uow: UnitOfWork) -> Alert:
    async with uow:
        alert = await _visible_alert(uow, command.actor, command.alert_id)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="alert.read",
            subject_id=alert.subject_id,
            purpose=command.purpose,
            request_id=command.request_id,
            detail={"alert_id": alert.id},
        )
    return alert


@dataclass(frozen=True, slots=True)
class FeedStart:
    """Where a live feed of alert changes starts (the event-log position it follows) and
    when the token that opened it expires (the feed ends then)."""

    after_event_id: int
    token_expires_at: datetime


@dataclass(frozen=True, slots=True)
class OpenAlertFeed(Command[FeedStart]):
    """Open the live feed for the caller holding the token of ``token_digest``: after
    ``after_event_id`` when the client resumes (named by how it resumed, ``resumed_by``:
    its ``Last-Event-ID`` or a ``since``), else from the newest event on. A token revoked
    since the caller was authenticated is refused."""

    actor: Principal
    token_digest: bytes
    after_event_id: int | None = None
    resumed_by: str = "Last-Event-ID"
    purpose: str | None = None
    request_id: str | None = None


async def open_alert_feed(command: OpenAlertFeed, uow: UnitOfWork) -> FeedStart:
    async with uow:
        if command.after_event_id is None:
            after, start = await uow.events.last_id(), "now"
        else:
            after, start = command.after_event_id, command.resumed_by
        expires_at = await uow.officers.token_expires_at(command.token_digest)
        if expires_at is None:
            raise Unauthenticated("unauthorized", "the bearer token is unknown or has expired")
        uow.audit(
            officer_id=command.actor.officer_id,
            action="alert.stream",
            purpose=command.purpose,
            request_id=command.request_id,
            detail={"start": start, "after_event_id": after},
        )
    return FeedStart(after, expires_at)


def _refused(alert_id: int, exc: TransitionRefused) -> Conflict:
    return Conflict(exc.code, f"alert {alert_id}: {exc}")


@dataclass(frozen=True, slots=True)
class AcknowledgeAlert(Command[Alert]):
    """Acknowledge an alert of the caller's jurisdiction. Acknowledging it again changes
    nothing and answers the alert as it is; a resolved alert is a conflict."""

    actor: Principal
    alert_id: int
    request_id: str | None = None


async def acknowledge_alert(
    command: AcknowledgeAlert, uow: UnitOfWork, *, clock: Clock | None = None
) -> Alert:
    who = command.actor
    async with uow:
        alert = await _visible_alert(uow, who, command.alert_id)
        try:
            wanted = lifecycle.acknowledge(alert.status)
        except TransitionRefused as exc:
            raise _refused(alert.id, exc) from exc
        # The update changes only an alert still open: another officer may have got there
        # first, and then this acknowledgement changes nothing.
        changed = wanted is not None and await uow.alerts.acknowledge(
            alert.id, who.officer_id, clock.now() if clock else None
        )
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
    gravity: Gravity = Gravity.MINOR
    request_id: str | None = None


async def resolve_alert(
    command: ResolveAlert, uow: UnitOfWork, *, clock: Clock | None = None
) -> Alert:
    who = command.actor
    async with uow:
        alert = await _visible_alert(uow, who, command.alert_id)
        try:
            lifecycle.resolve(alert.status)
        except TransitionRefused as exc:
            raise _refused(alert.id, exc) from exc
        await record_resolution(
            uow,
            who,
            alert,
            command.disposition,
            command.gravity,
            command.note,
            request_id=command.request_id,
            at=clock.now() if clock else None,
        )
        return await uow.alerts.get(alert.id)


async def record_resolution(
    uow: UnitOfWork,
    who: Principal,
    alert: Alert,
    disposition: Disposition,
    gravity: Gravity,
    note: str | None,
    *,
    request_id: str | None,
    purpose: str | None = None,
    via: str | None = None,
    at: datetime | None = None,
) -> None:
    """Resolve ``alert`` (unresolved, read in this unit of work) for ``who``, with its
    ``alert.resolved`` event (which the ladder reads) and audit entry: an officer's
    resolution, or a finding that resolves it (``via`` names it, e.g. a patrol stop), at
    ``at`` (the service's clock)."""
    if not await uow.alerts.resolve(alert.id, who.officer_id, disposition, note, gravity, at):
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
                "disposition": disposition.value,
                "gravity": gravity.value,
                "type": alert.type.value,
                "incident_id": alert.incident_id,
            },
        )
    )
    detail: dict[str, Any] = {
        "alert_id": alert.id,
        "disposition": disposition.value,
        "gravity": gravity.value,
    }
    if via is not None:
        detail |= {"via": via, "note": note}
    uow.audit(
        officer_id=who.officer_id,
        action="alert.resolve",
        subject_id=alert.subject_id,
        request_id=request_id,
        purpose=purpose,
        detail=detail,
    )


REOPEN_ROLES = frozenset({Role.SUPERVISOR, Role.COUNTY_ADMIN, Role.ADMIN})
"""Who may reopen a resolved alert: a resolution is undone above the officer who made it."""


@dataclass(frozen=True, slots=True)
class ReopenAlert(Command[Alert]):
    """Reopen a resolved alert of the caller's jurisdiction (see the module docstring);
    ``reason`` is required and kept in the audit entry, the event and the history."""

    actor: Principal
    alert_id: int
    reason: str
    request_id: str | None = None


async def reopen_alert(command: ReopenAlert, uow: UnitOfWork, *, clock: Clock) -> Alert:
    who = command.actor
    if not who.may(REOPEN_ROLES):
        raise Forbidden("only a supervisor or an administrator may reopen an alert")
    now = clock.now()
    async with uow:
        await _visible_alert(uow, who, command.alert_id)
        await uow.alert_lifecycle.lock(command.alert_id)
        alert = await uow.alerts.get(command.alert_id)
        try:
            status = lifecycle.reopen(alert.status, alert.resolved_at, now)
        except TransitionRefused as exc:
            raise _refused(alert.id, exc) from exc
        previous = {
            "disposition": alert.disposition.value if alert.disposition else None,
            "gravity": alert.gravity.value if alert.gravity else None,
            "note": alert.note,
            "resolved_at": iso(alert.resolved_at),
            "resolved_by": alert.resolved_by,
            "reopened_at": iso(now),
            "reopened_by": who.officer_id,
            "reason": command.reason,
        }
        if not await uow.alert_lifecycle.reopen(alert.id, now, who.officer_id, previous):
            refused = TransitionRefused("alert_not_resolved", "the alert is not resolved")
            raise _refused(alert.id, refused)
        uow.emit(
            alert_event(
                AlertChange.REOPENED,
                alert.id,
                alert.org_unit_id,
                alert.subject_id,
                {
                    "status": status.value,
                    "by": who.officer_id,
                    "reason": command.reason,
                    "type": alert.type.value,
                    "previous": previous,
                    "reopen_count": alert.reopen_count + 1,
                },
            )
        )
        uow.audit(
            officer_id=who.officer_id,
            action="alert.reopen",
            subject_id=alert.subject_id,
            request_id=command.request_id,
            detail={"alert_id": alert.id, "reason": command.reason, "previous": previous},
        )
        return await uow.alerts.get(alert.id)
