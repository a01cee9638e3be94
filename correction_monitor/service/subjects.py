"""Subjects (社区矫正对象): registering them with their rules, reading them, and changing
their supervision level and who is responsible for them."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Final

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal, Role
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.models import (
    Curfew,
    Home,
    NewSubject,
    Subject,
    SubjectCategory,
    SupervisionLevel,
)
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Forbidden, InvalidInput
from correction_monitor.service.fences import FenceInputError, circle_centre
from correction_monitor.service.jurisdiction import visible_subject, visible_unit
from correction_monitor.service.unit_of_work import UnitOfWork
from geofences.crs import CRS


@dataclass(frozen=True, slots=True)
class PlacedSubject:
    """A subject with the code of its station."""

    subject: Subject
    org_code: str


@dataclass(frozen=True, slots=True)
class HomeRequest:
    """The home as given: a point in ``crs`` and a radius in metres (None: the policy's)."""

    lat: float
    lon: float
    crs: CRS = CRS.WGS84
    radius_m: float | None = None


@dataclass(frozen=True, slots=True)
class CreateSubject(Command[PlacedSubject]):
    """Register a subject at a station of the caller's jurisdiction.

    ``term_start`` and ``term_end`` are calendar days; an instant given instead (an aware
    datetime) names the day it falls on in the station's time zone. The curfew is in the
    station's local time and needs a home.
    """

    actor: Principal
    name: str
    org_unit: str
    supervision_level: SupervisionLevel
    category: SubjectCategory
    term_start: date | datetime
    term_end: date | datetime
    activity_area_id: int | None = None
    exclusion_zone_ids: tuple[int, ...] = ()
    home: HomeRequest | None = None
    curfew: Curfew | None = None
    responsible_officer_id: int | None = None
    responsible_supervisor_id: int | None = None
    request_id: str | None = None


def local_day(value: date | datetime, timezone: str) -> date:
    """The calendar day ``value`` falls on in ``timezone`` (a plain date is that day).

    Midnight in Beijing is 16:00 UTC the day before, so a day sent as the instant of its
    local midnight must be read in the station's zone, not as a UTC day.

    >>> from datetime import UTC
    >>> local_day(datetime(2026, 2, 28, 16, 0, tzinfo=UTC), "Asia/Shanghai").isoformat()
    '2026-03-01'
    """
    if isinstance(value, datetime):
        return value.astimezone(zoneinfo.ZoneInfo(timezone)).date()
    return value


async def _check_fences(
    uow: UnitOfWork, who: Principal, command: CreateSubject, unit_id: int
) -> None:
    """The fences exist, are of the right kind, and are usable for a subject of ``unit_id``:
    defined within the caller's jurisdiction or by a unit above the subject's station (a
    county's activity area serves every station of the county)."""
    wanted = set(command.exclusion_zone_ids)
    if command.activity_area_id is not None:
        wanted.add(command.activity_area_id)
    found = {f.id: f for f in await uow.geo.get_fences(wanted)}
    for fence_id in sorted(wanted - found.keys()):
        raise InvalidInput("unknown_geofence", f"geofence {fence_id} does not exist")
    if command.activity_area_id is not None:
        area = found[command.activity_area_id]
        if area.kind != "activity_area":
            raise InvalidInput(
                "wrong_geofence_kind",
                f"geofence {area.id} is a {area.kind!r} fence, not an activity_area",
            )
    for zone_id in command.exclusion_zone_ids:
        if found[zone_id].kind != "exclusion":
            raise InvalidInput(
                "wrong_geofence_kind",
                f"geofence {zone_id} is a {found[zone_id].kind!r} fence, not an exclusion zone",
            )
    lineage = await uow.org_units.lineage_ids(unit_id)
    for fence in found.values():
        # A fence the caller may not see is answered like one that does not exist.
        if not who.sees(fence.org_unit_id) and fence.org_unit_id not in lineage:
            raise InvalidInput("unknown_geofence", f"geofence {fence.id} does not exist")


async def _check_responsible(uow: UnitOfWork, who: Principal, command: CreateSubject) -> None:
    """The responsible officer and supervisor must be active, within the caller's
    jurisdiction."""
    for field, officer_id in (
        ("responsible_officer_id", command.responsible_officer_id),
        ("responsible_supervisor_id", command.responsible_supervisor_id),
    ):
        if officer_id is None:
            continue
        message = f"{field}: officer {officer_id} does not exist"
        try:
            found = await uow.officers.get(officer_id)
        except stored.NotFound as exc:
            raise InvalidInput("unknown_officer", message) from exc
        # Someone outside the jurisdiction is answered alike: their existence is not revealed.
        if not found.active or not who.sees(found.org_unit_id):
            raise InvalidInput("unknown_officer", message)


def _home(request: HomeRequest, default_radius_m: float) -> Home:
    try:
        lon, lat = circle_centre({"coordinates": [request.lon, request.lat]}, request.crs)
    except FenceInputError as exc:
        raise InvalidInput("invalid_request", str(exc)) from exc
    return Home(lon, lat, request.radius_m or default_radius_m)


async def create_subject(
    command: CreateSubject, uow: UnitOfWork, *, default_home_radius_m: float
) -> PlacedSubject:
    """Register the subject; the caller becomes its responsible officer unless one is named.

    ``default_home_radius_m`` (policy) is the home circle's radius when none is given.
    """
    who = command.actor
    if command.curfew is not None and command.home is None:
        raise InvalidInput("invalid_request", "a curfew needs a home to be kept at")
    async with uow:
        unit = await visible_unit(uow, who, command.org_unit)
        try:
            term_start = local_day(command.term_start, unit.timezone)
            term_end = local_day(command.term_end, unit.timezone)
        except OverflowError as exc:
            raise InvalidInput("invalid_request", "a term date is out of range") from exc
        if term_end < term_start:
            raise InvalidInput("invalid_request", "term_end is before term_start")
        await _check_fences(uow, who, command, unit.id)
        await _check_responsible(uow, who, command)
        home = _home(command.home, default_home_radius_m) if command.home else None
        subject = await uow.subjects.add(
            NewSubject(
                name=command.name,
                org_unit_id=unit.id,
                supervision_level=command.supervision_level,
                category=command.category,
                term_start=term_start,
                term_end=term_end,
                activity_area_id=command.activity_area_id,
                exclusion_zone_ids=tuple(sorted(set(command.exclusion_zone_ids))),
                home=home,
                home_crs=command.home.crs.value if command.home else None,
                curfew=command.curfew,
                responsible_officer_id=command.responsible_officer_id or who.officer_id,
                responsible_supervisor_id=command.responsible_supervisor_id,
            )
        )
        uow.audit(
            officer_id=who.officer_id,
            action="subject.create",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={"org_unit": unit.code, "supervision_level": subject.supervision_level.value},
        )
        uow.emit(
            DomainEvent(
                EventName.SUBJECT_CREATED,
                unit.id,
                subject_id=subject.id,
                data={
                    "supervision_level": subject.supervision_level.value,
                    "category": subject.category.value,
                    "responsible_officer_id": subject.responsible_officer_id,
                    "responsible_supervisor_id": subject.responsible_supervisor_id,
                },
            )
        )
    return PlacedSubject(subject, unit.code)


@dataclass(frozen=True, slots=True)
class GetSubject(Command[PlacedSubject]):
    actor: Principal
    subject_id: int


async def get_subject(command: GetSubject, uow: UnitOfWork) -> PlacedSubject:
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        unit = await uow.org_units.get(subject.org_unit_id)
    return PlacedSubject(subject, unit.code)


@dataclass(frozen=True, slots=True)
class ListSubjects(Command[list[PlacedSubject]]):
    """A page of the subjects within the caller's jurisdiction, by id."""

    actor: Principal
    limit: int = 100
    offset: int = 0


async def list_subjects(command: ListSubjects, uow: UnitOfWork) -> list[PlacedSubject]:
    async with uow:
        found = await uow.subjects.list_in(
            command.actor.scope, limit=command.limit, offset=command.offset
        )
        codes = await uow.org_units.codes_by_id(s.org_unit_id for s in found)
    return [PlacedSubject(s, codes[s.org_unit_id]) for s in found]


class Keep(Enum):
    """A field a change leaves as it is (None, for the responsible officers, clears it)."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP

# Changing the level is a decision on how closely someone is supervised (RULES.md §3): the
# station's head and above take it, as they do reassigning a subject (二级包保, §4).
LEVEL_DECIDERS: Final = frozenset({Role.SUPERVISOR, Role.COUNTY_ADMIN, Role.ADMIN})
REASSIGNERS: Final = frozenset({Role.SUPERVISOR, Role.COUNTY_ADMIN, Role.ADMIN})
RESPONSIBLE_OFFICER_ROLES: Final = frozenset({Role.OFFICER, Role.SUPERVISOR})
RESPONSIBLE_SUPERVISOR_ROLES: Final = frozenset({Role.SUPERVISOR, Role.COUNTY_ADMIN})


@dataclass(frozen=True, slots=True)
class ChangeSubject(Command[PlacedSubject]):
    """Change a subject's supervision level, responsible officer or responsible supervisor,
    for ``reason``. A field left at :data:`KEEP` stays as it is; None clears a responsible
    officer or supervisor."""

    actor: Principal
    subject_id: int
    supervision_level: SupervisionLevel | Keep = KEEP
    responsible_officer_id: int | Keep | None = KEEP
    responsible_supervisor_id: int | Keep | None = KEEP
    reason: str | None = None
    request_id: str | None = None


def _check_change_roles(command: ChangeSubject) -> None:
    who = command.actor
    if command.supervision_level is not KEEP and not who.may(LEVEL_DECIDERS):
        raise Forbidden(f"role {who.role.value!r} may not change a supervision level")
    reassigns = (command.responsible_officer_id, command.responsible_supervisor_id)
    if any(v is not KEEP for v in reassigns) and not who.may(REASSIGNERS):
        raise Forbidden(f"role {who.role.value!r} may not reassign a subject")


async def _check_assignee(
    uow: UnitOfWork,
    who: Principal,
    field: str,
    officer_id: int,
    roles: frozenset[Role],
    lineage: frozenset[int],
) -> None:
    """The officer exists, is active, belongs to the subject's station or a unit above it,
    and holds one of ``roles``. Someone the caller could not see otherwise (outside both
    their jurisdiction and the station's lineage) is answered as one that does not exist."""
    try:
        found = await uow.officers.get(officer_id)
    except stored.NotFound as exc:
        raise InvalidInput(
            "unknown_officer", f"{field}: officer {officer_id} does not exist"
        ) from exc
    if found.org_unit_id not in lineage:
        if not who.sees(found.org_unit_id):
            raise InvalidInput("unknown_officer", f"{field}: officer {officer_id} does not exist")
        raise InvalidInput(
            "officer_outside_station",
            f"{field}: officer {officer_id} belongs neither to the subject's station nor to "
            "a unit above it",
        )
    if not found.active:
        raise InvalidInput("inactive_officer", f"{field}: officer {officer_id} is not active")
    if Role(found.role) not in roles:
        allowed = " or ".join(sorted(r.value for r in roles))
        raise InvalidInput(
            "wrong_officer_role",
            f"{field}: officer {officer_id} is a {found.role}, not a {allowed}",
        )


async def change_subject(command: ChangeSubject, uow: UnitOfWork) -> PlacedSubject:
    """Apply the change; each field that differs is audited with what it was and becomes,
    with the reason, and the whole is announced as one ``subject.changed`` event. A change
    that changes nothing is answered with the subject as it is, and records nothing."""
    who = command.actor
    fields = (
        command.supervision_level,
        command.responsible_officer_id,
        command.responsible_supervisor_id,
    )
    if all(value is KEEP for value in fields):
        raise InvalidInput(
            "invalid_request",
            "nothing to change: give supervision_level, responsible_officer_id or "
            "responsible_supervisor_id",
        )
    _check_change_roles(command)
    async with uow:
        subject = await visible_subject(uow, who, command.subject_id)
        subject = await uow.subjects.get_for_update(subject.id)
        lineage = await uow.org_units.lineage_ids(subject.org_unit_id)
        for field, value, roles in (
            ("responsible_officer_id", command.responsible_officer_id, RESPONSIBLE_OFFICER_ROLES),
            (
                "responsible_supervisor_id",
                command.responsible_supervisor_id,
                RESPONSIBLE_SUPERVISOR_ROLES,
            ),
        ):
            if value is not KEEP and value is not None:
                await _check_assignee(uow, who, field, value, roles, lineage)
        level = (
            subject.supervision_level
            if command.supervision_level is KEEP
            else command.supervision_level
        )
        officer_id = (
            subject.responsible_officer_id
            if command.responsible_officer_id is KEEP
            else command.responsible_officer_id
        )
        supervisor_id = (
            subject.responsible_supervisor_id
            if command.responsible_supervisor_id is KEEP
            else command.responsible_supervisor_id
        )
        before: dict[str, object] = {
            "supervision_level": subject.supervision_level.value,
            "responsible_officer_id": subject.responsible_officer_id,
            "responsible_supervisor_id": subject.responsible_supervisor_id,
        }
        after: dict[str, object] = {
            "supervision_level": level.value,
            "responsible_officer_id": officer_id,
            "responsible_supervisor_id": supervisor_id,
        }
        changes = {
            name: {"from": before[name], "to": after[name]}
            for name in before
            if before[name] != after[name]
        }
        unit = await uow.org_units.get(subject.org_unit_id)
        if not changes:
            return PlacedSubject(subject, unit.code)
        changed = await uow.subjects.update_supervision(
            subject.id,
            supervision_level=level,
            responsible_officer_id=officer_id,
            responsible_supervisor_id=supervisor_id,
        )
        uow.audit(
            officer_id=who.officer_id,
            action="subject.change",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={"changes": changes, "reason": command.reason},
        )
        uow.emit(
            DomainEvent(
                EventName.SUBJECT_CHANGED,
                subject.org_unit_id,
                subject_id=subject.id,
                data={
                    "changes": changes,
                    "reason": command.reason,
                    "changed_by": who.officer_id,
                },
            )
        )
    return PlacedSubject(changed, unit.code)
