"""Leave (外出, RULES.md §2): a subject's permission to be away, as pure rules.

* **Span.** A leave runs over the closed span ``[starts_at, ends_at]`` of aware instants. A
  ``start`` or ``end`` given as a date (``YYYY-MM-DD``) means that whole day in the
  station's time zone: a start date is its first instant (local midnight), an end date its
  last microsecond (local 23:59:59.999999), so the local date of ``ends_at`` is the last day
  of leave. A datetime (ISO-8601 with offset, or epoch milliseconds) is that instant.
* **Days** are calendar days in the station's time zone, both ends counted.
* **Approval level** (社区矫正法 第27条; 实施办法 第26–29条): ``station`` up to
  ``station_max_days``, ``county`` up to ``county_max_days``, ``upper`` beyond, or when the
  approved leave days within the ``cumulative_window_days`` ending at its end would exceed
  ``cumulative_max_days`` with it. A regular cross-county commuting approval may last up to
  ``commuting_max_days`` and is decided by the county (its days are not counted with the
  others': it is a standing permission, not time away).
* **Authority.** Officers and supervisors of the subject's station approve ``station``;
  county administrators ``county``; administrators ``upper``; a role above a level may
  always approve it.

An approved leave makes its destination count as inside the subject's activity area while
it runs, for fix evaluation and for check-ins alike (docs/leave.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from correction_monitor.domain.access import Role
from correction_monitor.domain.timeutil import BadInstant, parse_instant
from correction_monitor.policy import LeavePolicy

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ApprovedLeave:
    """An approved leave as the rest of the service uses it: its closed span
    ``[starts_at, ends_at]`` (aware UTC instants; an end given as a date is the last
    microsecond of that day in the station's time zone) and the fence of its destination."""

    leave_id: int
    starts_at: datetime
    ends_at: datetime
    destination_fence_id: int


class LeaveStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class LeaveReason(StrEnum):
    """Valid reasons (RULES.md §2): medical care, schooling, litigation, important family or
    work matters, and others an officer weighs."""

    MEDICAL = "medical"
    SCHOOLING = "schooling"
    LITIGATION = "litigation"
    FAMILY = "family"
    WORK = "work"
    OTHER = "other"


class ApprovalLevel(StrEnum):
    STATION = "station"
    COUNTY = "county"
    UPPER = "upper"


class ReportKind(StrEnum):
    """The subject's reports while away: on arrival, before leaving the destination, and
    back home."""

    ARRIVAL = "arrival"
    DEPARTURE = "departure"
    RETURN = "return"


@dataclass(frozen=True, slots=True)
class NewLeave:
    """An application about to be stored."""

    subject_id: int
    org_unit_id: int
    destination: dict[str, Any]
    destination_fence_id: int
    reason: LeaveReason
    note: str | None
    starts_at: datetime
    ends_at: datetime
    start_text: str
    end_text: str
    days: int
    approval_level: ApprovalLevel
    commuting: bool
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class Leave:
    """A stored leave: the application (``start_text``/``end_text`` as the app gave them)
    and the decision on it."""

    id: int
    subject_id: int
    org_unit_id: int
    destination: dict[str, Any]
    destination_fence_id: int | None
    reason: LeaveReason
    note: str | None
    starts_at: datetime
    ends_at: datetime
    start_text: str
    end_text: str
    days: int
    approval_level: ApprovalLevel
    commuting: bool
    status: LeaveStatus
    applied_at: datetime
    decided_by: int | None
    decided_at: datetime | None
    decision_note: str | None

    def runs_at(self, at: datetime) -> bool:
        """Whether the leave is approved and ``at`` lies within its span."""
        return self.status is LeaveStatus.APPROVED and self.starts_at <= at <= self.ends_at


@dataclass(frozen=True, slots=True)
class NewLeaveReport:
    """A report from the subject's app while on leave, with where it lies: ``inside`` the
    destination (True), outside it (False) or on its edge (None)."""

    leave_id: int
    subject_id: int
    kind: ReportKind
    ts: datetime
    lon: float
    lat: float
    accuracy_m: float | None
    inside: bool | None
    device_id: int | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class LeaveReport:
    id: int
    leave_id: int
    subject_id: int
    kind: ReportKind
    ts: datetime
    lon: float
    lat: float
    accuracy_m: float | None
    inside: bool | None
    device_id: int | None
    received_at: datetime

    @property
    def flagged(self) -> bool:
        """An arrival reported outside the destination: kept, and flagged for officers."""
        return self.kind is ReportKind.ARRIVAL and self.inside is False


_RANK = {ApprovalLevel.STATION: 1, ApprovalLevel.COUNTY: 2, ApprovalLevel.UPPER: 3}
_AUTHORITY = {
    Role.OFFICER: 1,
    Role.SUPERVISOR: 1,
    Role.COUNTY_ADMIN: 2,
    Role.ADMIN: 3,
}


class BadLeave(ValueError):
    """An application the rules refuse; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_bound(value: str | int | float, tz: ZoneInfo, *, end: bool) -> datetime:
    """A leave's ``start`` (``end=False``) or ``end`` as an aware UTC instant: a date is
    that whole day in ``tz`` (its first instant, or its last microsecond for an end); a
    datetime is itself. BadInstant for anything else.

    >>> tz = ZoneInfo("Asia/Shanghai")
    >>> parse_bound("2026-05-01", tz, end=False).isoformat()
    '2026-04-30T16:00:00+00:00'
    >>> parse_bound("2026-05-03", tz, end=True).isoformat()
    '2026-05-03T15:59:59.999999+00:00'
    """
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError as exc:
            raise BadInstant(f"{value!r} is not a calendar date") from exc
        if end:
            return local_midnight(day + timedelta(days=1), tz) - _MICROSECOND
        return local_midnight(day, tz)
    return parse_instant(value)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz``, in UTC."""
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(ZoneInfo("UTC"))


def leave_dates(starts_at: datetime, ends_at: datetime, tz: ZoneInfo) -> list[date]:
    """The calendar days in ``tz`` a span touches, both ends counted."""
    first, last = starts_at.astimezone(tz).date(), ends_at.astimezone(tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def leave_days(starts_at: datetime, ends_at: datetime, tz: ZoneInfo) -> int:
    """How many calendar days in ``tz`` the span lasts, both ends counted.

    >>> tz = ZoneInfo("Asia/Shanghai")
    >>> leave_days(parse_bound("2026-05-01", tz, end=False),
    ...            parse_bound("2026-05-07", tz, end=True), tz)
    7
    """
    return len(leave_dates(starts_at, ends_at, tz))


def check_span(starts_at: datetime, ends_at: datetime, tz: ZoneInfo, policy: LeavePolicy) -> int:
    """The span's days; BadLeave naming ``end`` when it ends before it starts or lasts
    longer than any approval may (``commuting_max_days``, the longest the rules allow)."""
    if ends_at <= starts_at:
        raise BadLeave("end", "'end' must be after 'start'")
    longest = f"a leave lasts at most {policy.commuting_max_days} days"
    # Far too long, however the days fall: refused before counting them one by one.
    if ends_at - starts_at > timedelta(days=policy.commuting_max_days + 1):
        raise BadLeave("end", f"'end' is too far after 'start'; {longest}")
    try:
        days = leave_days(starts_at, ends_at, tz)
    except OverflowError as exc:  # beyond the calendar in the station's time zone
        raise BadLeave("end", "'end' is outside the calendar") from exc
    if days > policy.commuting_max_days:
        raise BadLeave(
            "end",
            f"'end' makes the leave {days} days long; {longest}",
        )
    return days


def cumulative_window(ends_at: datetime, tz: ZoneInfo, policy: LeavePolicy) -> tuple[date, date]:
    """The calendar days (first, last) whose approved leave counts with a leave ending at
    ``ends_at``: the ``cumulative_window_days`` ending on its last day."""
    last = ends_at.astimezone(tz).date()
    return last - timedelta(days=policy.cumulative_window_days - 1), last


def days_in_window(
    spans: list[tuple[datetime, datetime]], window: tuple[date, date], tz: ZoneInfo
) -> int:
    """Distinct calendar days of ``spans`` within ``window`` (a day two leaves share
    counts once)."""
    first, last = window
    days: set[date] = set()
    for start, end in spans:
        days.update(d for d in leave_dates(start, end, tz) if first <= d <= last)
    return len(days)


def approval_level(
    starts_at: datetime,
    ends_at: datetime,
    tz: ZoneInfo,
    policy: LeavePolicy,
    *,
    commuting: bool,
    approved: list[tuple[datetime, datetime]],
) -> ApprovalLevel:
    """Who must approve a leave over ``[starts_at, ends_at]``, given the subject's other
    approved (non-commuting) leaves ``approved``; see the module docstring."""
    if commuting:
        return ApprovalLevel.COUNTY
    days = leave_days(starts_at, ends_at, tz)
    window = cumulative_window(ends_at, tz, policy)
    total = days_in_window([*approved, (starts_at, ends_at)], window, tz)
    if days > policy.county_max_days or total > policy.cumulative_max_days:
        return ApprovalLevel.UPPER
    if days > policy.station_max_days:
        return ApprovalLevel.COUNTY
    return ApprovalLevel.STATION


def may_approve(role: Role, level: ApprovalLevel) -> bool:
    """Whether ``role`` has the authority for ``level`` (a role above may always approve).

    >>> may_approve(Role.OFFICER, ApprovalLevel.COUNTY)
    False
    >>> may_approve(Role.ADMIN, ApprovalLevel.STATION)
    True
    """
    return _AUTHORITY.get(role, 0) >= _RANK[level]


def higher(a: ApprovalLevel, b: ApprovalLevel) -> ApprovalLevel:
    """The higher of two approval levels."""
    return a if _RANK[a] >= _RANK[b] else b
