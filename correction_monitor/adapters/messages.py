"""Messages to subjects' apps in PostgreSQL (``subject_messages``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from correction_monitor.domain.messages import NewMessage, SubjectMessage

_COLUMNS = "id, subject_id, kind, text, data, created_at, read_at, sent_by"

INSERT = f"""
INSERT INTO subject_messages (subject_id, kind, text, data, dedupe_key, sent_by, created_at)
SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::int[],
                     $7::timestamptz[])
ON CONFLICT (subject_id, dedupe_key) DO NOTHING
RETURNING {_COLUMNS}
"""
SINCE = f"""
SELECT {_COLUMNS} FROM subject_messages
WHERE subject_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""
MARK_READ = """
UPDATE subject_messages SET read_at = COALESCE(read_at, $3)
WHERE subject_id = $1 AND id = $2 RETURNING read_at
"""


def _message(row: asyncpg.Record) -> SubjectMessage:
    return SubjectMessage(
        row["id"],
        row["subject_id"],
        row["kind"],
        row["text"],
        row["data"],
        row["created_at"],
        row["read_at"],
        row["sent_by"],
    )


async def add(
    conn: asyncpg.Connection, messages: Sequence[NewMessage], at: datetime
) -> list[SubjectMessage]:
    """Store ``messages`` sent at ``at`` in one statement; those whose dedupe key the subject
    already has are skipped (and not returned)."""
    if not messages:
        return []
    rows = await conn.fetch(
        INSERT,
        [m.subject_id for m in messages],
        [m.kind.value for m in messages],
        [m.text for m in messages],
        [m.data for m in messages],
        [m.dedupe_key for m in messages],
        [m.sent_by for m in messages],
        [at] * len(messages),
    )
    return [_message(row) for row in rows]


async def since(
    conn: asyncpg.Connection, subject_id: int, after_id: int, limit: int
) -> list[SubjectMessage]:
    """The subject's messages with an id above ``after_id``, oldest first."""
    return [_message(row) for row in await conn.fetch(SINCE, subject_id, after_id, limit)]


async def mark_read(
    conn: asyncpg.Connection, subject_id: int, message_id: int, at: datetime
) -> datetime | None:
    """Mark the subject's message read (the first read counts); None when the subject has no
    such message."""
    value: datetime | None = await conn.fetchval(MARK_READ, subject_id, message_id, at)
    return value
