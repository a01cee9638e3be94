"""Weekly time windows in a station's local time zone, evaluated on UTC timestamps.

An exclusion zone may be active only at certain hours (a court 禁止令 that forbids a bar after
22:00, say) and a curfew window says when the subject must be home. A :class:`Schedule` is a set
of weekly :class:`Window` objects in one IANA time zone; :meth:`Schedule.active_at` answers, for an
array of UTC epoch seconds, whether any window is open.

A window lists ISO weekdays (1 = Monday ... 7 = Sunday), a local start and a local end time; the
start is inclusive and the end exclusive. A window whose end is not after its start crosses
midnight: it opens on a listed day at ``start`` and closes the next day at ``end`` (so
``start == end`` is a full 24 hours). Local wall time is derived from the UTC instant, so in zones
with daylight saving time a wall-clock hour that occurs twice is active twice and a skipped hour is
never active.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

__all__ = ["Schedule", "Window"]

_DAY_S = 86_400
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# 1970-01-01 was a Thursday, ISO weekday 4: weekday(day index d) = (d + 3) % 7 + 1.
_EPOCH_ISO_OFFSET = 3


def _seconds(t: dt.time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


@dataclass(frozen=True, slots=True)
class Window:
    """One weekly window of local time.

    Parameters
    ----------
    days : frozenset of int
        ISO weekdays on which the window opens (1 = Monday ... 7 = Sunday).
    start : datetime.time
        Local opening time, inclusive.
    end : datetime.time
        Local closing time, exclusive. When ``end <= start`` the window closes on the next day.
    """

    days: frozenset[int]
    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if not self.days:
            raise ValueError("a window needs at least one weekday")
        bad = sorted(d for d in self.days if isinstance(d, bool) or d not in range(1, 8))
        if bad:
            raise ValueError(f"weekdays must be ISO numbers 1 (Mon) to 7 (Sun), got {bad}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, dt.time) or value.tzinfo is not None:
                raise ValueError(f"window {name} must be a naive datetime.time, got {value!r}")

    @property
    def crosses_midnight(self) -> bool:
        """True when the window closes on the day after it opens."""
        return self.end <= self.start

    @property
    def day_mask(self) -> int:
        """The weekdays as a bit mask, bit ``d`` set for ISO weekday ``d``."""
        return sum(1 << d for d in self.days)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Weekly windows in one IANA time zone.

    Parameters
    ----------
    windows : tuple of Window
        At least one window; the schedule is active when any window is open.
    tz : str
        IANA zone name of the station, ``"Asia/Shanghai"`` by default (Xinjiang stations use
        ``"Asia/Urumqi"``).

    Examples
    --------
    >>> import datetime as dt
    >>> s = Schedule((Window(frozenset({1, 2, 3, 4, 5}), dt.time(22), dt.time(6)),))
    >>> # Monday 2024-01-01 23:00 in Shanghai is 15:00 UTC.
    >>> bool(s.active_at(dt.datetime(2024, 1, 1, 15, tzinfo=dt.UTC).timestamp())[0])
    True
    """

    windows: tuple[Window, ...]
    tz: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if not isinstance(self.windows, tuple) or not self.windows:
            raise ValueError(
                "a schedule needs a non-empty tuple of windows (use no schedule for always active)"
            )
        if not all(isinstance(w, Window) for w in self.windows):
            raise ValueError("schedule windows must be Window objects")
        _zone(self.tz)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone as a :class:`zoneinfo.ZoneInfo`."""
        return _zone(self.tz)

    def active_at(self, ts: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether any window is open at each instant.

        Parameters
        ----------
        ts : float or array_like of float
            Instants as UTC epoch seconds.

        Returns
        -------
        numpy.ndarray of bool
            One flag per instant (a 1-element array for a scalar input).

        Raises
        ------
        ValueError
            If a timestamp is not finite.
        """
        t = np.atleast_1d(np.asarray(ts, dtype=np.float64))
        if t.ndim != 1:
            raise ValueError("timestamps must be a scalar or a 1-D array")
        if not np.all(np.isfinite(t)):
            raise ValueError("timestamps must be finite UTC epoch seconds")
        local = t + _utc_offsets(self.zone, t)
        day = np.floor(local / _DAY_S)
        sod = local - day * _DAY_S
        weekday = ((day.astype(np.int64) + _EPOCH_ISO_OFFSET) % 7 + 1).astype(np.int64)
        prev_weekday = (weekday + 5) % 7 + 1
        active = np.zeros(t.shape, dtype=np.bool_)
        for w in self.windows:
            mask = w.day_mask
            today = ((mask >> weekday) & 1).astype(np.bool_)
            start, end = _seconds(w.start), _seconds(w.end)
            if w.crosses_midnight:
                yesterday = ((mask >> prev_weekday) & 1).astype(np.bool_)
                active |= (today & (sod >= start)) | (yesterday & (sod < end))
            else:
                active |= today & (sod >= start) & (sod < end)
        return active

    @classmethod
    def from_json(cls, data: Any, tz: str = "Asia/Shanghai") -> Schedule:
        """Build a schedule from its JSON form.

        Parameters
        ----------
        data : dict
            ``{"windows": [{"days": [1, 2, 3], "start": "HH:MM", "end": "HH:MM"}, ...]}``;
            ``"24:00"`` is accepted as an end time and means midnight.
        tz : str
            IANA zone name.

        Raises
        ------
        ValueError
            With a message naming the offending window and field.
        """
        if not isinstance(data, Mapping):
            raise ValueError("schedule must be a JSON object with a 'windows' list")
        raw = data.get("windows")
        if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
            raise ValueError("schedule 'windows' must be a non-empty list")
        windows = []
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping):
                raise ValueError(f"windows[{i}] must be an object with days, start and end")
            unknown = set(item) - {"days", "start", "end"}
            if unknown:
                raise ValueError(f"windows[{i}] has unknown fields {sorted(unknown)}")
            days = item.get("days")
            if (
                not isinstance(days, Sequence)
                or isinstance(days, str)
                or not days
                or not all(isinstance(d, int) and not isinstance(d, bool) for d in days)
            ):
                raise ValueError(f"windows[{i}].days must be a non-empty list of integers 1..7")
            try:
                windows.append(
                    Window(
                        frozenset(days),
                        _parse_hhmm(item.get("start"), f"windows[{i}].start", allow_24=False),
                        _parse_hhmm(item.get("end"), f"windows[{i}].end", allow_24=True),
                    )
                )
            except ValueError as exc:
                raise ValueError(f"windows[{i}]: {exc}") from exc
        return cls(tuple(windows), tz)

    def to_json(self) -> dict[str, Any]:
        """The JSON form accepted by :meth:`from_json` (without the zone)."""
        return {
            "windows": [
                {
                    "days": sorted(w.days),
                    "start": w.start.strftime("%H:%M"),
                    "end": w.end.strftime("%H:%M"),
                }
                for w in self.windows
            ]
        }


