"""Check-ins in the domain: windows laid out in local time, challenge draws, answers'
outcomes."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from correction_monitor.domain.checkins import (
    ALGORITHM,
    Checkin,
    CheckinKind,
    CheckinStatus,
    DrawInputs,
    Face,
    Reason,
    Slot,
    allowed_starts,
    decide,
    draw_times,
    leave_days,
    new_seed,
    period_bounds,
    periods_meeting,
    stationary,
    wholly_outside,
    window_slots,
    windows_from_json,
    windows_to_json,
)
from correction_monitor.domain.timeutil import iso
from correction_monitor.policy import CheckinWindow, load_policy

pytestmark = pytest.mark.unit

EVERY_DAY = frozenset(range(1, 8))


def _slots(
    windows: object,
    timezone: str,
    start: datetime,
    end: datetime,
    *,
    term: tuple[date, date] = (date(2026, 1, 1), date(2027, 12, 31)),
    skip_days: frozenset[date] = frozenset(),
) -> list[Slot]:
    return window_slots(
        windows,  # type: ignore[arg-type]
        timezone,
        term_start=term[0],
        term_end=term[1],
        start=start,
        end=end,
        skip_days=skip_days,
    )


def _utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def _pairs(slots: list[Slot]) -> list[tuple[str | None, str | None]]:
    return [(iso(s.opens_at), iso(s.closes_at)) for s in slots]


# ------------------------------------------------------------------------- windows


def test_strict_level_has_two_windows_a_day_in_beijing_time() -> None:
    strict = load_policy().level("strict")
    slots = _slots(
        strict.checkin_windows,
        "Asia/Shanghai",
        start=_utc(2026, 3, 1, 16),  # local midnight, 2 March
        end=_utc(2026, 3, 3, 16),
    )
    assert _pairs(slots) == [
        ("2026-03-02T01:00:00Z", "2026-03-02T04:00:00Z"),
        ("2026-03-02T11:00:00Z", "2026-03-02T14:00:00Z"),
        ("2026-03-03T01:00:00Z", "2026-03-03T04:00:00Z"),
        ("2026-03-03T11:00:00Z", "2026-03-03T14:00:00Z"),
    ]


def test_normal_has_one_window_a_day_and_lenient_one_a_week_on_mondays() -> None:
    policy = load_policy()
    start, end = _utc(2026, 3, 1), _utc(2026, 3, 15)
    normal = _slots(policy.level("normal").checkin_windows, "Asia/Shanghai", start, end)
    lenient = _slots(policy.level("lenient").checkin_windows, "Asia/Shanghai", start, end)
    assert len(normal) == 14
    assert [s.opens_at.astimezone(ZoneInfo("Asia/Shanghai")).isoweekday() for s in lenient] == [
        1,
        1,
    ]


def test_urumqi_is_utc_plus_six_all_year() -> None:
    window = CheckinWindow(EVERY_DAY, time(9), time(12))
    for month in (1, 4, 7, 10):
        (slot,) = _slots(
            [window],
            "Asia/Urumqi",
            start=_utc(2026, month, 10),
            end=_utc(2026, month, 11),
        )
        assert _pairs([slot]) == [
            (f"2026-{month:02d}-10T03:00:00Z", f"2026-{month:02d}-10T06:00:00Z")
        ]


def test_berlin_windows_follow_daylight_saving_time() -> None:
    window = CheckinWindow(EVERY_DAY, time(19), time(22))
    slots = _slots([window], "Europe/Berlin", start=_utc(2026, 3, 28), end=_utc(2026, 3, 30))
    # 28 March is CET (UTC+1); clocks go forward on 29 March (CEST, UTC+2).
    assert _pairs(slots) == [
        ("2026-03-28T18:00:00Z", "2026-03-28T21:00:00Z"),
        ("2026-03-29T17:00:00Z", "2026-03-29T20:00:00Z"),
    ]


def test_a_window_in_the_dst_gap_is_shortened_and_an_empty_one_is_not_laid_out() -> None:
    gap = CheckinWindow(EVERY_DAY, time(2), time(3))
    slots = _slots([gap], "Europe/Berlin", start=_utc(2026, 3, 28), end=_utc(2026, 3, 31))
    opening_days = [s.opens_at.date() for s in slots]
    assert date(2026, 3, 29) not in opening_days
    assert len(slots) == 2
    across = CheckinWindow(EVERY_DAY, time(1), time(4))
    (short,) = _slots(
        [across], "Europe/Berlin", start=_utc(2026, 3, 28, 23), end=_utc(2026, 3, 29, 12)
    )
    assert short.closes_at - short.opens_at == timedelta(hours=2)


def test_a_window_whose_end_is_not_after_its_start_closes_the_next_day() -> None:
    night = CheckinWindow(EVERY_DAY, time(22), time(2))
    (slot,) = _slots([night], "Asia/Shanghai", start=_utc(2026, 3, 1, 12), end=_utc(2026, 3, 2, 12))
    assert _pairs([slot]) == [("2026-03-01T14:00:00Z", "2026-03-01T18:00:00Z")]


def test_windows_lie_within_the_term_by_local_days() -> None:
    window = CheckinWindow(EVERY_DAY, time(9), time(12))
    slots = _slots(
        [window],
        "Asia/Shanghai",
        term=(date(2026, 3, 2), date(2026, 3, 3)),
        start=_utc(2026, 2, 28),
        end=_utc(2026, 3, 6),
    )
    assert _pairs(slots) == [
        ("2026-03-02T01:00:00Z", "2026-03-02T04:00:00Z"),
        ("2026-03-03T01:00:00Z", "2026-03-03T04:00:00Z"),
    ]


def test_windows_open_within_the_span_half_open() -> None:
    window = CheckinWindow(EVERY_DAY, time(9), time(12))
    opening = _utc(2026, 3, 2, 1)
    assert _slots([window], "Asia/Shanghai", start=opening, end=opening) == []
    assert (
        len(_slots([window], "Asia/Shanghai", start=opening, end=opening + timedelta(seconds=1)))
        == 1
    )
    assert (
        _slots(
            [window],
            "Asia/Shanghai",
            start=opening + timedelta(seconds=1),
            end=opening + timedelta(days=1),
        )
        == []
    )


def test_leave_days_are_skipped() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    # 10:00 on 3 March to 09:00 on 4 March, Beijing time: both days are leave days.
    leave = (_utc(2026, 3, 3, 2), _utc(2026, 3, 4, 1))
    days = leave_days([leave], zone)
    assert days == {date(2026, 3, 3), date(2026, 3, 4)}
    window = CheckinWindow(EVERY_DAY, time(19), time(22))
    slots = _slots(
        [window],
        "Asia/Shanghai",
        start=_utc(2026, 3, 1, 16),
        end=_utc(2026, 3, 5, 16),
        skip_days=days,
    )
    local_days = [s.opens_at.astimezone(zone).date().day for s in slots]
    assert local_days == [2, 5]


def test_windows_round_trip_through_json() -> None:
    windows = (
        CheckinWindow(frozenset({1, 3}), time(8, 30), time(9)),
        CheckinWindow(EVERY_DAY, time(22), time(1)),
    )
    assert windows_from_json(windows_to_json(windows)) == windows
    with pytest.raises(ValueError, match="weekdays"):
        windows_from_json([{"days": [0], "start": "08:00", "end": "09:00"}])


# ------------------------------------------------------------------------- periods


@pytest.mark.parametrize(
    ("period", "first", "after"),
    [
        ("day", "2026-03-03T16:00:00Z", "2026-03-04T16:00:00Z"),
        ("week", "2026-03-01T16:00:00Z", "2026-03-08T16:00:00Z"),
        ("month", "2026-02-28T16:00:00Z", "2026-03-31T16:00:00Z"),
    ],
)
def test_periods_start_at_local_midnight(period: str, first: str, after: str) -> None:
    bounds = period_bounds(period, _utc(2026, 3, 4, 12), "Asia/Shanghai")
    assert (iso(bounds.opens_at), iso(bounds.closes_at)) == (first, after)


def test_periods_meeting_a_span_follow_each_other() -> None:
    found = periods_meeting("day", _utc(2026, 3, 1, 12), _utc(2026, 3, 3, 17), "Asia/Shanghai")
    assert len(found) == 4  # 1 to 4 March, Beijing time
    assert all(a.closes_at == b.opens_at for a, b in itertools.pairwise(found))
    with pytest.raises(ValueError, match="period"):
        period_bounds("year", _utc(2026, 3, 1), "UTC")


# ------------------------------------------------------------------------- draws


def _inputs(**changes: object) -> DrawInputs:
    base = DrawInputs(
        timezone="Asia/Shanghai",
        period="day",
        period_start=_utc(2026, 3, 1, 16),
        period_end=_utc(2026, 3, 2, 16),
        not_before=_utc(2026, 3, 1, 16),
        count=1,
        answer_s=1800,
        waking_start=time(8),
        waking_end=time(21),
        curfew=None,
        term_start=date(2026, 1, 1),
        term_end=date(2027, 12, 31),
    )
    return DrawInputs(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


def _local(moment: datetime, tz: str = "Asia/Shanghai") -> time:
    return moment.astimezone(ZoneInfo(tz)).time()


def test_a_draw_is_re_derived_from_its_stored_seed_and_inputs() -> None:
    seed = new_seed()
    assert len(seed) == 32
    inputs = _inputs(count=3)
    times = draw_times(seed, inputs)
    stored: dict[str, Any] = {"seed": seed, "algorithm": ALGORITHM, "inputs": inputs.to_json()}
    # What an auditor does with the stored row: parse the inputs back, draw again.
    assert DrawInputs.from_json(stored["inputs"]) == inputs
    assert draw_times(stored["seed"], DrawInputs.from_json(stored["inputs"])) == times
    assert len(times) == 3


def test_the_draw_is_fixed_for_a_given_seed() -> None:
    """A regression pin: the algorithm's output for a known seed never changes (auditors
    re-derive old draws with newer releases)."""
    times = draw_times("0123456789abcdef0123456789abcdef", _inputs(count=2))
    assert [iso(t) for t in times] == FIXED_DRAW


FIXED_DRAW = ["2026-03-02T07:23:53Z", "2026-03-02T11:35:24Z"]


def test_seeds_differ_and_draws_with_them() -> None:
    draws = {tuple(draw_times(new_seed(), _inputs())) for _ in range(20)}
    assert len(draws) > 15


def test_challenges_lie_in_waking_hours_outside_curfew_and_clear_of_each_other() -> None:
    inputs = _inputs(count=4, curfew=(time(18), time(9)), answer_s=3600)
    for _ in range(200):
        times = draw_times(new_seed(), inputs)
        assert len(times) == 4
        for t in times:
            start, end = _local(t), _local(t + timedelta(seconds=3600))
            # Waking 08:00–21:00 minus curfew 18:00–09:00: the hour fits in 09:00–18:00.
            assert time(9) <= start, start
            assert end <= time(18), end
        assert all((b - a).total_seconds() >= 3600 for a, b in itertools.pairwise(times))


def test_challenges_keep_clear_of_scheduled_windows_where_they_can() -> None:
    avoid = (
        Slot(_utc(2026, 3, 2, 1), _utc(2026, 3, 2, 4)),  # 09:00–12:00
        Slot(_utc(2026, 3, 2, 11), _utc(2026, 3, 2, 14)),  # 19:00–22:00
    )
    inputs = _inputs(count=2, avoid=avoid)
    for _ in range(200):
        for t in draw_times(new_seed(), inputs):
            end = t + timedelta(seconds=1800)
            assert all(end <= s.opens_at or t >= s.closes_at for s in avoid)
    # When windows fill all the waking hours, challenges are drawn over them all the same.
    covering = (Slot(_utc(2026, 3, 1, 23), _utc(2026, 3, 2, 14)),)
    assert len(draw_times(new_seed(), _inputs(avoid=covering))) == 1


def test_no_challenge_before_the_draw_after_the_term_or_with_no_room() -> None:
    late = _inputs(not_before=_utc(2026, 3, 2, 9), count=3)  # 17:00 local
    for t in draw_times(new_seed(), late):
        assert t >= _utc(2026, 3, 2, 9)
    after_term = _inputs(term_end=date(2026, 3, 1))
    assert draw_times(new_seed(), after_term) == []
    no_room = _inputs(curfew=(time(7), time(22)))
    assert allowed_starts(no_room) == []
    assert draw_times(new_seed(), no_room) == []


def test_a_curfew_crossing_midnight_from_the_day_before_is_kept() -> None:
    inputs = _inputs(curfew=(time(20), time(10)), waking_start=time(6))
    for _ in range(100):
        (t,) = draw_times(new_seed(), inputs)
        assert time(10) <= _local(t)
        assert _local(t + timedelta(seconds=1800)) <= time(20)


def test_a_weekly_draw_spreads_over_the_week_in_urumqi() -> None:
    bounds = period_bounds("week", _utc(2026, 3, 4), "Asia/Urumqi")
    inputs = _inputs(
        timezone="Asia/Urumqi",
        period="week",
        period_start=bounds.opens_at,
        period_end=bounds.closes_at,
        not_before=bounds.opens_at,
        count=2,
    )
    seen_days = set()
    for _ in range(100):
        for t in draw_times(new_seed(), inputs):
            assert bounds.opens_at <= t < bounds.closes_at
            assert time(8) <= _local(t, "Asia/Urumqi") <= time(20, 30)
            seen_days.add(t.astimezone(ZoneInfo("Asia/Urumqi")).date())
    assert len(seen_days) == 7


# ------------------------------------------------------------------------- outcomes

T0 = _utc(2026, 3, 2, 2)


def _decide(**changes: object) -> tuple[CheckinStatus, tuple[Reason, ...]]:
    args: dict[str, object] = {
        "received_at": T0,
        "closes_at": T0 + timedelta(hours=1),
        "mock": False,
        "outside_area": False,
        "replayed_media": False,
        "face": Face(0.95, True, "vendor"),
        "photo": False,
        "face_score_min": 0.8,
    }
    return decide(**(args | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "status", "reasons"),
    [
        ({}, "passed", []),
        ({"face": None}, "passed", []),
        ({"received_at": T0 + timedelta(hours=2)}, "failed", ["late"]),
        ({"received_at": T0 + timedelta(hours=1)}, "passed", []),
        ({"mock": True}, "failed", ["mock_location"]),
        ({"outside_area": True}, "failed", ["outside_area"]),
        ({"replayed_media": True, "photo": True}, "failed", ["replayed_media"]),
        ({"face": Face(0.79, True)}, "needs_review", ["face_score_low"]),
        ({"face": Face(0.8, True)}, "passed", []),
        ({"face": Face(0.9, False)}, "needs_review", ["liveness_failed"]),
        ({"face": None, "photo": True}, "needs_review", ["photo_only"]),
        (
            {"face": Face(0.1, False), "photo": True},
            "needs_review",
            ["face_score_low", "liveness_failed"],
        ),
        (
            {
                "received_at": T0 + timedelta(hours=2),
                "mock": True,
                "outside_area": True,
                "replayed_media": True,
                "face": None,
                "photo": True,
            },
            "failed",
            ["late", "mock_location", "outside_area", "replayed_media", "photo_only"],
        ),
        (
            {"mock": True, "face": Face(0.2, False)},
            "failed",
            ["mock_location", "face_score_low", "liveness_failed"],
        ),
    ],
)
def test_an_answers_outcome(changes: dict[str, object], status: str, reasons: list[str]) -> None:
    got_status, got_reasons = _decide(**changes)
    assert got_status.value == status
    assert [r.value for r in got_reasons] == reasons


def test_outside_means_wholly_outside_the_area_and_every_running_destination() -> None:
    inside, outside, uncertain = 1, 2, 0
    assert wholly_outside(outside, [], outside)
    assert not wholly_outside(uncertain, [], outside)
    assert not wholly_outside(inside, [], outside)
    assert not wholly_outside(outside, [outside, inside], outside)
    assert wholly_outside(outside, [outside, outside], outside)
    assert not wholly_outside(None, [], outside)


# ------------------------------------------------------------------------- stationary


def test_a_phone_lying_still_for_hours_is_stationary() -> None:
    now = _utc(2026, 3, 2, 12)
    still = [(now - timedelta(minutes=m), 116.3 + m * 1e-6, 39.9) for m in range(0, 240, 5)]
    facts = stationary(still, now, 14400, 50)
    assert facts is not None
    assert facts["fixes"] == len(still)
    assert "lon" not in facts
    assert "lat" not in facts
    moving = [*still, (now - timedelta(minutes=100), 116.31, 39.9)]
    assert stationary(moving, now, 14400, 50) is None
    # Fixes covering under half the span say too little.
    recent_only = [p for p in still if p[0] >= now - timedelta(hours=1)]
    assert stationary(recent_only, now, 14400, 50) is None


# ------------------------------------------------------------------------- rendering


def test_a_pending_checkin_is_shown_open_then_missed() -> None:
    c = Checkin(1, 2, 3, CheckinKind.SCHEDULED, T0, T0 + timedelta(hours=3), CheckinStatus.PENDING)
    assert c.to_json(T0 - timedelta(seconds=1))["status"] == "pending"
    assert c.to_json(T0)["status"] == "open"
    assert c.is_open(T0)
    assert c.to_json(T0 + timedelta(hours=3))["status"] == "missed"
    body = c.to_json(T0)
    assert list(body) == [
        "id",
        "subject_id",
        "kind",
        "opens_at",
        "closes_at",
        "status",
        "answered_at",
        "reasons",
    ]
    assert body["opens_at"] == "2026-03-02T02:00:00Z"
    answered = Checkin(
        1,
        2,
        3,
        CheckinKind.CHALLENGE,
        T0,
        T0 + timedelta(hours=1),
        CheckinStatus.NEEDS_REVIEW,
        answered_at=T0,
        reasons=("photo_only",),
    )
    assert answered.to_json(T0 + timedelta(days=1))["status"] == "needs_review"
    assert answered.to_officer_json(T0)["reasons"] == ["photo_only"]
