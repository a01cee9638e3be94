"""Administrative boundaries (行政区划) imported from DataV files, for fences by adcode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from correction_monitor.domain.access import Principal
from correction_monitor.domain.models import AdminAreaRecord
from correction_monitor.service.command import Command
from correction_monitor.service.errors import InvalidInput
from correction_monitor.service.unit_of_work import UnitOfWork
from geofences.crs import CRS
from geofences.errors import GeometryError
from geofences.geojson import AdminArea, parse_datav

# An audit entry names at most this many adcodes (it always has the count).
AUDIT_ADCODES_MAX = 200


@dataclass(frozen=True, slots=True)
class ImportBoundaries(Command[list[AdminArea]]):
    """Store every feature of a DataV FeatureCollection given in ``crs``, replacing earlier
    imports of the same adcodes. ``repair`` and ``max_repair_area_change`` say which invalid
    boundaries may be rebuilt; the areas returned list the repairs made."""

    actor: Principal
    collection: Any
    crs: CRS = CRS.GCJ02
    repair: bool = True
    max_repair_area_change: float | None = None
    request_id: str | None = None


async def import_boundaries(command: ImportBoundaries, uow: UnitOfWork) -> list[AdminArea]:
    data = command.collection
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise InvalidInput("invalid_geojson", "the body must be a GeoJSON FeatureCollection")
    # Parsed before the transaction opens: a large file takes a while and needs no connection.
    try:
        areas = parse_datav(
            data,
            crs=command.crs,
            repair=command.repair,
            max_repair_area_change=command.max_repair_area_change,
        )
    except GeometryError as exc:
        raise InvalidInput(
            "invalid_geometry", str(exc), problem=exc.problem, feature=exc.feature
        ) from exc
    if not areas:
        raise InvalidInput("invalid_geojson", "the FeatureCollection has no features")
    async with uow:
        for area in areas:
            geometry_id = await uow.geo.store_geometry(area.geometry)
            await uow.geo.upsert_admin_area(area, geometry_id, command.crs.value)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="boundaries.import",
            request_id=command.request_id,
            detail={
                "crs": command.crs.value,
                "areas": len(areas),
                "adcodes": [a.adcode for a in areas[:AUDIT_ADCODES_MAX]],
            },
        )
    return areas


@dataclass(frozen=True, slots=True)
class ListBoundaries(Command[list[AdminAreaRecord]]):
    """Every imported area (boundaries are shared by all jurisdictions)."""

    actor: Principal


async def list_boundaries(command: ListBoundaries, uow: UnitOfWork) -> list[AdminAreaRecord]:
    async with uow:
        return await uow.geo.admin_areas()
