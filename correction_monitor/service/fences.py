"""Fences: turning an officer's fence request into a stored, shared WGS-84 geometry, and
reading fences back within the caller's jurisdiction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.models import GeofenceRecord, NewFence
from correction_monitor.service.command import Command
from correction_monitor.service.errors import InvalidInput, NotFound
from correction_monitor.service.jurisdiction import visible_unit
from correction_monitor.service.repositories import GeoRepository
from correction_monitor.service.unit_of_work import UnitOfWork
from geofences.crs import CRS, to_wgs84
from geofences.errors import GeometryError, UnknownAdcodeError
from geofences.geojson import parse_geometry, union_areas

MAX_RADIUS_M = 200_000.0


class FenceInputError(ValueError):
    """The fence request is unusable; ``code`` is the API error slug."""

    def __init__(self, code: str, message: str, problem: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        # The kernel's slug for geometry problems ("self_intersection", ...), when known.
        self.problem = problem


@dataclass(frozen=True, slots=True)
class FenceShape:
    """A validated fence shape: a shared polygon (by geometry id) or a circle."""

    geometry_id: int | None
    circle: tuple[float, float, float] | None  # (lon, lat) WGS-84, radius metres
    repairs: tuple[str, ...] = ()


def circle_centre(point: Any, crs: CRS) -> tuple[float, float]:
    """The WGS-84 (lon, lat) of a GeoJSON Point given in ``crs``."""
    coords = point.get("coordinates") if isinstance(point, dict) else None
    if (
        not isinstance(coords, list)
        or len(coords) < 2
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coords[:2])
    ):
        raise FenceInputError("invalid_geometry", "a Point needs coordinates [lon, lat]")
    lon, lat = float(coords[0]), float(coords[1])
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise FenceInputError(
            "invalid_geometry", f"Point coordinates [{lon}, {lat}] are out of range (lon, lat)"
        )
    wlon, wlat = to_wgs84(lon, lat, crs)
    return float(wlon), float(wlat)


async def build_shape(
    geo: GeoRepository,
    *,
    geometry: dict[str, Any] | None,
    radius_m: float | None,
    adcodes: list[str] | None,
    crs: CRS,
    repair: bool,
    max_repair_area_change: float | None = None,
) -> FenceShape:
    """Validate and store the shape of a fence given exactly one way."""
    given = [x is not None for x in (geometry, adcodes)]
    if sum(given) != 1:
        raise FenceInputError(
            "invalid_request",
            "give exactly one of 'geometry' (with 'radius_m' for a Point) or 'adcodes'",
        )
    if adcodes is not None:
        if not adcodes or not all(isinstance(c, str) and c for c in adcodes):
            raise FenceInputError("invalid_request", "'adcodes' must be a non-empty list of codes")
        areas = await geo.admin_area_shapes()
        try:
            union: BaseGeometry = union_areas(areas, adcodes)
        except UnknownAdcodeError as exc:
            raise FenceInputError("unknown_adcode", str(exc)) from exc
        return FenceShape(await geo.store_geometry(union), None)
    assert geometry is not None
    if not isinstance(geometry, dict):
        raise FenceInputError("invalid_geometry", "'geometry' must be a GeoJSON object")
    if geometry.get("type") == "Point":
        if radius_m is None:
            raise FenceInputError(
                "invalid_request", "a Point geometry needs a top-level 'radius_m'"
            )
        if not (0 < radius_m <= MAX_RADIUS_M):
            raise FenceInputError(
                "invalid_request", f"'radius_m' must be in (0, {MAX_RADIUS_M:.0f}] metres"
            )
        lon, lat = circle_centre(geometry, crs)
        return FenceShape(None, (lon, lat, float(radius_m)))
    if radius_m is not None:
        raise FenceInputError("invalid_request", "'radius_m' applies only to a Point geometry")
    try:
        parsed = parse_geometry(
            geometry, crs=crs, repair=repair, max_repair_area_change=max_repair_area_change
        )
    except GeometryError as exc:
        raise FenceInputError("invalid_geometry", str(exc), exc.problem) from exc
    return FenceShape(await geo.store_geometry(parsed.geometry), None, parsed.repairs)


def shape_as_geojson(geometry: BaseGeometry) -> dict[str, Any]:
    mapping: dict[str, Any] = shapely.geometry.mapping(geometry)  # type: ignore[no-untyped-call,unused-ignore]
    return mapping


@dataclass(frozen=True, slots=True)
class PlacedFence:
    """A fence with the code of its org unit, the repairs made to its shape when it was
    created, and its polygon when it was read with it."""

    fence: GeofenceRecord
    org_code: str
    repairs: tuple[str, ...] = ()
    geometry: BaseGeometry | None = None


@dataclass(frozen=True, slots=True)
class CreateFence(Command[PlacedFence]):
    """Define a fence for an org unit of the caller's jurisdiction, given exactly one way:
    a GeoJSON Polygon or MultiPolygon, a Point with ``radius_m`` (metres), or ``adcodes`` of
    imported areas. ``repair`` and ``max_repair_area_change`` say which invalid polygons may
    be rebuilt (see ``geofences.geojson.parse_geometry``)."""

    actor: Principal
    name: str
    kind: str
    org_unit: str
    geometry: dict[str, Any] | None = None
    radius_m: float | None = None
    adcodes: tuple[str, ...] | None = None
    crs: CRS = CRS.WGS84
    schedule: dict[str, Any] | None = None
    repair: bool = True
    max_repair_area_change: float | None = None
    request_id: str | None = None


async def create_fence(command: CreateFence, uow: UnitOfWork) -> PlacedFence:
    """Store the fence; InvalidInput (with the kernel's ``problem`` slug when it named one)
    for an unusable shape."""
    who = command.actor
    async with uow:
        unit = await visible_unit(uow, who, command.org_unit)
        try:
            shape = await build_shape(
                uow.geo,
                geometry=command.geometry,
                radius_m=command.radius_m,
                adcodes=list(command.adcodes) if command.adcodes is not None else None,
                crs=command.crs,
                repair=command.repair,
                max_repair_area_change=command.max_repair_area_change,
            )
        except FenceInputError as exc:
            extra = {"problem": exc.problem} if exc.problem else {}
            raise InvalidInput(exc.code, str(exc), **extra) from exc
        fence = await uow.geo.add_fence(
            NewFence(
                name=command.name,
                kind=command.kind,
                org_unit_id=unit.id,
                geometry_id=shape.geometry_id,
                circle=shape.circle,
                adcodes=command.adcodes,
                source_crs=command.crs.value,
                schedule=command.schedule,
                created_by=who.officer_id,
            )
        )
        uow.audit(
            officer_id=who.officer_id,
            action="fence.create",
            request_id=command.request_id,
            detail={"fence_id": fence.id, "kind": fence.kind, "org_unit": unit.code},
        )
        uow.emit(
            DomainEvent(
                EventName.FENCE_CREATED,
                unit.id,
                data={"fence_id": fence.id, "kind": fence.kind, "name": fence.name},
            )
        )
    return PlacedFence(fence, unit.code, shape.repairs)


async def _usable_by(uow: UnitOfWork, who: Principal) -> frozenset[int] | None:
    """Org units whose fences ``who`` may read: their jurisdiction and the units above their
    own (a county's activity area serves its stations). None: every unit."""
    if who.scope is None:
        return None
    return who.scope | await uow.org_units.lineage_ids(who.org_unit_id)


@dataclass(frozen=True, slots=True)
class GetFence(Command[PlacedFence]):
    """One fence, with its polygon (None for a circle)."""

    actor: Principal
    fence_id: int


async def get_fence(command: GetFence, uow: UnitOfWork) -> PlacedFence:
    async with uow:
        try:
            fence = await uow.geo.get_fence(command.fence_id)
        except stored.NotFound as exc:
            raise NotFound(f"geofence {command.fence_id}") from exc
        usable = await _usable_by(uow, command.actor)
        if usable is not None and fence.org_unit_id not in usable:
            raise NotFound(f"geofence {command.fence_id}")
        unit = await uow.org_units.get(fence.org_unit_id)
        geometry = None
        if fence.geometry_id is not None:
            geometry = await uow.geo.load_geometry(fence.geometry_id)
    return PlacedFence(fence, unit.code, geometry=geometry)


@dataclass(frozen=True, slots=True)
class ListFences(Command[list[PlacedFence]]):
    """The fences the caller may use, by id (without their polygons)."""

    actor: Principal


async def list_fences(command: ListFences, uow: UnitOfWork) -> list[PlacedFence]:
    async with uow:
        fences = await uow.geo.list_fences(await _usable_by(uow, command.actor))
        codes = await uow.org_units.codes_by_id(f.org_unit_id for f in fences)
    return [PlacedFence(f, codes[f.org_unit_id]) for f in fences]
