"""Turning an officer's fence request into a stored, shared WGS-84 geometry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import shapely
from shapely.geometry.base import BaseGeometry

from correction_monitor.adapters import geo
from geofences.crs import CRS, to_wgs84
from geofences.errors import GeometryError, UnknownAdcodeError
from geofences.geojson import AdminArea, parse_geometry, union_areas

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


async def load_admin_areas(conn: asyncpg.Connection) -> dict[str, AdminArea]:
    areas = {}
    for row in await geo.admin_area_rows(conn):
        geometry = await geo.load_geometry(conn, row["geometry_id"], bytes(row["sha256"]))
        areas[row["adcode"]] = AdminArea(
            adcode=row["adcode"],
            name=row["name"],
            parent_adcode=row["parent_adcode"],
            level=row["level"],
            geometry=geometry,  # type: ignore[arg-type,unused-ignore]
        )
    return areas


async def build_shape(
    conn: asyncpg.Connection,
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
        areas = await load_admin_areas(conn)
        try:
            union: BaseGeometry = union_areas(areas, adcodes)
        except UnknownAdcodeError as exc:
            raise FenceInputError("unknown_adcode", str(exc)) from exc
        return FenceShape(await geo.store_geometry(conn, union), None)
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
    return FenceShape(await geo.store_geometry(conn, parsed.geometry), None, parsed.repairs)


def shape_as_geojson(geometry: BaseGeometry) -> dict[str, Any]:
    mapping: dict[str, Any] = shapely.geometry.mapping(geometry)  # type: ignore[no-untyped-call,unused-ignore]
    return mapping