def _parse_hhmm(value: object, where: str, *, allow_24: bool) -> dt.time:
    if allow_24 and value == "24:00":
        return dt.time(0, 0)
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string 'HH:MM', got {value!r}")
    m = _HHMM.match(value)
    if m is None:
        raise ValueError(f"{where} must be 'HH:MM' (00:00-23:59), got {value!r}")
    return dt.time(int(m.group(1)), int(m.group(2)))


def _zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValueError(f"time zone must be an IANA name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _offset_at(zone: ZoneInfo, ts: float) -> float:
    offset = dt.datetime.fromtimestamp(ts, tz=zone).utcoffset()
    assert offset is not None
    return offset.total_seconds()


def _utc_offsets(zone: ZoneInfo, ts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """UTC offset in seconds at each instant.

    Offsets are looked up once per distinct UTC day rather than once per instant; only days on
    which the offset changes (a DST switch, at most a few per year) fall back to a per-instant
    lookup, so large batches stay vectorised without assuming a fixed offset. This relies on a
    zone changing its offset at most once per UTC day, which holds for every IANA zone.
    """
    days = np.floor(ts / _DAY_S)
    uniq, inverse = np.unique(days, return_inverse=True)
    starts = np.array([_offset_at(zone, float(d) * _DAY_S) for d in uniq])
    # Sample the end of each day too: a change within the day shows up as a difference.
    ends = np.array([_offset_at(zone, float(d) * _DAY_S + _DAY_S - 1) for d in uniq])
    offsets = starts[inverse]
    changing = (starts != ends)[inverse]
    if np.any(changing):
        idx = np.flatnonzero(changing)
        offsets[idx] = [_offset_at(zone, float(ts[i])) for i in idx]
    return offsets
