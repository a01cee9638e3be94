"""The asyncpg connection pool, with JSON codecs set once for every connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,  # refused or reset connections, and connect timeouts (TimeoutError)
    asyncpg.PostgresConnectionError,  # a session lost mid-query
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # the server ended the session (fast shutdown)
    asyncpg.CrashShutdownError,
)
"""What PostgreSQL being away looks like to a caller: an answer of 503 and a retry, not a bug."""

NOW = "SELECT now()"


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)  # jsonb's binary format: version 1, then the text


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary codecs: orjson bytes go straight to the wire, no str round trip per value.
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "json", encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog", format="binary"
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (``RESET ALL``, ``UNLISTEN *``, ``CLOSE
    ALL``, unlocking advisory locks): this service never changes session state — no ``SET``,
    no ``LISTEN``, advisory locks only transaction-scoped — so that would be a round trip on
    every release for nothing. An open transaction is still rolled back by the pool first."""


async def create_pool(database_url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Open the pool used by the whole process."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def database_now(conn: asyncpg.Connection) -> datetime:
    """The database server's clock (the transaction's start), which stamps rows' times."""
    moment: datetime = await conn.fetchval(NOW)
    return moment
