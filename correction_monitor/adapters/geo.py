"""Shared geometries, administrative areas and geofences in PostgreSQL.

A polygon is stored once, keyed by the SHA-256 of its WKB (WGS-84); every area and fence that
uses it points at the same row, and every process keeps one decoded copy of it in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import asyncpg
import shapely
from shapely.geometry.base import BaseGeometry

from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.models import AdminAreaRecord, GeofenceRecord, NewFence
from geofences.geojson import AdminArea

INSERT_GEOMETRY = """
INSERT INTO geometries (sha256, wkb, vertices, min_lon, min_lat, max_lon, max_lat)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (sha256) DO NOTHING
RETURNING id
"""
GEOMETRY_ID = "SELECT id FROM geometries WHERE sha256 = $1"
GET_GEOMETRY = "SELECT wkb FROM geometries WHERE id = $1"
GET_GEOMETRY_DIGEST = "SELECT sha256 FROM geometries WHERE id = $1"
UPSERT_AREA = """
INSERT INTO admin_areas (adcode, name, parent_adcode, level, geometry_id, source_crs)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (adcode) DO UPDATE SET
    name = EXCLUDED.name, parent_adcode = EXCLUDED.parent_adcode, level = EXCLUDED.level,
    geometry_id = EXCLUDED.geometry_id, source_crs = EXCLUDED.source_crs, imported_at = now()
"""
ALL_AREAS = """
SELECT a.adcode, a.name, a.parent_adcode, a.level, a.geometry_id, g.sha256
FROM admin_areas a JOIN geometries g ON g.id = a.geometry_id
"""
_FENCE_COLUMNS = (
    "id, name, kind, org_unit_id, geometry_id, center_lon, center_lat, radius_m, adcodes, "
    "source_crs, schedule"
)
INSERT_FENCE = f"""
INSERT INTO geofences (name, kind, org_unit_id, geometry_id, center_lon, center_lat, radius_m,
                       adcodes, source_crs, schedule, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING {_FENCE_COLUMNS}
"""
GET_FENCE = f"SELECT {_FENCE_COLUMNS} FROM geofences WHERE id = $1"
GET_FENCES = f"SELECT {_FENCE_COLUMNS} FROM geofences WHERE id = ANY($1::int[])"
LIST_FENCES = f"""
SELECT {_FENCE_COLUMNS} FROM geofences
WHERE ($1::int[] IS NULL OR org_unit_id = ANY($1::int[])) ORDER BY id
"""

_geometry_cache: dict[bytes, BaseGeometry] = {}


async def store_geometry(conn: asyncpg.Connection, geometry: BaseGeometry) -> int:
    """Store a WGS-84 geometry once; returns the id of the (possibly pre-existing) row."""
    wkb = shapely.to_wkb(shapely.normalize(geometry))
    digest = hashlib.sha256(wkb).digest()
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    geometry_id: int | None = await conn.fetchval(
        INSERT_GEOMETRY,
        digest,
        wkb,
        int(shapely.get_num_coordinates(geometry)),
        min_lon,
        min_lat,
        max_lon,
        max_lat,
    )
    if geometry_id is None:
        # Stored already. Read it in a statement of its own: when a concurrent transaction
        # committed the same geometry while the INSERT waited on it, the row is invisible to
        # the INSERT's snapshot (which is why one UPSERT-and-SELECT statement could find none).
        geometry_id = await conn.fetchval(GEOMETRY_ID, digest)
        assert geometry_id is not None
    return geometry_id


async def load_geometry(
    conn: asyncpg.Connection, geometry_id: int, digest: bytes | None = None
) -> BaseGeometry:
    """The geometry, decoded once per process and shared by every caller.

    The cache is keyed by the geometry's content hash, not its row id, so processes (or
    tests) talking to several databases can never mix two databases' shapes. Callers that
    already read the hash (``admin_area_shapes``) pass it and save the lookup.
    """
    if digest is None:
        digest = await conn.fetchval(GET_GEOMETRY_DIGEST, geometry_id)
        if digest is None:
            raise NotFound(f"geometry {geometry_id}")
    cached = _geometry_cache.get(bytes(digest))
    if cached is not None:
        return cached
    wkb = await conn.fetchval(GET_GEOMETRY, geometry_id)
    geometry = shapely.from_wkb(wkb)
    shapely.prepare(geometry)
    _geometry_cache[bytes(digest)] = geometry
    return geometry


async def upsert_admin_area(
    conn: asyncpg.Connection,
    *,
    adcode: str,
    name: str | None,
    parent_adcode: str | None,
    level: str | None,
    geometry_id: int,
    source_crs: str,
) -> None:
    await conn.execute(UPSERT_AREA, adcode, name, parent_adcode, level, geometry_id, source_crs)


def _area(row: asyncpg.Record) -> AdminAreaRecord:
    return AdminAreaRecord(
        adcode=row["adcode"],
        name=row["name"],
        parent_adcode=row["parent_adcode"],
        level=row["level"],
        geometry_id=row["geometry_id"],
    )


async def admin_areas(conn: asyncpg.Connection) -> list[AdminAreaRecord]:
    return [_area(r) for r in await conn.fetch(ALL_AREAS)]


async def admin_area_shapes(conn: asyncpg.Connection) -> dict[str, AdminArea]:
    """Every imported area with its boundary, by adcode (boundaries decoded once per
    process, see :func:`load_geometry`)."""
    areas = {}
    for row in await conn.fetch(ALL_AREAS):
        geometry = await load_geometry(conn, row["geometry_id"], bytes(row["sha256"]))
        areas[row["adcode"]] = AdminArea(
            adcode=row["adcode"],
            name=row["name"],
            parent_adcode=row["parent_adcode"],
            level=row["level"],
            geometry=geometry,  # type: ignore[arg-type,unused-ignore]
        )
    return areas


def _fence(row: asyncpg.Record) -> GeofenceRecord:
    return GeofenceRecord(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        org_unit_id=row["org_unit_id"],
        geometry_id=row["geometry_id"],
        center_lon=row["center_lon"],
        center_lat=row["center_lat"],
        radius_m=row["radius_m"],
        adcodes=tuple(row["adcodes"]) if row["adcodes"] is not None else None,
        source_crs=row["source_crs"],
        schedule=row["schedule"],
    )


async def create_fence(conn: asyncpg.Connection, new: NewFence) -> GeofenceRecord:
    lon, lat, radius = new.circle if new.circle is not None else (None, None, None)
    row = await conn.fetchrow(
        INSERT_FENCE,
        new.name,
        new.kind,
        new.org_unit_id,
        new.geometry_id,
        lon,
        lat,
        radius,
        list(new.adcodes) if new.adcodes is not None else None,
        new.source_crs,
        new.schedule,
        new.created_by,
    )
    assert row is not None
    return _fence(row)


async def get_fence(conn: asyncpg.Connection, fence_id: int) -> GeofenceRecord:
    row = await conn.fetchrow(GET_FENCE, fence_id)
    if row is None:
        raise NotFound(f"geofence {fence_id}")
    return _fence(row)


async def get_fences(conn: asyncpg.Connection, ids: Iterable[int]) -> list[GeofenceRecord]:
    return [_fence(r) for r in await conn.fetch(GET_FENCES, list(ids))]


async def list_fences(
    conn: asyncpg.Connection, org_unit_ids: Iterable[int] | None
) -> list[GeofenceRecord]:
    ids = list(org_unit_ids) if org_unit_ids is not None else None
    return [_fence(r) for r in await conn.fetch(LIST_FENCES, ids)]
