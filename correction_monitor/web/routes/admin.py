"""The administration API of CONTRACT.md: org units, boundaries, geofences, subjects, devices."""

from __future__ import annotations

import secrets
import zoneinfo
from datetime import date, datetime
from typing import Annotated, Any, Literal

import asyncpg
from aiohttp import web
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, field_validator

from correction_monitor.adapters import geo, officers, org_units, subjects
from correction_monitor.adapters.errors import AlreadyExists, NotFound
from correction_monitor.domain.access import CASEWORK_ROLES, CONFIGURATION_ROLES, Principal
from correction_monitor.domain.models import (
    GeofenceRecord,
    Home,
    OrgUnit,
    Subject,
    SubjectCategory,
    SupervisionLevel,
)
from correction_monitor.domain.timeutil import BadInstant, parse_clock, parse_instant
from correction_monitor.service.auth import new_token, token_hash
from correction_monitor.service.fences import (
    FenceInputError,
    build_shape,
    circle_centre,
    shape_as_geojson,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.errors import ApiError, bad_request, conflict, forbidden, not_found
from correction_monitor.web.jsonio import json_response, parse_model, read_json, read_object
from correction_monitor.web.keys import DEVICES, POLICY, POOL
from geofences.crs import CRS
from geofences.errors import GeometryError
from geofences.geojson import parse_datav

routes = web.RouteTableDef()

CrsName = Literal["wgs84", "gcj02", "bd09"]

# Row ids are PostgreSQL ``integer``s: anything outside names no row, and would not even
# reach the database (asyncpg refuses to encode it).
PG_INT_MAX = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=PG_INT_MAX)]


def _crs(value: str | None, default: CRS) -> CRS:
    if value is None:
        return default
    try:
        return CRS(value.lower())
    except ValueError as exc:
        raise bad_request(
            "invalid_crs", f"crs must be one of wgs84, gcj02, bd09, not {value!r}"
        ) from exc


async def _visible_unit(conn: asyncpg.Connection, who: Principal, code: str) -> OrgUnit:
    try:
        unit = await org_units.get_by_code(conn, code)
    except NotFound as exc:
        raise bad_request("unknown_org_unit", f"org unit {code!r} does not exist") from exc
    if not who.sees(unit.id):
        raise forbidden(f"org unit {code!r} is outside your jurisdiction")
    return unit


async def visible_subject(conn: asyncpg.Connection, who: Principal, subject_id: int) -> Subject:
    """The subject if the caller's jurisdiction covers it; 404 otherwise (never reveal others)."""
    try:
        subject = await subjects.get(conn, subject_id)
    except NotFound as exc:
        raise not_found(f"subject {subject_id}") from exc
    if not who.sees(subject.org_unit_id):
        raise not_found(f"subject {subject_id}")
    return subject


def int_param(request: web.Request, name: str) -> int:
    """A row id from the URL path; anything that cannot be one is a 404."""
    raw = request.match_info[name]
    # isascii: int() would also take "1_000", " 7" and non-ASCII digits.
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= PG_INT_MAX:
        raise not_found(f"{name} {raw!r}")
    return int(raw)


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
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


@routes.post("/api/v1/org-units")
async def create_org_unit(request: web.Request) -> web.Response:
    who = await officer(request, CONFIGURATION_ROLES)
    body = parse_model(OrgUnitIn, await read_object(request))
    async with request.app[POOL].acquire() as conn:
        parent_id = None
        if body.parent_code is not None:
            parent_id = (await _visible_unit(conn, who, body.parent_code)).id
        elif who.scope is not None:
            raise forbidden("only an administrator may create a top-level org unit")
        try:
            unit = await org_units.create(conn, body.code, body.name, parent_id, body.timezone)
        except AlreadyExists as exc:
            raise conflict("org_unit_exists", str(exc)) from exc
    return json_response(unit.to_json(body.parent_code) | {"id": unit.id}, status=201)


