"""Leave (外出): the subject's application, reports and cancellation from the app, and
officers' decisions (RULES.md §2, §4; docs/leave.md).

The destination is stored as a fence of kind ``leave_destination``, built exactly like an
officer's fence (``fences.build_shape``: adcodes of imported boundaries, a city code meaning
all its districts, or a polygon in any CRS), so evaluation and check-ins treat it like any
other area. Every decision is audited (who, when, why) and becomes an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.leave import (
    BadLeave,
    Leave,
    LeaveReason,
    LeaveReport,
    LeaveStatus,
    NewLeave,
    NewLeaveReport,
    ReportKind,
    approval_level,
    check_span,
    cumulative_window,
    higher,
    local_midnight,
    may_approve,
    parse_bound,
)
from correction_monitor.domain.models import NewFence
from correction_monitor.domain.timeutil import BadInstant, iso, parse_instant
from correction_monitor.policy import Policy
from correction_monitor.service.command import Command
from correction_monitor.service.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceError,
)
from correction_monitor.service.fences import FenceInputError, build_shape
from correction_monitor.service.unit_of_work import UnitOfWork
from geofences.classify import PreparedArea, classify
from geofences.crs import CRS, to_wgs84
from geofences.model import Membership

LIST_LIMIT = 500


class NoApprovalAuthority(Forbidden):
    """The caller's role is below the leave's approval level (403 ``approval_authority``)."""

    def __init__(self, message: str, **extra: Any) -> None:
        ServiceError.__init__(self, "approval_authority", message, **extra)


@dataclass(frozen=True, slots=True)
class PlacedLeave:
    """A leave with its station's time zone, in which its span is shown."""

    leave: Leave
    timezone: str


def _invalid(field: str, code: str, message: str) -> InvalidInput:
    return InvalidInput(code, message, field=field)


async def _timezone(uow: UnitOfWork, org_unit_id: int) -> str:
    return (await uow.org_units.get(org_unit_id)).timezone


async def _prior_spans(
    uow: UnitOfWork,
    subject_id: int,
    ends_at: datetime,
    tz: ZoneInfo,
    policy: Policy,
    except_id: int,
) -> list[tuple[datetime, datetime]]:
    """The subject's other approved leaves meeting the cumulative window of a leave ending
    at ``ends_at``."""
    first, _ = cumulative_window(ends_at, tz, policy.leave)
    return await uow.leaves.approved_spans(
        subject_id, local_midnight(first, tz), ends_at, except_id
    )


# -- the subject's app -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyLeave(Command[PlacedLeave]):
    """The subject's application from the app: where (``destination`` as the app gave it),
    why, and when (``start``/``end``: a date, an ISO-8601 instant or epoch milliseconds)."""

    subject_id: int
    device_id: int
    destination: dict[str, Any]
    reason: str
    note: str | None
    start: str | int | float
    end: str | int | float
    commuting: bool = False


def _reason(value: str) -> LeaveReason:
    try:
        return LeaveReason(value)
    except ValueError:
        allowed = ", ".join(r.value for r in LeaveReason)
        raise _invalid("reason", "invalid_reason", f"'reason' must be one of {allowed}") from None


def _bound(value: str | int | float, tz: ZoneInfo, *, end: bool) -> datetime:
    field = "end" if end else "start"
    try:
        return parse_bound(value, tz, end=end)
    except (BadInstant, ValueError, OverflowError, OSError) as exc:
        raise _invalid(field, "invalid_time", f"'{field}': {exc}") from None


def _destination_parts(
    destination: dict[str, Any],
) -> tuple[dict[str, Any] | None, list[str] | None, CRS]:
    """The geometry or adcodes of a destination and its CRS; 400 naming ``destination``."""
    given = [k for k in ("adcodes", "geometry") if k in destination]
    if len(given) != 1:
        raise _invalid(
            "destination",
            "invalid_destination",
            "'destination' needs exactly one of 'adcodes' and 'geometry'",
        )
    try:
        crs = CRS(destination.get("crs", CRS.WGS84.value))
    except ValueError:
        raise _invalid(
            "destination", "invalid_destination", "'destination.crs' must be wgs84, gcj02 or bd09"
        ) from None
    if given[0] == "adcodes":
        adcodes = destination["adcodes"]
        if not isinstance(adcodes, list):
            raise _invalid(
                "destination", "invalid_destination", "'destination.adcodes' must be a list"
            )
        return None, adcodes, crs
    geometry = destination["geometry"]
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise _invalid(
            "destination",
            "invalid_geometry",
            "'destination.geometry' must be a GeoJSON Polygon or MultiPolygon",
        )
    return geometry, None, crs


