"""The event log (the transactional outbox) in PostgreSQL, read in commit order.

Events are appended by the transaction that made their change, as its **last** act:
:func:`append` takes a transaction-scoped advisory lock, draws the ids, and the lock stays
held until that transaction ends. Two transactions appending events therefore draw their ids
one after the other and commit in that same order, so id order is commit order: a reader
that has seen id N will never see a smaller id appear later (with a plain sequence, id 100
could commit after id 101 and a reader resuming after 101 would never see it).

Because the lock is taken after every row lock the transaction holds and nothing is locked
after it, no cycle of waits can form through it. It serialises only the moment between
appending and committing, and only for transactions that have events to write: a group of
fixes that changes no alert never takes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import asyncpg
import orjson

from correction_monitor.domain.events import DomainEvent, StoredEvent


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key derived from a name.

    >>> lock_key("events") == lock_key("events") != lock_key("jobs")
    True
    """
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


ORDER_LOCK = lock_key("cm:events:order")
# The ordering lock and the append in one statement: the lock is taken (the CTE is evaluated
# before the join yields its first row, so before any id is drawn) and the ids drawn in the
# same round trip, leaving only the commit inside the window the lock is held.
APPEND = """
WITH ordered AS MATERIALIZED (SELECT pg_advisory_xact_lock($6))
INSERT INTO events (id, name, org_unit_id, subject_id, alert_id, data)
SELECT nextval('events_id_seq'), u.name, u.org_unit_id, u.subject_id, u.alert_id, u.data
FROM ordered, unnest($1::text[], $2::int[], $3::int[], $4::bigint[], $5::jsonb[])
    WITH ORDINALITY AS u(name, org_unit_id, subject_id, alert_id, data, n)
ORDER BY u.n
RETURNING id
"""
# The same append, and the commit, as one message (the simple protocol: no parameters, the
# events are one JSON constant). The server takes the lock, draws the ids and commits without
# waiting on the caller, so the window the lock is held is the append and the commit's flush
# alone, however busy the caller's process is.
APPEND_AND_COMMIT = """
WITH ordered AS MATERIALIZED (SELECT pg_advisory_xact_lock({lock}))
INSERT INTO events (id, name, org_unit_id, subject_id, alert_id, data)
SELECT nextval('events_id_seq'), e.name, e.org_unit_id, e.subject_id, e.alert_id, e.data
FROM ordered, ROWS FROM (jsonb_to_recordset({events}::jsonb)
        AS (name text, org_unit_id int, subject_id int, alert_id bigint, data jsonb))
    WITH ORDINALITY AS e(name, org_unit_id, subject_id, alert_id, data, n)
ORDER BY e.n;
COMMIT
"""
READ_AFTER = """
SELECT id, name, occurred_at, org_unit_id, subject_id, alert_id, data FROM events
WHERE id > $1 AND ($2::text[] IS NULL OR name = ANY($2::text[]))
ORDER BY id LIMIT $3
"""
LAST_ID = "SELECT COALESCE(max(id), 0) FROM events"
LOCK_CURSOR = """
INSERT INTO event_cursors (consumer) VALUES ($1) ON CONFLICT DO NOTHING
"""
TAKE_CURSOR = """
SELECT position FROM event_cursors WHERE consumer = $1 FOR UPDATE SKIP LOCKED
"""
ADVANCE_CURSOR = """
UPDATE event_cursors SET position = $2, updated_at = now() WHERE consumer = $1
"""
POSITIONS = "SELECT consumer, position FROM event_cursors ORDER BY consumer"


async def append(conn: asyncpg.Connection, events: Sequence[DomainEvent]) -> list[int]:
    """Write ``events`` in order; returns their ids. Must be the transaction's last write
    (see the module docstring): the ordering lock it takes is held until commit."""
    if not events:
        return []
    rows = await conn.fetch(
        APPEND,
        [e.name for e in events],
        [e.org_unit_id for e in events],
        [e.subject_id for e in events],
        [e.alert_id for e in events],
        [e.data for e in events],
        ORDER_LOCK,
    )
    return [r["id"] for r in rows]


def text_constant(text: str) -> str:
    r"""``text`` as an SQL string constant, whatever ``standard_conforming_strings`` is.

    >>> print(text_constant(r"it's a \ b"))
    E'it''s a \\ b'
    """
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


async def append_and_commit(conn: asyncpg.Connection, events: Sequence[DomainEvent]) -> None:
    """Write ``events`` in order (as :func:`append`) and commit the transaction, in one round
    trip. The transaction must be the caller's own ``BEGIN``, not asyncpg's
    ``conn.transaction()``, which would try to commit it again. Nothing is written or
    committed without events."""
    if not events:
        return
    document = orjson.dumps(
        [
            {
                "name": e.name,
                "org_unit_id": e.org_unit_id,
                "subject_id": e.subject_id,
                "alert_id": e.alert_id,
                "data": e.data,
            }
            for e in events
        ]
    ).decode()
    await conn.execute(APPEND_AND_COMMIT.format(lock=ORDER_LOCK, events=text_constant(document)))


async def read_after(
    conn: asyncpg.Connection,
    after_id: int,
    *,
    names: Sequence[str] | None = None,
    limit: int = 500,
) -> list[StoredEvent]:
    """Events after position ``after_id``, oldest first (only ``names`` when given)."""
    rows = await conn.fetch(READ_AFTER, after_id, list(names) if names else None, limit)
    return [StoredEvent(**dict(r)) for r in rows]


async def last_id(conn: asyncpg.Connection) -> int:
    """The newest event's position (0 when the log is empty)."""
    value: int = await conn.fetchval(LAST_ID)
    return value


async def take_cursor(conn: asyncpg.Connection, consumer: str) -> int | None:
    """Lock ``consumer``'s position for this transaction and return it; None when another
    transaction holds it (another process is consuming: let it)."""
    await conn.execute(LOCK_CURSOR, consumer)
    position: int | None = await conn.fetchval(TAKE_CURSOR, consumer)
    return position


async def advance_cursor(conn: asyncpg.Connection, consumer: str, position: int) -> None:
    await conn.execute(ADVANCE_CURSOR, consumer, position)


async def positions(conn: asyncpg.Connection) -> dict[str, int]:
    """Every consumer's position (for metrics and operators)."""
    return {r["consumer"]: r["position"] for r in await conn.fetch(POSITIONS)}


class PostgresEvents:
    """The event log as seen from one unit of work's transaction (``uow.events``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def take_cursor(self, consumer: str) -> int | None:
        return await take_cursor(self._conn, consumer)

    async def advance_cursor(self, consumer: str, position: int) -> None:
        await advance_cursor(self._conn, consumer, position)

    async def read_after(
        self, after_id: int, *, names: Sequence[str] | None = None, limit: int = 500
    ) -> list[StoredEvent]:
        return await read_after(self._conn, after_id, names=names, limit=limit)

    async def last_id(self) -> int:
        return await last_id(self._conn)
