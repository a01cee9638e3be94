"""Creating the first officers and org units from the command line."""

from __future__ import annotations

import zoneinfo

from correction_monitor.adapters import officers, org_units
from correction_monitor.adapters.db import create_pool
from correction_monitor.adapters.errors import AlreadyExists, NotFound
from correction_monitor.domain.access import Role
from correction_monitor.service.auth import hash_password


async def create_officer(
    database_url: str,
    *,
    username: str,
    password: str,
    role: str,
    org_code: str,
    org_name: str | None = None,
    parent_code: str | None = None,
    timezone: str = "Asia/Shanghai",
) -> int:
    """Create an officer, creating their org unit first when it does not exist.

    Raises ValueError with a readable message for a bad role, a duplicate username, an
    unknown parent or a weak password.
    """
    Role(role)  # raises ValueError for an unknown role
    if len(password) < 8:
        raise ValueError("the password must have at least 8 characters")
    zoneinfo.ZoneInfo(timezone)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            try:
                unit = await org_units.get_by_code(conn, org_code)
            except NotFound:
                parent_id = None
                if parent_code is not None:
                    try:
                        parent_id = (await org_units.get_by_code(conn, parent_code)).id
                    except NotFound as exc:
                        raise ValueError(f"parent org unit {parent_code!r} does not exist") from exc
                unit = await org_units.create(
                    conn, org_code, org_name or org_code, parent_id, timezone
                )
            try:
                created = await officers.create(
                    conn, username, hash_password(password), role, unit.id
                )
            except AlreadyExists as exc:
                raise ValueError(str(exc)) from exc
            return created.id
    finally:
        await pool.close()