async def apply_leave(
    command: ApplyLeave, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> PlacedLeave:
    """Store a pending application with its approval level and its destination's fence;
    InvalidInput naming the field for an unusable one."""
    reason = _reason(command.reason)
    geometry, adcodes, crs = _destination_parts(command.destination)
    async with uow:
        subject = await uow.subjects.get(command.subject_id)
        timezone = await _timezone(uow, subject.org_unit_id)
        tz = ZoneInfo(timezone)
        starts_at = _bound(command.start, tz, end=False)
        ends_at = _bound(command.end, tz, end=True)
        try:
            days = check_span(starts_at, ends_at, tz, policy.leave)
        except BadLeave as exc:
            code = "end_before_start" if ends_at <= starts_at else "too_long"
            raise _invalid(exc.field, code, str(exc)) from None
        prior = await _prior_spans(uow, subject.id, ends_at, tz, policy, except_id=0)
        level = approval_level(
            starts_at, ends_at, tz, policy.leave, commuting=command.commuting, approved=prior
        )
        try:
            shape = await build_shape(
                uow.geo,
                geometry=geometry,
                radius_m=None,
                adcodes=adcodes,
                crs=crs,
                repair=True,
            )
        except FenceInputError as exc:
            raise _invalid("destination", exc.code, f"'destination': {exc}") from None
        fence = await uow.geo.add_fence(
            NewFence(
                name=f"leave destination of subject {subject.id}",
                kind="leave_destination",
                org_unit_id=subject.org_unit_id,
                geometry_id=shape.geometry_id,
                circle=None,
                adcodes=tuple(adcodes) if adcodes is not None else None,
                source_crs=crs.value,
                schedule=None,
                created_by=None,
            )
        )
        leave = await uow.leaves.add(
            NewLeave(
                subject_id=subject.id,
                org_unit_id=subject.org_unit_id,
                destination=command.destination,
                destination_fence_id=fence.id,
                reason=reason,
                note=command.note,
                starts_at=starts_at,
                ends_at=ends_at,
                start_text=str(command.start),
                end_text=str(command.end),
                days=days,
                approval_level=level,
                commuting=command.commuting,
                applied_at=clock.now(),
            )
        )
        uow.audit(
            officer_id=None,
            action="leave.apply",
            subject_id=subject.id,
            detail={"leave_id": leave.id, "device_id": command.device_id} | _facts(leave),
        )
        uow.emit(_event(EventName.LEAVE_APPLIED, leave))
    return PlacedLeave(leave, timezone)


def _facts(leave: Leave) -> dict[str, Any]:
    return {
        "starts_at": iso(leave.starts_at),
        "ends_at": iso(leave.ends_at),
        "days": leave.days,
        "approval_level": leave.approval_level.value,
        "commuting": leave.commuting,
    }


def _event(name: EventName, leave: Leave, **data: Any) -> DomainEvent:
    return DomainEvent(
        name,
        leave.org_unit_id,
        subject_id=leave.subject_id,
        data={"leave_id": leave.id, "status": leave.status.value} | _facts(leave) | data,
    )


@dataclass(frozen=True, slots=True)
class ListMyLeave(Command[list[PlacedLeave]]):
    """The subject's own leaves, newest first."""

    subject_id: int


async def list_my_leave(command: ListMyLeave, uow: UnitOfWork) -> list[PlacedLeave]:
    async with uow:
        subject = await uow.subjects.get(command.subject_id)
        timezone = await _timezone(uow, subject.org_unit_id)
        leaves = await uow.leaves.of_subject(subject.id, LIST_LIMIT)
    return [PlacedLeave(leave, timezone) for leave in leaves]


async def _own_leave(uow: UnitOfWork, subject_id: int, leave_id: int) -> Leave:
    """The subject's leave, locked; another subject's is answered as missing."""
    try:
        leave = await uow.leaves.get(leave_id, for_update=True)
    except stored.NotFound:
        raise NotFound(f"leave {leave_id}") from None
    if leave.subject_id != subject_id:
        raise NotFound(f"leave {leave_id}")
    return leave


@dataclass(frozen=True, slots=True)
class CancelLeave(Command[PlacedLeave]):
    """The subject withdraws a pending application."""

    subject_id: int
    device_id: int
    leave_id: int


async def cancel_leave(command: CancelLeave, uow: UnitOfWork, *, clock: Clock) -> PlacedLeave:
    async with uow:
        leave = await _own_leave(uow, command.subject_id, command.leave_id)
        cancelled = await uow.leaves.decide(
            leave.id,
            LeaveStatus.CANCELLED,
            officer_id=None,
            at=clock.now(),
            note=None,
            approval_level=leave.approval_level,
        )
        if cancelled is None:
            raise Conflict("not_pending", f"leave {leave.id} is {leave.status.value}, not pending")
        uow.audit(
            officer_id=None,
            action="leave.cancel",
            subject_id=leave.subject_id,
            detail={"leave_id": leave.id, "device_id": command.device_id},
        )
        uow.emit(_event(EventName.LEAVE_CANCELLED, cancelled))
        timezone = await _timezone(uow, leave.org_unit_id)
    return PlacedLeave(cancelled, timezone)


@dataclass(frozen=True, slots=True)
class ReportLeave(Command[LeaveReport]):
    """The subject reports arriving at, leaving, or returning from an approved leave's
    destination, with where the phone was (WGS-84 unless ``crs`` says otherwise)."""

    subject_id: int
    device_id: int
    leave_id: int
    kind: str
    ts: str | int | float
    lat: float
    lon: float
    accuracy_m: float | None = None
    crs: str | None = None


def _position(command: ReportLeave) -> tuple[float, float, CRS]:
    try:
        crs = CRS(command.crs or CRS.WGS84.value)
    except ValueError:
        raise _invalid("crs", "invalid_crs", "'crs' must be wgs84, gcj02 or bd09") from None
    if not -90.0 <= command.lat <= 90.0:
        raise _invalid("lat", "invalid_position", "'lat' must be within [-90, 90]")
    if not -180.0 <= command.lon <= 180.0:
        raise _invalid("lon", "invalid_position", "'lon' must be within [-180, 180]")
    if command.accuracy_m is not None and not 0.0 <= command.accuracy_m < 1e6:
        raise _invalid("accuracy_m", "invalid_accuracy", "'accuracy_m' must be 0 or more metres")
    return command.lon, command.lat, crs


async def report_leave(
    command: ReportLeave, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> LeaveReport:
    """Store the report with whether it lies inside the destination. An arrival reported
    outside it is kept and flagged, never refused: the phone's word is evidence."""
    try:
        kind = ReportKind(command.kind)
    except ValueError:
        raise _invalid(
            "kind", "invalid_kind", "'kind' must be arrival, departure or return"
        ) from None
    try:
        ts = parse_instant(command.ts)
    except (BadInstant, ValueError, OverflowError, OSError) as exc:
        raise _invalid("ts", "invalid_time", f"'ts': {exc}") from None
    lon, lat, crs = _position(command)
    wlon, wlat = (float(v) for v in to_wgs84(lon, lat, crs))
    accuracy = command.accuracy_m
    async with uow:
        leave = await _own_leave(uow, command.subject_id, command.leave_id)
        if leave.status is not LeaveStatus.APPROVED:
            raise Conflict(
                "not_approved", f"leave {leave.id} is {leave.status.value}, not approved"
            )
        inside = None
        if leave.destination_fence_id is not None:
            fence = await uow.geo.get_fence(leave.destination_fence_id)
            if fence.geometry_id is not None:
                area = PreparedArea(await uow.geo.load_geometry(fence.geometry_id))
                disc = accuracy if accuracy is not None else policy.ingest.default_accuracy_m
                m = int(classify(area, np.array([wlon]), np.array([wlat]), np.array([disc]))[0])
                inside = {Membership.INSIDE: True, Membership.OUTSIDE: False}.get(Membership(m))
        report = await uow.leaves.add_report(
            NewLeaveReport(
                leave_id=leave.id,
                subject_id=leave.subject_id,
                kind=kind,
                ts=ts,
                lon=wlon,
                lat=wlat,
                accuracy_m=accuracy,
                inside=inside,
                device_id=command.device_id,
                received_at=clock.now(),
            )
        )
        uow.emit(
            DomainEvent(
                EventName.LEAVE_REPORTED,
                leave.org_unit_id,
                subject_id=leave.subject_id,
                data={
                    "leave_id": leave.id,
                    "report_id": report.id,
                    "kind": kind.value,
                    "at": iso(ts),
                    "inside": inside,
                    "flagged": report.flagged,
                },
            )
        )
    return report


# -- officers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListLeave(Command[list[PlacedLeave]]):
    """Leaves in the caller's jurisdiction, newest first, optionally of one status or
    subject."""

    actor: Principal
    status: LeaveStatus | None = None
    subject_id: int | None = None


async def list_leave(command: ListLeave, uow: UnitOfWork) -> list[PlacedLeave]:
    async with uow:
        leaves = await uow.leaves.list_in(
            command.actor.scope,
            status=command.status,
            subject_id=command.subject_id,
            limit=LIST_LIMIT,
        )
        timezones = {u: await _timezone(uow, u) for u in {leave.org_unit_id for leave in leaves}}
    return [PlacedLeave(leave, timezones[leave.org_unit_id]) for leave in leaves]


@dataclass(frozen=True, slots=True)
class DecideLeave(Command[PlacedLeave]):
    """An officer approves (``approve``) or rejects a pending leave, with a note (required
    to reject: the subject is told why)."""

    actor: Principal
    leave_id: int
    approve: bool
    note: str | None = None
    request_id: str | None = None


async def decide_leave(
    command: DecideLeave, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> PlacedLeave:
    """Decide a pending leave of the caller's jurisdiction (NotFound elsewhere). The
    approval level is worked out again at the decision, so leaves approved since the
    application count; a role below it is refused (``approval_authority``), for a
    rejection as for an approval: the level names who decides."""
    who = command.actor
    if not command.approve and not (command.note and command.note.strip()):
        raise _invalid("note", "note_required", "a rejection needs a 'note' saying why")
    async with uow:
        try:
            leave = await uow.leaves.get(command.leave_id, for_update=True)
        except stored.NotFound:
            raise NotFound(f"leave {command.leave_id}") from None
        if not who.sees(leave.org_unit_id):
            raise NotFound(f"leave {command.leave_id}")
        if leave.status is not LeaveStatus.PENDING:
            raise Conflict("not_pending", f"leave {leave.id} is {leave.status.value}, not pending")
        timezone = await _timezone(uow, leave.org_unit_id)
        tz = ZoneInfo(timezone)
        level = leave.approval_level
        if not leave.commuting:
            prior = await _prior_spans(uow, leave.subject_id, leave.ends_at, tz, policy, leave.id)
            level = higher(
                level,
                approval_level(
                    leave.starts_at,
                    leave.ends_at,
                    tz,
                    policy.leave,
                    commuting=False,
                    approved=prior,
                ),
            )
        if not may_approve(who.role, level):
            raise NoApprovalAuthority(
                f"a {level.value}-level leave needs a higher role than {who.role.value}",
                approval_level=level.value,
            )
        status = LeaveStatus.APPROVED if command.approve else LeaveStatus.REJECTED
        decided = await uow.leaves.decide(
            leave.id,
            status,
            officer_id=who.officer_id,
            at=clock.now(),
            note=command.note,
            approval_level=level,
        )
        assert decided is not None, "the pending leave is locked by this unit of work"
        uow.audit(
            officer_id=who.officer_id,
            action="leave.approve" if command.approve else "leave.reject",
            subject_id=leave.subject_id,
            request_id=command.request_id,
            detail={"leave_id": leave.id, "note": command.note} | _facts(decided),
        )
        uow.emit(
            _event(
                EventName.LEAVE_APPROVED if command.approve else EventName.LEAVE_REJECTED,
                decided,
                decided_by=who.officer_id,
                note=command.note,
            )
        )
    return PlacedLeave(decided, timezone)


@dataclass(frozen=True, slots=True)
class LeaveWithReports:
    placed: PlacedLeave
    reports: list[LeaveReport]


@dataclass(frozen=True, slots=True)
class GetLeave(Command[LeaveWithReports]):
    """One leave of the caller's jurisdiction with the subject's reports on it. The reports
    hold positions, so the read is audited with its purpose."""

    actor: Principal
    leave_id: int
    purpose: str | None = None
    request_id: str | None = None


async def get_leave(command: GetLeave, uow: UnitOfWork) -> LeaveWithReports:
    async with uow:
        try:
            leave = await uow.leaves.get(command.leave_id)
        except stored.NotFound:
            raise NotFound(f"leave {command.leave_id}") from None
        if not command.actor.sees(leave.org_unit_id):
            raise NotFound(f"leave {command.leave_id}")
        reports = await uow.leaves.reports(leave.id)
        timezone = await _timezone(uow, leave.org_unit_id)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="leave.read",
            subject_id=leave.subject_id,
            purpose=command.purpose,
            request_id=command.request_id,
            detail={"leave_id": leave.id, "reports": len(reports)},
        )
    return LeaveWithReports(PlacedLeave(leave, timezone), reports)
