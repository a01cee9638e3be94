"""Field conversions shared by the phone protocol decoders: times to UTC, units to SI.

Pure functions on already-parsed values; each returns None when the value cannot be used,
so every decoder chooses its own rejection reason (or leniency) for the same failure.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

KNOT_MPS: Final = 1852.0 / 3600.0
"""One knot in metres per second (the international nautical mile is exactly 1852 m)."""
KMH_MPS: Final = 1000.0 / 3600.0
"""One kilometre per hour in metres per second."""


def json_number(value: object) -> float | None:
    """Return a JSON number as a finite float, or None.

    Booleans are not numbers here although Python treats them as ints: ``"lat": true`` is
    a client bug, not latitude 1.

    Examples
    --------
    >>> json_number(3), json_number(2.5), json_number(True), json_number("1")
    (3.0, 2.5, None, None)
    """
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        return float(value)
    return None


def text_number(text: str) -> float | None:
    """Parse a decimal number sent as text (query strings), finite only.

    Examples
    --------
    >>> text_number("42.06288"), text_number(" 1e3 "), text_number("nan"), text_number("x")
    (42.06288, 1000.0, None, None)
    """
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def on_earth(lat: float, lon: float) -> bool:
    """Whether (lat, lon) in degrees is a point on the earth; False for NaN or infinity.

    Examples
    --------
    >>> on_earth(39.9, 116.4), on_earth(90.0, -180.0), on_earth(91.0, 0.0)
    (True, True, False)
    """
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


FAST_EPOCH_MS_LIMIT: Final = 4_102_444_800_000  # 2100-01-01T00:00Z


def from_epoch_ms(milliseconds: int) -> datetime | None:
    """UTC datetime for integer milliseconds since 1970-01-01T00:00Z; None when out of range.

    Exact to the millisecond: between 1970 and 2100 ``ms / 1000`` is within 0.5 µs of the
    true value, so ``fromtimestamp``'s rounding to whole microseconds recovers it (and is
    twice as fast as timedelta arithmetic); other times take the exact integer path.

    Examples
    --------
    >>> from_epoch_ms(1442068686579).isoformat()
    '2015-09-12T14:38:06.579000+00:00'
    """
    if 0 <= milliseconds < FAST_EPOCH_MS_LIMIT:
        return datetime.fromtimestamp(milliseconds / 1000, UTC)
    try:
        return UNIX_EPOCH + timedelta(milliseconds=milliseconds)
    except OverflowError:
        return None


def from_epoch_s(seconds: float) -> datetime | None:
    """UTC datetime for seconds since 1970-01-01T00:00Z; None when out of range.

    Examples
    --------
    >>> from_epoch_s(1377177267).isoformat()
    '2013-08-22T13:14:27+00:00'
    """
    try:
        return UNIX_EPOCH + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return None


def parse_iso8601(text: str, naive_tz: tzinfo | None) -> datetime | None:
    """Parse an ISO-8601 date-time to an aware UTC datetime.

    Parameters
    ----------
    text
        e.g. ``2025-06-15T13:45:12.862Z`` or ``2016-01-27T18:55:47+08:00``.
    naive_tz
        Zone assumed for a time written without offset; None refuses such times.

    Returns
    -------
    datetime or None
        UTC datetime, or None when unreadable, naive with ``naive_tz`` None, or out of range.

    Examples
    --------
    >>> parse_iso8601("2016-01-27T18:55:47+08:00", None).isoformat()
    '2016-01-27T10:55:47+00:00'
    >>> parse_iso8601("2016-01-27T18:55:47", None) is None
    True
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        if naive_tz is None:
            return None
        parsed = parsed.replace(tzinfo=naive_tz)
    return to_utc(parsed)


def to_utc(moment: datetime) -> datetime | None:
    """Convert an aware datetime to UTC; None when the result falls outside years 1..9999."""
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def bearing_or_none(degrees: float | None) -> float | None:
    """A course in degrees clockwise from north in [0, 360), or None when unknown.

    Phones report -1 for "no course" (iOS ``CLLocation.course``, OwnTracks ``cog``); a
    value of exactly 360 is north.

    Examples
    --------
    >>> bearing_or_none(360.0), bearing_or_none(-1.0), bearing_or_none(400.0)
    (0.0, None, None)
    """
    if degrees is None or not 0.0 <= degrees <= 360.0:
        return None
    return 0.0 if degrees == 360.0 else degrees


def percent_or_none(percent: float | None) -> float | None:
    """A battery level in percent within [0, 100], or None (iOS reports -1 when unknown).

    Examples
    --------
    >>> percent_or_none(87.0), percent_or_none(-1.0), percent_or_none(101.0)
    (87.0, None, None)
    """
    if percent is None or not 0.0 <= percent <= 100.0:
        return None
    return percent


def non_negative_or_none(value: float | None) -> float | None:
    """The value when zero or more, else None (iOS and OwnTracks send -1 for "unknown").

    Examples
    --------
    >>> non_negative_or_none(0.0), non_negative_or_none(-1.0)
    (0.0, None)
    """
    if value is None or value < 0.0:
        return None
    return value


def positive_or_none(value: float | None) -> float | None:
    """The value when strictly positive, else None.

    Third-party clients send 0 or -1 for an accuracy they do not know (Android
    ``Location.getAccuracy()`` is 0 without accuracy; iOS uses negative values), and no
    receiver reports a perfect fix.

    Examples
    --------
    >>> positive_or_none(5.0), positive_or_none(0.0), positive_or_none(-1.0)
    (5.0, None, None)
    """
    if value is None or value <= 0.0:
        return None
    return value
