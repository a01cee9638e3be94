"""What a request names in its path: row ids."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

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
