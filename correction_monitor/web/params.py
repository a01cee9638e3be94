"""What a request names in its path (row ids) and its query (filters)."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from correction_monitor.web.errors import bad_request, not_found

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


def choice_query(request: web.Request, name: str, allowed: frozenset[str]) -> str | None:
    """A query filter among ``allowed``; None when absent, 400 naming it otherwise."""
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise bad_request("invalid_request", f"{name} must be one of {sorted(allowed)}")
    return value


def id_query(request: web.Request, name: str, *, also: str = "") -> int | None:
    """A row-id filter from the query; None when absent, 0 when it cannot name any row (so
    nothing matches), 400 when it is no integer (``also`` names another accepted word)."""
    raw = request.query.get(name) or None
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        accepted = f"an integer or {also!r}" if also else "an integer"
        raise bad_request("invalid_request", f"{name} must be {accepted}")
    value = int(raw)
    return value if 0 < value <= PG_INT_MAX else 0
