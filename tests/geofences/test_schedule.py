"""Tests for geofences.schedule: weekly windows, midnight crossing, time zones, JSON form."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofences.schedule import Schedule, Window

pytestmark = pytest.mark.unit

WEEKDAYS = frozenset({1, 2, 3, 4, 5})


def utc(local: dt.datetime, tz: str) -> float:
    """Epoch seconds of a naive local wall time in a zone."""
    return local.replace(tzinfo=ZoneInfo(tz)).timestamp()


def night(tz: str, days: frozenset[int] = WEEKDAYS) -> Schedule:
    return Schedule((Window(days, dt.time(22, 0), dt.time(6, 0)),), tz)


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Asia/Urumqi"])
@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (dt.datetime(2024, 1, 1, 21, 59, 59), False),  # Monday, before the window opens
        (dt.datetime(2024, 1, 1, 22, 0, 0), True),  # Monday 22:00: start is inclusive
        (dt.datetime(2024, 1, 2, 0, 30), True),  # Tuesday early morning, Monday's window
        (dt.datetime(2024, 1, 2, 5, 59, 59), True),
        (dt.datetime(2024, 1, 2, 6, 0, 0), False),  # end is exclusive
        (dt.datetime(2024, 1, 6, 2, 0), True),  # Saturday 02:00 belongs to Friday's window
        (dt.datetime(2024, 1, 6, 23, 0), False),  # Saturday evening: not a listed day
        (dt.datetime(2024, 1, 1, 3, 0), False),  # Monday 03:00: Sunday is not listed
        (dt.datetime(2024, 1, 7, 23, 30), False),  # Sunday night
    ],
)
def test_window_crossing_midnight(tz: str, local: dt.datetime, expected: bool) -> None:
    assert night(tz).active_at(utc(local, tz)).tolist() == [expected]


def test_same_instant_differs_between_shanghai_and_urumqi() -> None:
    # 2024-01-01 15:30 UTC is 23:30 in Shanghai (UTC+8) but 21:30 in Urumqi (UTC+6).
    ts = dt.datetime(2024, 1, 1, 15, 30, tzinfo=dt.UTC).timestamp()
    assert night("Asia/Shanghai").active_at(ts).tolist() == [True]
    assert night("Asia/Urumqi").active_at(ts).tolist() == [False]


def test_day_window_and_batch_shape() -> None:
    work = Schedule((Window(frozenset({6, 7}), dt.time(9, 0), dt.time(17, 30)),))
    ts = np.array(
        [
            utc(dt.datetime(2024, 1, 6, 9, 0), "Asia/Shanghai"),
            utc(dt.datetime(2024, 1, 6, 17, 29), "Asia/Shanghai"),
            utc(dt.datetime(2024, 1, 6, 17, 30), "Asia/Shanghai"),
            utc(dt.datetime(2024, 1, 8, 12, 0), "Asia/Shanghai"),
        ]
    )
    assert work.active_at(ts).tolist() == [True, True, False, False]


def test_start_equal_end_is_a_full_day() -> None:
    s = Schedule((Window(frozenset({3}), dt.time(8), dt.time(8)),))
    tz = "Asia/Shanghai"
    got = s.active_at(
        [
            utc(dt.datetime(2024, 1, 3, 7, 59), tz),  # Wednesday before 08:00
            utc(dt.datetime(2024, 1, 3, 8, 0), tz),
            utc(dt.datetime(2024, 1, 4, 7, 59), tz),  # Thursday before 08:00
            utc(dt.datetime(2024, 1, 4, 8, 0), tz),
        ]
    )
    assert got.tolist() == [False, True, True, False]


def test_dst_zone_uses_the_offset_of_each_instant() -> None:
    # Europe/Berlin switches to summer time on 2024-03-31 at 01:00 UTC (02:00 -> 03:00 local).
    s = Schedule((Window(frozenset({7}), dt.time(2, 30), dt.time(3, 30)),), "Europe/Berlin")
    before = dt.datetime(2024, 3, 31, 0, 45, tzinfo=dt.UTC).timestamp()  # 01:45 CET
    after = dt.datetime(2024, 3, 31, 1, 15, tzinfo=dt.UTC).timestamp()  # 03:15 CEST
    assert s.active_at(before).tolist() == [False]
    assert s.active_at(after).tolist() == [True]
    assert s.active_at([before, after]).tolist() == [False, True]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(1.6e9, 1.8e9), min_size=1, max_size=40),
    st.sampled_from(["Asia/Shanghai", "Asia/Urumqi", "Europe/Berlin", "America/New_York"]),
    st.frozensets(st.integers(1, 7), min_size=1),
    st.times(),
    st.times(),
)
def test_vectorised_matches_per_instant_zoneinfo(
    ts: list[float], tz: str, days: frozenset[int], start: dt.time, end: dt.time
) -> None:
    s = Schedule((Window(days, start, end),), tz)
    zone = ZoneInfo(tz)

    def reference(t: float) -> bool:
        local = dt.datetime.fromtimestamp(t, tz=zone)
        now = local.time().replace(tzinfo=None)
        today = local.isoweekday()
        yesterday = (today + 5) % 7 + 1
        if end > start:
            return today in days and start <= now < end
        return (today in days and now >= start) or (yesterday in days and now < end)

    got = s.active_at(np.array(ts))
    assert got.tolist() == [reference(t) for t in ts]
    # Each element alone gives the same answer as in the batch.
    assert [bool(s.active_at(t)[0]) for t in ts] == got.tolist()


def test_from_json_round_trip() -> None:
    data = {
        "windows": [
            {"days": [1, 2, 3, 4, 5], "start": "22:00", "end": "06:00"},
            {"days": [6, 7], "start": "20:00", "end": "24:00"},
        ]
    }
    s = Schedule.from_json(data, "Asia/Urumqi")
    assert s.tz == "Asia/Urumqi"
    assert s.windows[0] == Window(WEEKDAYS, dt.time(22), dt.time(6))
    assert s.windows[1].end == dt.time(0)
    assert s.windows[1].crosses_midnight
    assert Schedule.from_json(s.to_json(), "Asia/Urumqi") == s


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({}, "non-empty list"),
        ({"windows": []}, "non-empty list"),
        ({"windows": ["x"]}, r"windows\[0\] must be an object"),
        ({"windows": [{"days": [1], "start": "22:00"}]}, r"windows\[0\].end"),
        ({"windows": [{"days": [0], "start": "22:00", "end": "06:00"}]}, "ISO numbers"),
        ({"windows": [{"days": [8], "start": "22:00", "end": "06:00"}]}, "ISO numbers"),
        ({"windows": [{"days": [], "start": "22:00", "end": "06:00"}]}, "days"),
        ({"windows": [{"days": [True], "start": "22:00", "end": "06:00"}]}, "days"),
        ({"windows": [{"days": "1", "start": "22:00", "end": "06:00"}]}, "days"),
        ({"windows": [{"days": [1], "start": "24:00", "end": "06:00"}]}, "start"),
        ({"windows": [{"days": [1], "start": "7:00", "end": "06:00"}]}, "HH:MM"),
        ({"windows": [{"days": [1], "start": "22:60", "end": "06:00"}]}, "HH:MM"),
        ({"windows": [{"days": [1], "start": 2200, "end": "06:00"}]}, "string"),
        ({"windows": [{"days": [1], "start": "22:00", "end": "06:00", "x": 1}]}, "unknown"),
    ],
)
def test_from_json_rejects_bad_input(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule.from_json(data)


def test_unknown_zone_and_bad_timestamps() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        night("Asia/Beijing")
    with pytest.raises(ValueError, match="finite"):
        night("Asia/Shanghai").active_at([np.nan])
    with pytest.raises(ValueError, match="non-empty tuple"):
        Schedule(())
