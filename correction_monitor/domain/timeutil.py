"""Instants as the API accepts them: ISO-8601 with an offset, or epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, time


class BadInstant(ValueError):
    """A time value that is neither ISO-8601 with an offset nor epoch milliseconds."""


def parse_instant(value: str | int | float) -> datetime:
    """Parse an instant into an aware UTC datetime.

    >>> parse_instant("2026-11-20T08:00:00+08:00").isoformat()
    '2026-11-20T00:00:00+00:00'
    >>> parse_instant(0).isoformat()
    '1970-01-01T00:00:00+00:00'
    """
    if isinstance(value, bool):
        raise BadInstant("a boolean is not a time")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    text = value.strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000.0, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInstant(f"{value!r} is not ISO-8601 or epoch milliseconds") from exc
    if parsed.tzinfo is None:
        raise BadInstant(f"{value!r} has no UTC offset; add one (e.g. Z or +08:00)")
    return parsed.astimezone(UTC)


def parse_clock(value: str) -> time:
    """Parse ``HH:MM`` (24-hour local clock time)."""
    try:
        hours, minutes = value.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise BadInstant(f"{value!r} is not a HH:MM clock time") from exc


def iso(ts: datetime | None) -> str | None:
    """ISO-8601 with offset (UTC shown as ``Z``)."""
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
