"""Officers and their bearer tokens in PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from correction_monitor.adapters.errors import AlreadyExists, NotFound
from correction_monitor.domain.models import Officer

_COLUMNS = "id, username, password_hash, role, org_unit_id, active, display_name, phone"
GET_BY_USERNAME = f"SELECT {_COLUMNS} FROM officers WHERE username = $1"
GET_BY_ID = f"SELECT {_COLUMNS} FROM officers WHERE id = $1"
LIST = f"""
SELECT {_COLUMNS} FROM officers
WHERE ($1::int[] IS NULL OR org_unit_id = ANY($1::int[])) ORDER BY id
"""
INSERT = f"""
INSERT INTO officers (username, password_hash, role, org_unit_id, display_name, phone)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}
"""
SET_PASSWORD_HASH = "UPDATE officers SET password_hash = $2 WHERE id = $1"  # noqa: S105 - SQL
RECORD_FAILURE = "INSERT INTO login_failures (username, at) VALUES ($1, $2)"
# Newest first: the throttle needs the count and, when it is reached, the tenth newest.
FAILURES_SINCE = """
SELECT at FROM login_failures WHERE username = $1 AND at > $2 ORDER BY at DESC LIMIT $3
"""
PURGE_FAILURES = "DELETE FROM login_failures WHERE at <= $1"
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
        row["display_name"],
        row["phone"],
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
    phone: str | None = None,
) -> Officer:
    try:
        row = await conn.fetchrow(
            INSERT, username, password_hash, role, org_unit_id, display_name, phone
        )
    except asyncpg.UniqueViolationError as exc:
        raise AlreadyExists(f"officer {username!r} exists already") from exc
    assert row is not None
    return _officer(row)


async def list_in(conn: asyncpg.Connection, org_unit_ids: frozenset[int] | None) -> list[Officer]:
    """Officers of these units (all with None), by id."""
    ids = list(org_unit_ids) if org_unit_ids is not None else None
    return [_officer(r) for r in await conn.fetch(LIST, ids)]


async def set_password_hash(conn: asyncpg.Connection, officer_id: int, password_hash: str) -> None:
    await conn.execute(SET_PASSWORD_HASH, officer_id, password_hash)


async def record_login_failure(conn: asyncpg.Connection, username: str, at: datetime) -> None:
    await conn.execute(RECORD_FAILURE, username, at)


async def login_failures_since(
    conn: asyncpg.Connection, username: str, since: datetime, limit: int
) -> list[datetime]:
    """When the last ``limit`` failed logins for ``username`` after ``since`` happened,
    newest first."""
    return [r["at"] for r in await conn.fetch(FAILURES_SINCE, username, since, limit)]


async def purge_login_failures(conn: asyncpg.Connection, before: datetime) -> int:
    """Forget failed logins at or before ``before``; how many were dropped."""
    status: str = await conn.execute(PURGE_FAILURES, before)
    return int(status.split()[-1])


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
