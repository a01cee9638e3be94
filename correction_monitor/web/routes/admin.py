"""The administration API of CONTRACT.md: org units, boundaries, geofences, subjects, devices.

Each route parses and checks its request, authorises the caller's role, runs one command of
the service layer and renders the answer; the rules live in the handlers.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from correction_monitor.domain.access import CASEWORK_ROLES, CONFIGURATION_ROLES
from correction_monitor.domain.models import (
    Curfew,
    Device,
    GeofenceRecord,
    SubjectCategory,
    SupervisionLevel,
)
from correction_monitor.domain.timeutil import BadInstant, iso, parse_clock, parse_instant
from correction_monitor.service import boundaries, devices, fences, org_units, subjects
from correction_monitor.service.errors import ServiceError
from correction_monitor.service.fences import shape_as_geojson
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, parse_model, read_json, read_object
from correction_monitor.web.keys import DEVICES, PROFILES, REQUEST_ID
from correction_monitor.web.params import PG_INT_MAX, RowId, int_param
from geofences.crs import CRS

routes = web.RouteTableDef()

CrsName = Literal["wgs84", "gcj02", "bd09"]


def _crs(value: str | None, default: CRS) -> CRS:
    if value is None:
        return default
    try:
        return CRS(value.lower())
    except ValueError as exc:
        raise bad_request(
            "invalid_crs", f"crs must be one of wgs84, gcj02, bd09, not {value!r}"
        ) from exc


# --- org units -------------------------------------------------------------------------------


class OrgUnitIn(BaseModel):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    parent_code: str | None = None
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


@routes.post("/api/v1/org-units")
async def create_org_unit(request: web.Request) -> web.Response:
    who = await officer(request, CONFIGURATION_ROLES)
    body = parse_model(OrgUnitIn, await read_object(request))
    placed = await handle(
        request,
        org_units.CreateOrgUnit(
            actor=who,
            code=body.code,
            name=body.name,
            parent_code=body.parent_code,
            timezone=body.timezone,
            request_id=request.get(REQUEST_ID),
        ),
    )
    return json_response(placed.unit.to_json(placed.parent_code) | {"id": placed.unit.id}, 201)


@routes.get("/api/v1/org-units")
async def list_org_units(request: web.Request) -> web.Response:
    who = await officer(request)
    placed = await handle(request, org_units.ListOrgUnits(actor=who))
    return json_response(
        {"org_units": [{"id": p.unit.id} | p.unit.to_json(p.parent_code) for p in placed]}
    )


# --- administrative boundaries ---------------------------------------------------------------


# Problems make_valid can repair (structure, ranges and closure are never guessed at).
REPAIRABLE = frozenset(
    {
        "self_intersection",
        "hole_outside_shell",
        "nested_holes",
        "nested_shells",
        "disconnected_interior",
        "duplicate_rings",
        "invalid_geometry",
    }
)


# Without ?repair, only repairs that change an area by at most this fraction are made.
AUTO_REPAIR_MAX_AREA_CHANGE = 1e-4


def repair_mode(request: web.Request) -> tuple[bool, float | None]:
    """(repair, max area change) from ``?repair=``.

    ``true``: rebuild any repairable geometry with make_valid. ``false``: refuse every invalid
    geometry. Absent: repair only numerical artefacts that change an area by at most 0.01 %
    — DataV's own boundaries touch themselves here and there (顺义区 in Beijing's file,
    兴隆县) and must import as they are — and refuse real defects such as a bow-tie. Every
    repair made is listed in the answer.
    """
    raw = request.query.get("repair")
    if raw is None or raw == "":
        return True, AUTO_REPAIR_MAX_AREA_CHANGE
    if raw.lower() in ("1", "true", "yes"):
        return True, None
    if raw.lower() in ("0", "false", "no"):
        return False, None
    raise bad_request("invalid_request", "repair must be true or false")


def _repair_hint(mode: tuple[bool, float | None]) -> Callable[[ServiceError], str]:
    """What to add to the message of a refused geometry: how to have it repaired, when a
    repair could help and was not already asked for."""

    def hint(exc: ServiceError) -> str:
        if exc.extra.get("problem") not in REPAIRABLE or (mode[0] and mode[1] is None):
            return ""
        return " (add ?repair=true to rebuild it with make_valid; repairs are reported)"

    return hint


@routes.post("/api/v1/boundaries/import")
async def import_boundaries(request: web.Request) -> web.Response:
    """Import a DataV FeatureCollection (GCJ-02 unless ``?crs=`` says otherwise)."""
    who = await officer(request, CONFIGURATION_ROLES)
    crs = _crs(request.query.get("crs"), CRS.GCJ02)
    mode = repair_mode(request)
    command = boundaries.ImportBoundaries(
        actor=who,
        collection=await read_json(request),
        crs=crs,
        repair=mode[0],
        max_repair_area_change=mode[1],
        request_id=request.get(REQUEST_ID),
    )
    areas = await handle(request, command, hint=_repair_hint(mode))
    return json_response(
        {
            "imported": len(areas),
            "adcodes": [a.adcode for a in areas],
            "crs": crs.value,
            # A repaired boundary differs from the file: say so, per adcode.
            "repairs": {a.adcode: list(a.repairs) for a in areas if a.repairs},
        },
        status=201,
    )


@routes.get("/api/v1/boundaries")
async def list_boundaries(request: web.Request) -> web.Response:
    who = await officer(request)
    areas = await handle(request, boundaries.ListBoundaries(actor=who))
    return json_response(
        {
            "areas": [
                {
                    "adcode": a.adcode,
                    "name": a.name,
                    "parent_adcode": a.parent_adcode,
                    "level": a.level,
                }
                for a in areas
            ]
        }
    )


# --- geofences -------------------------------------------------------------------------------


def _clock_time(value: str) -> str:
    try:
        parse_clock(value)
    except BadInstant as exc:
        raise ValueError(str(exc)) from exc
    return value


ClockTime = Annotated[str, AfterValidator(_clock_time)]
"""A local ``HH:MM`` clock time."""


class WindowIn(BaseModel):
    days: list[int] = Field(min_length=1, max_length=7)
    start: ClockTime
    end: ClockTime

    @field_validator("days")
    @classmethod
    def iso_weekdays(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in value):
            raise ValueError("days are ISO weekdays 1 (Monday) .. 7 (Sunday)")
        return sorted(set(value))


class ScheduleIn(BaseModel):
    windows: list[WindowIn] = Field(min_length=1, max_length=50)


class GeofenceIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["activity_area", "exclusion", "home"]
    org_unit: str
    geometry: dict[str, Any] | None = None
    radius_m: float | None = None
    adcodes: list[str] | None = None
    crs: CrsName = "wgs84"
    schedule: ScheduleIn | None = None


def fence_json(
    fence: GeofenceRecord, org_code: str, repairs: tuple[str, ...] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": fence.id,
        "name": fence.name,
        "kind": fence.kind,
        "org_unit": org_code,
        "crs": fence.source_crs,
        "adcodes": list(fence.adcodes) if fence.adcodes is not None else None,
        "schedule": fence.schedule,
        "geometry_id": fence.geometry_id,
    }
    if fence.radius_m is not None:
        out["center"] = {"lon": fence.center_lon, "lat": fence.center_lat}
        out["radius_m"] = fence.radius_m
    if repairs:
        out["repairs"] = list(repairs)
    return out


@routes.post("/api/v1/geofences")
async def create_geofence(request: web.Request) -> web.Response:
    who = await officer(request, CONFIGURATION_ROLES)
    body = parse_model(GeofenceIn, await read_object(request))
    mode = repair_mode(request)
    command = fences.CreateFence(
        actor=who,
        name=body.name,
        kind=body.kind,
        org_unit=body.org_unit,
        geometry=body.geometry,
        radius_m=body.radius_m,
        adcodes=tuple(body.adcodes) if body.adcodes is not None else None,
        crs=CRS(body.crs),
        schedule=body.schedule.model_dump() if body.schedule else None,
        repair=mode[0],
        max_repair_area_change=mode[1],
        request_id=request.get(REQUEST_ID),
    )
    placed = await handle(request, command, hint=_repair_hint(mode))
    return json_response(fence_json(placed.fence, placed.org_code, placed.repairs), status=201)


@routes.get("/api/v1/geofences/{id}")
async def get_geofence(request: web.Request) -> web.Response:
    who = await officer(request)
    placed = await handle(request, fences.GetFence(actor=who, fence_id=int_param(request, "id")))
    out = fence_json(placed.fence, placed.org_code)
    if placed.geometry is not None:
        out["geometry"] = shape_as_geojson(placed.geometry)
    return json_response(out)


@routes.get("/api/v1/geofences")
async def list_geofences(request: web.Request) -> web.Response:
    who = await officer(request)
    placed = await handle(request, fences.ListFences(actor=who))
    return json_response({"geofences": [fence_json(p.fence, p.org_code) for p in placed]})


# --- subjects --------------------------------------------------------------------------------


class HomeIn(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    crs: CrsName = "wgs84"
    radius_m: float | None = Field(default=None, gt=0, le=5000)


class CurfewIn(BaseModel):
    start: ClockTime
    end: ClockTime


def _term_day(value: Any) -> date | datetime:
    """A term day as sent: ``YYYY-MM-DD`` is that date; an instant (epoch milliseconds, or
    ISO-8601 with an offset) becomes an aware UTC datetime, read as a calendar day in the
    station's time zone once that is known (``service.subjects.local_day``).

    Midnight in Beijing is 16:00 UTC the day before, so a day sent as the epoch
    milliseconds of its local midnight must be neither refused nor shifted as a UTC day.
    """
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            return date.fromisoformat(text)
        try:
            written = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            written = None
        if written is not None and written.tzinfo is None:
            # A wall-clock time without offset still names its day unambiguously.
            return written.date()
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("a date is YYYY-MM-DD, ISO-8601 with an offset or epoch milliseconds")
    try:
        return parse_instant(value)
    except (OverflowError, OSError) as exc:
        # Epoch milliseconds beyond the years datetime can hold.
        raise ValueError(f"{value!r} is out of range") from exc


TermDay = Annotated[date | datetime, BeforeValidator(_term_day)]
"""A calendar day of a term: a date, or an instant within it (see :func:`_term_day`)."""


class SubjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    org_unit: str
    supervision_level: SupervisionLevel
    category: SubjectCategory
    term_start: TermDay
    term_end: TermDay
    activity_area_id: RowId | None = None
    exclusion_zone_ids: list[RowId] = Field(default_factory=list, max_length=200)
    home: HomeIn | None = None
    curfew: CurfewIn | None = None
    responsible_officer_id: RowId | None = None
    responsible_supervisor_id: RowId | None = None


@routes.post("/api/v1/subjects")
async def create_subject(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    body = parse_model(SubjectIn, await read_object(request))
    home = body.home
    command = subjects.CreateSubject(
        actor=who,
        name=body.name,
        org_unit=body.org_unit,
        supervision_level=body.supervision_level,
        category=body.category,
        term_start=body.term_start,
        term_end=body.term_end,
        activity_area_id=body.activity_area_id,
        exclusion_zone_ids=tuple(body.exclusion_zone_ids),
        home=subjects.HomeRequest(home.lat, home.lon, CRS(home.crs), home.radius_m)
        if home
        else None,
        curfew=Curfew(parse_clock(body.curfew.start), parse_clock(body.curfew.end))
        if body.curfew
        else None,
        responsible_officer_id=body.responsible_officer_id,
        responsible_supervisor_id=body.responsible_supervisor_id,
        request_id=request.get(REQUEST_ID),
    )
    placed = await handle(request, command)
    return json_response(placed.subject.to_json(placed.org_code), status=201)


@routes.get("/api/v1/subjects")
async def list_subjects(request: web.Request) -> web.Response:
    who = await officer(request)
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError as exc:
        raise bad_request("invalid_request", "limit and offset must be integers") from exc
    if limit < 1 or offset < 0:
        raise bad_request("invalid_request", "limit must be at least 1 and offset at least 0")
    # PostgreSQL takes LIMIT and OFFSET as bigint; past a billion rows the page is empty anyway.
    limit, offset = min(limit, 1000), min(offset, PG_INT_MAX)
    placed = await handle(request, subjects.ListSubjects(actor=who, limit=limit, offset=offset))
    return json_response({"subjects": [p.subject.to_json(p.org_code) for p in placed]})


@routes.get("/api/v1/subjects/{id}")
async def get_subject(request: web.Request) -> web.Response:
    who = await officer(request)
    command = subjects.GetSubject(actor=who, subject_id=int_param(request, "id"))
    placed = await handle(request, command)
    return json_response(placed.subject.to_json(placed.org_code))


class SubjectChangeIn(BaseModel):
    """``PATCH /api/v1/subjects/{id}``: only the fields given change; null clears a
    responsible officer or supervisor (a level cannot be cleared)."""

    model_config = ConfigDict(extra="forbid")

    supervision_level: SupervisionLevel = SupervisionLevel.NORMAL
    responsible_officer_id: RowId | None = None
    responsible_supervisor_id: RowId | None = None
    reason: str | None = Field(default=None, max_length=2000)


@routes.patch("/api/v1/subjects/{id}")
async def change_subject(request: web.Request) -> web.Response:
    """Change a subject's level (supervisor and above) or who is responsible for it
    (supervisor and above); answers the subject as ``GET`` does."""
    who = await officer(request, subjects.LEVEL_DECIDERS | subjects.REASSIGNERS)
    subject_id = int_param(request, "id")
    body = parse_model(SubjectChangeIn, await read_object(request))
    given = body.model_fields_set
    command = subjects.ChangeSubject(
        actor=who,
        subject_id=subject_id,
        supervision_level=(
            body.supervision_level if "supervision_level" in given else subjects.KEEP
        ),
        responsible_officer_id=(
            body.responsible_officer_id if "responsible_officer_id" in given else subjects.KEEP
        ),
        responsible_supervisor_id=(
            body.responsible_supervisor_id
            if "responsible_supervisor_id" in given
            else subjects.KEEP
        ),
        reason=body.reason,
        request_id=request.get(REQUEST_ID),
    )
    placed = await handle(request, command)
    # The new level's rules apply to this process's next fixes at once; other processes
    # rebuild the subject's profile within the cache's TTL (a minute).
    request.app[PROFILES].forget(placed.subject.id)
    return json_response(placed.subject.to_json(placed.org_code))


# --- devices ---------------------------------------------------------------------------------


class DeviceIn(BaseModel):
    platform: str | None = Field(default=None, max_length=64)


def device_json(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.id,
        "osmand_id": device.osmand_id,
        "platform": device.platform,
        "created_at": iso(device.created_at),
        "revoked_at": iso(device.revoked_at),
    }


@routes.post("/api/v1/subjects/{id}/devices")
async def enrol_device(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    subject_id = int_param(request, "id")
    raw = await request.read()
    body = parse_model(DeviceIn, await read_object(request)) if raw.strip() else DeviceIn()
    command = devices.EnrolDevice(
        actor=who,
        subject_id=subject_id,
        platform=body.platform,
        request_id=request.get(REQUEST_ID),
    )
    enrolled = await handle(request, command)
    return json_response(
        {
            "device_id": enrolled.device.id,
            "token": enrolled.token,
            "osmand_id": enrolled.device.osmand_id,
            "subject_id": enrolled.device.subject_id,
            "platform": enrolled.device.platform,
        },
        status=201,
    )


@routes.get("/api/v1/subjects/{id}/devices")
async def list_devices(request: web.Request) -> web.Response:
    who = await officer(request)
    command = devices.ListDevices(actor=who, subject_id=int_param(request, "id"))
    return json_response({"devices": [device_json(d) for d in await handle(request, command)]})


@routes.delete("/api/v1/subjects/{id}/devices/{device_id}")
async def revoke_device(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    command = devices.RevokeDevice(
        actor=who,
        subject_id=int_param(request, "id"),
        device_id=int_param(request, "device_id"),
        request_id=request.get(REQUEST_ID),
    )
    device = await handle(request, command)
    # This process forgets it now; the others within DeviceDirectory.watch_every_s.
    request.app[DEVICES].forget({device.id})
    return web.Response(status=204)
