"""Subjects (社区矫正对象), their exclusion zones and their enrolled devices."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from correction_monitor.adapters.errors import AlreadyExists, NotFound
from correction_monitor.domain.models import (
    Curfew,
    Device,
    Home,
    NewSubject,
    Subject,
    SubjectCategory,
    SubjectContact,
    SupervisionLevel,
)

_COLUMNS = """
s.id, s.name, s.org_unit_id, s.supervision_level, s.category, s.term_start, s.term_end,
s.activity_area_id, s.home_lon, s.home_lat, s.home_radius_m, s.curfew_start, s.curfew_end,
s.responsible_officer_id, s.responsible_supervisor_id, s.status, s.created_at,
COALESCE((SELECT array_agg(z.geofence_id ORDER BY z.geofence_id)
          FROM subject_exclusion_zones z WHERE z.subject_id = s.id), '{}') AS exclusion_zone_ids
"""
INSERT = """
INSERT INTO subjects (name, org_unit_id, supervision_level, category, term_start, term_end,
    activity_area_id, home_lon, home_lat, home_radius_m, home_crs, curfew_start, curfew_end,
    responsible_officer_id, responsible_supervisor_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
RETURNING id
"""
INSERT_ZONES = """
INSERT INTO subject_exclusion_zones (subject_id, geofence_id)
SELECT $1, unnest($2::int[])
"""
# Every subject gets its evaluation-state row at once, so ingestion only ever locks rows.
INSERT_EVAL_STATE = "INSERT INTO subject_eval_state (subject_id) VALUES ($1)"
GET = f"SELECT {_COLUMNS} FROM subjects s WHERE s.id = $1"
GET_FOR_UPDATE = f"SELECT {_COLUMNS} FROM subjects s WHERE s.id = $1 FOR UPDATE OF s"
UPDATE_SUPERVISION = """
UPDATE subjects SET supervision_level = $2, responsible_officer_id = $3,
    responsible_supervisor_id = $4
WHERE id = $1 RETURNING id
"""
GET_MANY = f"SELECT {_COLUMNS} FROM subjects s WHERE s.id = ANY($1::int[])"
LIST = f"""
SELECT {_COLUMNS} FROM subjects s
WHERE ($1::int[] IS NULL OR s.org_unit_id = ANY($1::int[])) ORDER BY s.id LIMIT $2 OFFSET $3
"""
_DEVICE_COLUMNS = "id, subject_id, osmand_id, platform, created_at, revoked_at"
INSERT_DEVICE = f"""
INSERT INTO devices (subject_id, token_hash, osmand_id, platform) VALUES ($1, $2, $3, $4)
RETURNING {_DEVICE_COLUMNS}
"""
DEVICE_BY_DIGEST = """
SELECT d.id, d.subject_id, d.osmand_id, s.org_unit_id FROM devices d
JOIN subjects s ON s.id = d.subject_id
WHERE d.token_hash = $1 AND d.revoked_at IS NULL
"""
DEVICE_BY_OSMAND_ID = """
SELECT d.id, d.subject_id, d.osmand_id, s.org_unit_id, d.token_hash FROM devices d
JOIN subjects s ON s.id = d.subject_id
WHERE d.osmand_id = $1 AND d.revoked_at IS NULL
"""
REVOKE_DEVICE = f"""
UPDATE devices SET revoked_at = now() WHERE id = $1 AND subject_id = $2 AND revoked_at IS NULL
RETURNING {_DEVICE_COLUMNS}
"""
REVOKED_SINCE = """
SELECT id, revoked_at FROM devices WHERE revoked_at > $1 ORDER BY revoked_at
"""
LIST_DEVICES = f"""
SELECT {_DEVICE_COLUMNS} FROM devices WHERE subject_id = $1 ORDER BY id
"""
CONTACT = """
SELECT state->'ref' AS ref, max_fix_ts, last_contact_at, lost_contact_since,
       lost_contact_total_s
FROM subject_eval_state WHERE subject_id = $1
"""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """An enrolled, unrevoked device and the subject it reports for."""

    device_id: int
    subject_id: int
    osmand_id: str
    org_unit_id: int


def _subject(row: asyncpg.Record) -> Subject:
    home = None
    if row["home_lon"] is not None:
        home = Home(row["home_lon"], row["home_lat"], row["home_radius_m"])
    curfew = None
    if row["curfew_start"] is not None:
        curfew = Curfew(row["curfew_start"], row["curfew_end"])
    return Subject(
        id=row["id"],
        name=row["name"],
        org_unit_id=row["org_unit_id"],
        supervision_level=SupervisionLevel(row["supervision_level"]),
        category=SubjectCategory(row["category"]),
        term_start=row["term_start"],
        term_end=row["term_end"],
        activity_area_id=row["activity_area_id"],
        exclusion_zone_ids=tuple(row["exclusion_zone_ids"]),
        home=home,
        curfew=curfew,
        responsible_officer_id=row["responsible_officer_id"],
        responsible_supervisor_id=row["responsible_supervisor_id"],
        status=row["status"],
        created_at=row["created_at"],
    )


def _device(row: asyncpg.Record) -> Device:
    return Device(
        id=row["id"],
        subject_id=row["subject_id"],
        osmand_id=row["osmand_id"],
        platform=row["platform"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def create(conn: asyncpg.Connection, new: NewSubject) -> Subject:
    home, curfew = new.home, new.curfew
    subject_id: int = await conn.fetchval(
        INSERT,
        new.name,
        new.org_unit_id,
        new.supervision_level.value,
        new.category.value,
        new.term_start,
        new.term_end,
        new.activity_area_id,
        home.lon if home else None,
        home.lat if home else None,
        home.radius_m if home else None,
        new.home_crs,
        curfew.start if curfew else None,
        curfew.end if curfew else None,
        new.responsible_officer_id,
        new.responsible_supervisor_id,
    )
    if new.exclusion_zone_ids:
        await conn.execute(INSERT_ZONES, subject_id, sorted(set(new.exclusion_zone_ids)))
    await conn.execute(INSERT_EVAL_STATE, subject_id)
    return await get(conn, subject_id)


async def get(conn: asyncpg.Connection, subject_id: int, *, for_update: bool = False) -> Subject:
    """The subject; with ``for_update`` its row stays locked until the transaction ends."""
    row = await conn.fetchrow(GET_FOR_UPDATE if for_update else GET, subject_id)
    if row is None:
        raise NotFound(f"subject {subject_id}")
    return _subject(row)


async def update_supervision(
    conn: asyncpg.Connection,
    subject_id: int,
    *,
    supervision_level: SupervisionLevel,
    responsible_officer_id: int | None,
    responsible_supervisor_id: int | None,
) -> Subject:
    """Set the subject's level and responsible officer and supervisor; the subject after."""
    found = await conn.fetchval(
        UPDATE_SUPERVISION,
        subject_id,
        supervision_level.value,
        responsible_officer_id,
        responsible_supervisor_id,
    )
    if found is None:
        raise NotFound(f"subject {subject_id}")
    return await get(conn, subject_id)


async def get_many(conn: asyncpg.Connection, subject_ids: list[int]) -> dict[int, Subject]:
    """The subjects of these ids that exist, by id (one query)."""
    return {r["id"]: _subject(r) for r in await conn.fetch(GET_MANY, subject_ids)}


async def list_in(
    conn: asyncpg.Connection, org_unit_ids: Iterable[int] | None, *, limit: int, offset: int
) -> list[Subject]:
    ids = list(org_unit_ids) if org_unit_ids is not None else None
    return [_subject(r) for r in await conn.fetch(LIST, ids, limit, offset)]


async def enrol_device(
    conn: asyncpg.Connection, subject_id: int, digest: bytes, osmand_id: str, platform: str | None
) -> Device:
    """Store a device; AlreadyExists when its token or OsmAnd id is taken.

    The insert runs in a savepoint of its own, so that inside the caller's transaction (a
    unit of work's, which is plain SQL: no ``conn.transaction()`` in it) a collision costs
    only this statement and the caller may try other identifiers.
    """
    await conn.execute("SAVEPOINT enrol_device")
    try:
        row = await conn.fetchrow(INSERT_DEVICE, subject_id, digest, osmand_id, platform)
    except asyncpg.UniqueViolationError as exc:
        await conn.execute("ROLLBACK TO SAVEPOINT enrol_device")
        raise AlreadyExists("device identifier collision; retry") from exc
    await conn.execute("RELEASE SAVEPOINT enrol_device")
    assert row is not None
    return _device(row)


async def device_by_token(conn: asyncpg.Connection, digest: bytes) -> DeviceIdentity | None:
    row = await conn.fetchrow(DEVICE_BY_DIGEST, digest)
    if row is None:
        return None
    return DeviceIdentity(row["id"], row["subject_id"], row["osmand_id"], row["org_unit_id"])


async def device_by_osmand_id(
    conn: asyncpg.Connection, osmand_id: str
) -> tuple[DeviceIdentity, bytes] | None:
    row = await conn.fetchrow(DEVICE_BY_OSMAND_ID, osmand_id)
    if row is None:
        return None
    identity = DeviceIdentity(row["id"], row["subject_id"], row["osmand_id"], row["org_unit_id"])
    return identity, bytes(row["token_hash"])


async def revoke_device(conn: asyncpg.Connection, subject_id: int, device_id: int) -> Device:
    """Revoke a device of this subject; NotFound when it has no such unrevoked device."""
    row = await conn.fetchrow(REVOKE_DEVICE, device_id, subject_id)
    if row is None:
        raise NotFound(f"device {device_id}")
    return _device(row)


async def revoked_since(conn: asyncpg.Connection, since: datetime) -> list[tuple[int, datetime]]:
    """Devices revoked after ``since``: (device id, revoked_at), oldest first."""
    return [(r["id"], r["revoked_at"]) for r in await conn.fetch(REVOKED_SINCE, since)]


async def list_devices(conn: asyncpg.Connection, subject_id: int) -> list[Device]:
    return [_device(r) for r in await conn.fetch(LIST_DEVICES, subject_id)]


async def contact(conn: asyncpg.Connection, subject_id: int) -> SubjectContact | None:
    """What evaluation last recorded of the subject's contact; None without a state row."""
    row = await conn.fetchrow(CONTACT, subject_id)
    if row is None:
        return None
    ref = row["ref"]
    return SubjectContact(
        reference=(ref[0], ref[1], ref[2], ref[3]) if ref else None,
        last_fix_at=row["max_fix_ts"],
        last_contact_at=row["last_contact_at"],
        lost_contact_since=row["lost_contact_since"],
        lost_contact_total_s=row["lost_contact_total_s"],
    )
