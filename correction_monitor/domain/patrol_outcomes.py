"""What a night patrol's visit found, and what it means for the subject's alerts (pure).

A stop's outcome is one of :class:`Outcome`. Two findings close the loop with the phone's
evidence:

- ``absent`` while the subject's curfew applies (the curfew window, in the station's time
  zone, contains the visit's time) is a curfew violation seen by an officer: it confirms the
  phone's ``curfew_violation`` alert of that curfew night when there is one still
  unresolved, and otherwise opens one whose evidence is the patrol;
- ``present`` while a location alert said the subject was away (:data:`AWAY_TYPES`, its
  episode under way at the visit's time) contradicts that alert: the contradiction is
  recorded on it, and is a 人机分离 signal (the phone was away, the person was home).

Nothing here decides a disposition the officer did not make: the officer who recorded
``absent`` confirmed the breach by looking; a contradiction leaves the contradicted alert's
disposition to the officers handling it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from correction_monitor.domain.alerts import AlertType
from correction_monitor.domain.timeutil import iso


class Outcome(StrEnum):
    """What the officers found at a stop."""

    PRESENT = "present"
    ABSENT = "absent"
    NO_ANSWER = "no_answer"
    REFUSED = "refused"
    OTHER = "other"


OUTCOME_LABELS: dict[Outcome, str] = {
    Outcome.PRESENT: "在家",
    Outcome.ABSENT: "不在家",
    Outcome.NO_ANSWER: "无人应答",
    Outcome.REFUSED: "拒绝配合",
    Outcome.OTHER: "其他",
}

AWAY_TYPES = (
    AlertType.LEFT_ACTIVITY_AREA,
    AlertType.CURFEW_VIOLATION,
    AlertType.LEAVE_OVERDUE,
)
"""Alert types that say the subject (their phone) was away from where a visit finds them."""

CONTRADICTION_KEY = "patrol_contradiction"
"""The evidence list, on a contradicted alert, of the visits that found the subject home."""
PATROLS_KEY = "patrols"
"""The evidence list, on a curfew alert, of the visits that found the subject absent."""

MAX_NOTE = 2000


@dataclass(frozen=True, slots=True)
class CurfewSpan:
    """One night's curfew: from ``opens_at`` to ``closes_at`` (UTC), the local times it was
    given in, and the local date it began on."""

    night: date
    start: time
    end: time
    opens_at: datetime
    closes_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "night": self.night.isoformat(),
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "opens_at": iso(self.opens_at),
            "closes_at": iso(self.closes_at),
        }


def _span(day: date, start: time, end: time, zone: ZoneInfo) -> CurfewSpan:
    opens = datetime.combine(day, start, tzinfo=zone)
    end_day = day if start < end else day + timedelta(days=1)
    closes = datetime.combine(end_day, end, tzinfo=zone)
    return CurfewSpan(day, start, end, opens.astimezone(UTC), closes.astimezone(UTC))


def curfew_at(at: datetime, start: time, end: time, zone: ZoneInfo) -> CurfewSpan | None:
    """The curfew night containing ``at`` (aware), for a daily curfew from ``start`` to
    ``end`` in ``zone`` (an end not after the start is the next morning); None when ``at``
    is outside the curfew.

    >>> z = ZoneInfo("Asia/Shanghai")
    >>> span = curfew_at(datetime(2026, 3, 1, 15, 30, tzinfo=UTC), time(22), time(6), z)
    >>> span.night.isoformat(), span.to_json()["closes_at"]
    ('2026-03-01', '2026-03-01T22:00:00Z')
    >>> curfew_at(datetime(2026, 3, 1, 20, 0, tzinfo=UTC), time(22), time(6), z).night
    datetime.date(2026, 3, 1)
    >>> curfew_at(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), time(22), time(6), z) is None
    True
    """
    if start == end:
        return None
    for day in (at.astimezone(zone).date() - timedelta(days=1), at.astimezone(zone).date()):
        span = _span(day, start, end, zone)
        if span.opens_at <= at < span.closes_at:
            return span
    return None


def patrol_alert_key(stop_id: int) -> str:
    """The episode key of a curfew alert opened by the visit of stop ``stop_id``."""
    return f"patrol_stop:{stop_id}"


def names_stop(items: Any, stop_id: int) -> bool:
    """Whether an evidence list already holds an item of stop ``stop_id`` (recording the same
    finding again adds nothing)."""
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("stop_id") == stop_id for i in items
    )


def said_away(
    started_at: datetime, ended_at: datetime | None, retracted: bool, at: datetime
) -> bool:
    """Whether an away alert's episode was under way at ``at`` (a retracted one never is).

    >>> t = datetime(2026, 3, 1, tzinfo=UTC)
    >>> said_away(t, None, False, t + timedelta(hours=1))
    True
    >>> said_away(t, t + timedelta(minutes=5), False, t + timedelta(hours=1))
    False
    """
    if retracted or started_at > at:
        return False
    return ended_at is None or ended_at >= at
