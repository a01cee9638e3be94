"""Officers and their bearer tokens in PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from correction_monitor.adapters.errors import AlreadyExists, NotFound
from correction_monitor.domain.models import Officer

_COLUMNS = "id, username, password_hash, role, org_unit_id, active"
GET_BY_USERNAME = f"SELECT {_COLUMNS} FROM officers WHERE username = $1"
GET_BY_ID = f"SELECT {_COLUMNS} FROM officers WHERE id = $1"
INSERT = f"""
INSERT INTO officers (username, password_hash, role, org_unit_id, display_name)
VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}
"""
INSERT_DIGEST = (
    "INSERT INTO officer_tokens (token_hash, officer_id, expires_at) VALUES ($1, $2, $3)"
)
BY_DIGEST = f"""
SELECT {", ".join("o." + c for c in _COLUMNS.split(", "))}
FROM officer_tokens t JOIN officers o ON o.id = t.officer_id
WHERE t.token_hash = $1 AND t.expires_at > now() AND o.active
"""
PURGE_EXPIRED = "DELETE FROM officer_tokens WHERE expires_at < now() - interval '1 day'"
# Revocation deletes the row: a token is valid exactly while its row says so.
REVOKE = "DELETE FROM officer_tokens WHERE token_hash = $1 RETURNING officer_id"
EXPIRES_AT = "SELECT expires_at FROM officer_tokens WHERE token_hash = $1"
LIVE = """
SELECT t.token_hash FROM officer_tokens t JOIN officers o ON o.id = t.officer_id
WHERE t.token_hash = ANY($1::bytea[]) AND t.expires_at > now() AND o.active
"""


def _officer(row: asyncpg.Record) -> Officer:
    return Officer(
        row["id"],
        row["username"],
        row["password_hash"],
        row["role"],
        row["org_unit_id"],
        row["active"],
    )


async def get_by_username(conn: asyncpg.Connection, username: str) -> Officer:
    row = await conn.fetchrow(GET_BY_USERNAME, username)
    if row is None:
        raise NotFound(f"officer {username!r}")
    return _officer(row)


async def get_by_id(conn: asyncpg.Connection, officer_id: int) -> Officer:
    row = await conn.fetchrow(GET_BY_ID, officer_id)
    if row is None:
        raise NotFound(f"officer {officer_id}")
    return _officer(row)


async def create(
    conn: asyncpg.Connection,
    username: str,
    password_hash: str,
    role: str,
    org_unit_id: int,
    display_name: str | None = None,
) -> Officer:
    try:
        row = await conn.fetchrow(INSERT, username, password_hash, role, org_unit_id, display_name)
    except asyncpg.UniqueViolationError as exc:
        raise AlreadyExists(f"officer {username!r} exists already") from exc
    assert row is not None
    return _officer(row)


async def store_token(
    conn: asyncpg.Connection, digest: bytes, officer_id: int, expires_at: datetime
) -> None:
    await conn.execute(INSERT_DIGEST, digest, officer_id, expires_at)


async def by_token(conn: asyncpg.Connection, digest: bytes) -> Officer | None:
    """The active officer holding this unexpired token, if any."""
    row = await conn.fetchrow(BY_DIGEST, digest)
    return _officer(row) if row is not None else None


async def purge_expired_tokens(conn: asyncpg.Connection) -> None:
    await conn.execute(PURGE_EXPIRED)


async def revoke_token(conn: asyncpg.Connection, digest: bytes) -> bool:
    """Revoke a token at once; False when there was no such token."""
    return await conn.fetchval(REVOKE, digest) is not None


async def token_expires_at(conn: asyncpg.Connection, digest: bytes) -> datetime | None:
    """When this token expires, or None when there is no such token (revoked)."""
    value: datetime | None = await conn.fetchval(EXPIRES_AT, digest)
    return value


async def live_tokens(conn: asyncpg.Connection, digests: list[bytes]) -> set[bytes]:
    """Those of ``digests`` that still authenticate an active officer (neither expired,
    revoked, nor held by a deactivated officer), in one query."""
    return {bytes(row["token_hash"]) for row in await conn.fetch(LIVE, digests)}
