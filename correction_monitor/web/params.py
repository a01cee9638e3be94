"""What a request names in its path: row ids, and the subject such an id names."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from aiohttp import web
from pydantic import Field

from correction_monitor.adapters import subjects
from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.access import Principal
from correction_monitor.domain.models import Subject
from correction_monitor.web.errors import not_found

# Row ids are PostgreSQL ``integer``s: anything outside names no row, and would not even
# reach the database (asyncpg refuses to encode it).
PG_INT_MAX = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=PG_INT_MAX)]
"""A row id in a request body."""


def int_param(request: web.Request, name: str) -> int:
    """A row id from the URL path; anything that cannot be one is a 404."""
    raw = request.match_info[name]
    # isascii: int() would also take "1_000", " 7" and non-ASCII digits.
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= PG_INT_MAX:
        raise not_found(f"{name} {raw!r}")
    return int(raw)


async def visible_subject(conn: asyncpg.Connection, who: Principal, subject_id: int) -> Subject:
    """The subject if the caller's jurisdiction covers it; 404 otherwise (never reveal others).

    For routes that read a subject's data on a connection of their own (track, status); the
    service layer's handlers use ``service.jurisdiction.visible_subject``.
    """
    try:
        subject = await subjects.get(conn, subject_id)
    except NotFound as exc:
        raise not_found(f"subject {subject_id}") from exc
    if not who.sees(subject.org_unit_id):
        raise not_found(f"subject {subject_id}")
    return subject