@routes.get("/api/v1/org-units")
async def list_org_units(request: web.Request) -> web.Response:
    who = await officer(request)
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(
            "SELECT o.id, o.code, o.name, o.timezone, p.code AS parent_code FROM org_units o "
            "LEFT JOIN org_units p ON p.id = o.parent_id ORDER BY o.id"
        )
    units = [
        {
            "id": r["id"],
            "code": r["code"],
            "name": r["name"],
            "parent_code": r["parent_code"],
            "timezone": r["timezone"],
        }
        for r in rows
        if who.sees(r["id"])
    ]
    return json_response({"org_units": units})


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


def _repair_hint(problem: str | None, mode: tuple[bool, float | None]) -> str:
    if problem not in REPAIRABLE or (mode[0] and mode[1] is None):
        return ""
    return " (add ?repair=true to rebuild it with make_valid; repairs are reported)"


@routes.post("/api/v1/boundaries/import")
async def import_boundaries(request: web.Request) -> web.Response:
    """Import a DataV FeatureCollection (GCJ-02 unless ``?crs=`` says otherwise)."""
    await officer(request, CONFIGURATION_ROLES)
    crs = _crs(request.query.get("crs"), CRS.GCJ02)
    mode = repair_mode(request)
    data = await read_json(request)
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise bad_request("invalid_geojson", "the body must be a GeoJSON FeatureCollection")
    try:
        areas = parse_datav(data, crs=crs, repair=mode[0], max_repair_area_change=mode[1])
    except GeometryError as exc:
        raise ApiError(
            400,
            "invalid_geometry",
            f"{exc}{_repair_hint(exc.problem, mode)}",
            problem=exc.problem,
            feature=exc.feature,
        ) from exc
    if not areas:
        raise bad_request("invalid_geojson", "the FeatureCollection has no features")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        for area in areas:
            geometry_id = await geo.store_geometry(conn, area.geometry)
            await geo.upsert_admin_area(
                conn,
                adcode=area.adcode,
                name=area.name,
                parent_adcode=area.parent_adcode,
                level=area.level,
                geometry_id=geometry_id,
                source_crs=crs.value,
            )
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
    await officer(request)
    async with request.app[POOL].acquire() as conn:
        rows = await geo.admin_area_rows(conn)
    return json_response(
        {
            "areas": [
                {
                    "adcode": r["adcode"],
                    "name": r["name"],
                    "parent_adcode": r["parent_adcode"],
                    "level": r["level"],
                }
                for r in rows
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
    async with request.app[POOL].acquire() as conn, conn.transaction():
        unit = await _visible_unit(conn, who, body.org_unit)
        try:
            shape = await build_shape(
                conn,
                geometry=body.geometry,
                radius_m=body.radius_m,
                adcodes=body.adcodes,
                crs=CRS(body.crs),
                repair=mode[0],
                max_repair_area_change=mode[1],
            )
        except FenceInputError as exc:
            hint = _repair_hint(exc.problem, mode)
            extra = {"problem": exc.problem} if exc.problem else {}
            raise bad_request(exc.code, f"{exc}{hint}", **extra) from exc
        fence = await geo.create_fence(
            conn,
            name=body.name,
            kind=body.kind,
            org_unit_id=unit.id,
            geometry_id=shape.geometry_id,
            circle=shape.circle,
            adcodes=body.adcodes,
            source_crs=body.crs,
            schedule=body.schedule.model_dump() if body.schedule else None,
            created_by=who.officer_id,
        )
    return json_response(fence_json(fence, unit.code, shape.repairs), status=201)


@routes.get("/api/v1/geofences/{id}")
async def get_geofence(request: web.Request) -> web.Response:
    who = await officer(request)
    fence_id = int_param(request, "id")
    async with request.app[POOL].acquire() as conn:
        try:
            fence = await geo.get_fence(conn, fence_id)
        except NotFound as exc:
            raise not_found(f"geofence {fence_id}") from exc
        if not who.sees(fence.org_unit_id) and fence.org_unit_id not in (
            await org_units.lineage_ids(conn, who.org_unit_id)
        ):
            raise not_found(f"geofence {fence_id}")
        unit = await org_units.get_by_id(conn, fence.org_unit_id)
        out = fence_json(fence, unit.code)
        if fence.geometry_id is not None:
            out["geometry"] = shape_as_geojson(await geo.load_geometry(conn, fence.geometry_id))
    return json_response(out)


@routes.get("/api/v1/geofences")
async def list_geofences(request: web.Request) -> web.Response:
    who = await officer(request)
    async with request.app[POOL].acquire() as conn:
        scope = who.scope
        if scope is not None:
            scope = scope | await org_units.lineage_ids(conn, who.org_unit_id)
        fences = await geo.list_fences(conn, scope)
        codes = await org_units.codes_by_id(conn, list({f.org_unit_id for f in fences}))
    return json_response({"geofences": [fence_json(f, codes[f.org_unit_id]) for f in fences]})


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
    station's time zone once that is known (:func:`local_day`).

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


def local_day(value: date | datetime, timezone: str) -> date:
    """The calendar day ``value`` falls on in ``timezone`` (a plain date is that day)."""
    if isinstance(value, datetime):
        return value.astimezone(zoneinfo.ZoneInfo(timezone)).date()
    return value


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


async def _check_fences(
    conn: asyncpg.Connection, who: Principal, body: SubjectIn, unit_id: int
) -> None:
    """The fences exist, are of the right kind, and are usable for a subject of ``unit_id``:
    defined within the caller's jurisdiction or by a unit above the subject's station (a
    county's activity area serves every station of the county)."""
    wanted = set(body.exclusion_zone_ids)
    if body.activity_area_id is not None:
        wanted.add(body.activity_area_id)
    found = {f.id: f for f in await geo.get_fences(conn, wanted)}
    for fence_id in sorted(wanted - found.keys()):
        raise bad_request("unknown_geofence", f"geofence {fence_id} does not exist")
    if body.activity_area_id is not None:
        area = found[body.activity_area_id]
        if area.kind != "activity_area":
            raise bad_request(
                "wrong_geofence_kind",
                f"geofence {area.id} is a {area.kind!r} fence, not an activity_area",
            )
    for zone_id in body.exclusion_zone_ids:
        if found[zone_id].kind != "exclusion":
            raise bad_request(
                "wrong_geofence_kind",
                f"geofence {zone_id} is a {found[zone_id].kind!r} fence, not an exclusion zone",
            )
    lineage = await org_units.lineage_ids(conn, unit_id)
    for fence in found.values():
        if not who.sees(fence.org_unit_id) and fence.org_unit_id not in lineage:
            raise bad_request("unknown_geofence", f"geofence {fence.id} does not exist")


async def _check_responsible(conn: asyncpg.Connection, who: Principal, body: SubjectIn) -> None:
    """The responsible officer and supervisor must exist within the caller's jurisdiction."""
    for field, officer_id in (
        ("responsible_officer_id", body.responsible_officer_id),
        ("responsible_supervisor_id", body.responsible_supervisor_id),
    ):
        if officer_id is None:
            continue
        message = f"{field}: officer {officer_id} does not exist"
        try:
            found = await officers.get_by_id(conn, officer_id)
        except NotFound as exc:
            raise bad_request("unknown_officer", message) from exc
        # Someone outside the jurisdiction is answered alike: their existence is not revealed.
        if not found.active or not who.sees(found.org_unit_id):
            raise bad_request("unknown_officer", message)


@routes.post("/api/v1/subjects")
async def create_subject(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    body = parse_model(SubjectIn, await read_object(request))
    if body.curfew is not None and body.home is None:
        raise bad_request("invalid_request", "a curfew needs a home to be kept at")
    policy = request.app[POLICY]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        unit = await _visible_unit(conn, who, body.org_unit)
        try:
            term_start = local_day(body.term_start, unit.timezone)
            term_end = local_day(body.term_end, unit.timezone)
        except OverflowError as exc:
            raise bad_request("invalid_request", "a term date is out of range") from exc
        if term_end < term_start:
            raise bad_request("invalid_request", "term_end is before term_start")
        await _check_fences(conn, who, body, unit.id)
        await _check_responsible(conn, who, body)
        home = None
        if body.home is not None:
            try:
                lon, lat = circle_centre(
                    {"coordinates": [body.home.lon, body.home.lat]}, CRS(body.home.crs)
                )
            except FenceInputError as exc:
                raise bad_request("invalid_request", str(exc)) from exc
            home = Home(lon, lat, body.home.radius_m or policy.default_home_radius_m)
        subject = await subjects.create(
            conn,
            name=body.name,
            org_unit_id=unit.id,
            level=body.supervision_level,
            category=body.category,
            term_start=term_start,
            term_end=term_end,
            activity_area_id=body.activity_area_id,
            exclusion_zone_ids=sorted(set(body.exclusion_zone_ids)),
            home=home,
            home_crs=body.home.crs if body.home else None,
            curfew_start=parse_clock(body.curfew.start) if body.curfew else None,
            curfew_end=parse_clock(body.curfew.end) if body.curfew else None,
            responsible_officer_id=body.responsible_officer_id or who.officer_id,
            responsible_supervisor_id=body.responsible_supervisor_id,
        )
    return json_response(subject.to_json(unit.code), status=201)


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
    async with request.app[POOL].acquire() as conn:
        found = await subjects.list_in(conn, who.scope, limit=limit, offset=offset)
        codes = await org_units.codes_by_id(conn, list({s.org_unit_id for s in found}))
    return json_response({"subjects": [s.to_json(codes[s.org_unit_id]) for s in found]})


@routes.get("/api/v1/subjects/{id}")
async def get_subject(request: web.Request) -> web.Response:
    who = await officer(request)
    subject_id = int_param(request, "id")
    async with request.app[POOL].acquire() as conn:
        subject = await visible_subject(conn, who, subject_id)
        unit = await org_units.get_by_id(conn, subject.org_unit_id)
    return json_response(subject.to_json(unit.code))


# --- devices ---------------------------------------------------------------------------------


class DeviceIn(BaseModel):
    platform: str | None = Field(default=None, max_length=64)


def _new_osmand_id() -> str:
    # Traccar Client's identifier field is typed on a phone: keep it short and numeric.
    return str(secrets.randbelow(9 * 10**9) + 10**9)


@routes.post("/api/v1/subjects/{id}/devices")
async def enrol_device(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    subject_id = int_param(request, "id")
    raw = await request.read()
    body = parse_model(DeviceIn, await read_object(request)) if raw.strip() else DeviceIn()
    async with request.app[POOL].acquire() as conn:
        await visible_subject(conn, who, subject_id)
        for _attempt in range(5):
            token, osmand_id = new_token(), _new_osmand_id()
            try:
                device_id = await subjects.enrol_device(
                    conn, subject_id, token_hash(token), osmand_id, body.platform
                )
                break
            except AlreadyExists:
                continue
        else:
            raise ApiError(503, "try_again", "could not allocate a device identifier; retry")
    return json_response(
        {
            "device_id": device_id,
            "token": token,
            "osmand_id": osmand_id,
            "subject_id": subject_id,
            "platform": body.platform,
        },
        status=201,
    )


@routes.get("/api/v1/subjects/{id}/devices")
async def list_devices(request: web.Request) -> web.Response:
    who = await officer(request)
    subject_id = int_param(request, "id")
    async with request.app[POOL].acquire() as conn:
        await visible_subject(conn, who, subject_id)
        rows = await subjects.list_devices(conn, subject_id)
    return json_response(
        {
            "devices": [
                {
                    "device_id": r["id"],
                    "osmand_id": r["osmand_id"],
                    "platform": r["platform"],
                    "created_at": r["created_at"].isoformat(),
                    "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
                }
                for r in rows
            ]
        }
    )


@routes.delete("/api/v1/subjects/{id}/devices/{device_id}")
async def revoke_device(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    subject_id = int_param(request, "id")
    device_id = int_param(request, "device_id")
    async with request.app[POOL].acquire() as conn:
        await visible_subject(conn, who, subject_id)
        try:
            await subjects.revoke_device(conn, subject_id, device_id)
        except NotFound as exc:
            raise not_found(f"device {device_id}") from exc
    # This process forgets it now; the others within DeviceDirectory.watch_every_s.
    request.app[DEVICES].forget({device_id})
    return web.Response(status=204)
