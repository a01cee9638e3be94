"""Org units (county bureaus and stations) in PostgreSQL."""

from __future__ import annotations

import asyncpg

from correction_monitor.adapters.errors import AlreadyExists, NotFound
from correction_monitor.domain.models import OrgUnit

_COLUMNS = "id, code, name, parent_id, timezone"
GET_BY_CODE = f"SELECT {_COLUMNS} FROM org_units WHERE code = $1"
GET_BY_ID = f"SELECT {_COLUMNS} FROM org_units WHERE id = $1"
INSERT = f"""
INSERT INTO org_units (code, name, parent_id, timezone) VALUES ($1, $2, $3, $4)
RETURNING {_COLUMNS}
"""
SUBTREE = """
WITH RECURSIVE tree AS (
    SELECT id FROM org_units WHERE id = $1
    UNION ALL
    SELECT o.id FROM org_units o JOIN tree t ON o.parent_id = t.id
)
SELECT id FROM tree
"""
ANCESTORS = """
WITH RECURSIVE up AS (
    SELECT id, parent_id FROM org_units WHERE id = $1
    UNION ALL
    SELECT o.id, o.parent_id FROM org_units o JOIN up ON o.id = up.parent_id
)
SELECT id FROM up
"""
CODES = "SELECT id, code FROM org_units WHERE id = ANY($1::int[])"
ALL = f"SELECT {_COLUMNS} FROM org_units ORDER BY id"


def _unit(row: asyncpg.Record) -> OrgUnit:
    return OrgUnit(row["id"], row["code"], row["name"], row["parent_id"], row["timezone"])


async def get_by_code(conn: asyncpg.Connection, code: str) -> OrgUnit:
    row = await conn.fetchrow(GET_BY_CODE, code)
    if row is None:
        raise NotFound(f"org unit {code!r}")
    return _unit(row)


async def get_by_id(conn: asyncpg.Connection, unit_id: int) -> OrgUnit:
    row = await conn.fetchrow(GET_BY_ID, unit_id)
    if row is None:
        raise NotFound(f"org unit {unit_id}")
    return _unit(row)


async def create(
    conn: asyncpg.Connection, code: str, name: str, parent_id: int | None, timezone: str
) -> OrgUnit:
    try:
        row = await conn.fetchrow(INSERT, code, name, parent_id, timezone)
    except asyncpg.UniqueViolationError as exc:
        raise AlreadyExists(f"org unit {code!r} exists already") from exc
    assert row is not None
    return _unit(row)


async def subtree_ids(conn: asyncpg.Connection, root_id: int) -> frozenset[int]:
    """Ids of the unit and every unit below it."""
    return frozenset(r["id"] for r in await conn.fetch(SUBTREE, root_id))


async def lineage_ids(conn: asyncpg.Connection, unit_id: int) -> frozenset[int]:
    """Ids of the unit and every unit above it (station → county → ...)."""
    return frozenset(r["id"] for r in await conn.fetch(ANCESTORS, unit_id))


async def all_units(conn: asyncpg.Connection) -> list[OrgUnit]:
    """Every org unit, oldest first (a province has a few thousand at most)."""
    return [_unit(r) for r in await conn.fetch(ALL)]


async def codes_by_id(conn: asyncpg.Connection, ids: list[int]) -> dict[int, str]:
    return {r["id"]: r["code"] for r in await conn.fetch(CODES, ids)}
