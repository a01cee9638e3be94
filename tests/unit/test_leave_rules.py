"""Leave (外出) rules: spans, calendar days, approval levels and who may approve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from correction_monitor.domain.access import Role
from correction_monitor.domain.leave import (
    ApprovalLevel,
    BadLeave,
    approval_level,
    check_span,
    days_in_window,
    leave_days,
    may_approve,
    parse_bound,
)
from correction_monitor.domain.timeutil import BadInstant
from correction_monitor.policy import load_policy

pytestmark = pytest.mark.unit

LEAVE = load_policy().leave
CST = ZoneInfo("Asia/Shanghai")


def span(start: str, end: str, tz: ZoneInfo = CST) -> tuple[datetime, datetime]:
    return parse_bound(start, tz, end=False), parse_bound(end, tz, end=True)


def test_a_date_is_the_whole_day_in_the_stations_time_zone() -> None:
    start, end = span("2026-05-01", "2026-05-03")
    assert start == datetime(2026, 5, 1, tzinfo=CST)
    assert end == datetime(2026, 5, 4, tzinfo=CST) - timedelta(microseconds=1)
    assert end.astimezone(CST).date().isoformat() == "2026-05-03"
    assert leave_days(start, end, CST) == 3


def test_a_datetime_is_an_instant_and_days_count_both_ends() -> None:
    start = parse_bound("2026-05-01T23:30:00+08:00", CST, end=False)
    end = parse_bound("2026-05-02T00:30:00+08:00", CST, end=True)
    assert end - start == timedelta(hours=1)
    # One hour over midnight touches two calendar days.
    assert leave_days(start, end, CST) == 2
    # Epoch milliseconds are instants too.
    assert parse_bound(0, CST, end=True) == datetime(1970, 1, 1, tzinfo=UTC)


def test_days_follow_the_stations_calendar_across_a_clock_change() -> None:
    new_york = ZoneInfo("America/New_York")
    start, end = span("2026-03-07", "2026-03-09", new_york)  # clocks go forward on the 8th
    assert leave_days(start, end, new_york) == 3
    assert end - start == timedelta(days=3, hours=-1, microseconds=-1)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(BadInstant):
        parse_bound("2026-02-30", CST, end=False)
    with pytest.raises(BadInstant):
        parse_bound("next tuesday", CST, end=False)
    start, end = span("2026-05-03", "2026-05-01")
    with pytest.raises(BadLeave) as refused:
        check_span(start, end, CST, LEAVE)
    assert refused.value.field == "end"
    start, end = span("2026-01-01", "2026-12-31")
    with pytest.raises(BadLeave, match="at most 183 days"):
        check_span(start, end, CST, LEAVE)


@pytest.mark.parametrize(
    ("days", "level"),
    [
        (1, ApprovalLevel.STATION),
        (LEAVE.station_max_days, ApprovalLevel.STATION),
        (LEAVE.station_max_days + 1, ApprovalLevel.COUNTY),
        (LEAVE.county_max_days, ApprovalLevel.COUNTY),
        (LEAVE.county_max_days + 1, ApprovalLevel.UPPER),
    ],
)
def test_the_level_follows_the_length(days: int, level: ApprovalLevel) -> None:
    start = parse_bound("2026-05-01", CST, end=False)
    end = parse_bound(
        f"{(datetime(2026, 5, 1) + timedelta(days=days - 1)):%Y-%m-%d}", CST, end=True
    )
    assert approval_level(start, end, CST, LEAVE, commuting=False, approved=[]) is level


def test_cumulative_days_within_the_window_need_the_upper_level() -> None:
    earlier = span("2026-05-01", "2026-05-25")  # 25 days, approved
    start, end = span("2026-06-10", "2026-06-16")  # 7 more within 60 days of its end
    assert approval_level(start, end, CST, LEAVE, commuting=False, approved=[]) is (
        ApprovalLevel.STATION
    )
    assert approval_level(start, end, CST, LEAVE, commuting=False, approved=[earlier]) is (
        ApprovalLevel.UPPER
    )
    # Only the days inside the 60 days ending on its last day count: 2026-04-18 .. 06-16.
    long_ago = span("2026-03-01", "2026-04-10")
    assert approval_level(start, end, CST, LEAVE, commuting=False, approved=[long_ago]) is (
        ApprovalLevel.STATION
    )
    # Exactly 30 is not more than 30.
    twenty_three = span("2026-05-01", "2026-05-23")
    assert approval_level(start, end, CST, LEAVE, commuting=False, approved=[twenty_three]) is (
        ApprovalLevel.STATION
    )


def test_a_day_two_leaves_share_counts_once() -> None:
    a, b = span("2026-05-01", "2026-05-10"), span("2026-05-08", "2026-05-12")
    first = parse_bound("2026-05-01", CST, end=False).astimezone(CST).date()
    window = (first, first + timedelta(days=59))
    assert days_in_window([a, b], window, CST) == 12


def test_commuting_is_decided_by_the_county_for_up_to_its_maximum() -> None:
    start, end = span("2026-01-01", "2026-06-30")
    assert check_span(start, end, CST, LEAVE) == 181
    assert approval_level(start, end, CST, LEAVE, commuting=True, approved=[]) is (
        ApprovalLevel.COUNTY
    )


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.OFFICER, {ApprovalLevel.STATION}),
        (Role.SUPERVISOR, {ApprovalLevel.STATION}),
        (Role.COUNTY_ADMIN, {ApprovalLevel.STATION, ApprovalLevel.COUNTY}),
        (Role.ADMIN, set(ApprovalLevel)),
        (Role.AUDITOR, set()),
    ],
)
def test_who_may_approve_which_level(role: Role, allowed: set[ApprovalLevel]) -> None:
    assert {level for level in ApprovalLevel if may_approve(role, level)} == allowed


def test_a_span_far_too_long_or_beyond_the_calendar_names_its_end() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    policy = load_policy().leave
    start = parse_bound("2026-12-06T08:00:00+08:00", tz, end=False)
    with pytest.raises(BadLeave, match="too far after") as far:
        check_span(start, parse_bound("9999-12-31T23:59:59Z", tz, end=True), tz, policy)
    assert far.value.field == "end"
    last_evening = parse_bound("9999-12-31T20:00:00Z", tz, end=False)
    with pytest.raises(BadLeave, match="outside the calendar"):
        check_span(last_evening, last_evening + timedelta(hours=3), tz, policy)
