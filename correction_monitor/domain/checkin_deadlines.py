"""Check-in deadlines: what closing a window unanswered and reminding before it close mean.

A check-in row stays ``pending`` from layout until it is answered, reviewed or missed; its
``closes_at`` is its deadline. Two things happen on the way there, decided here and carried
out set-based by the deadline sweep (``service/checkin_deadlines.py``):

- a **reminder** message for each of the level's leads once ``closes_at - lead`` has come,
  while the window is still pending and open (a scheduled window: or about to open);
- at ``closes_at``, the window becomes **missed** and opens one ``missed_checkin`` alert,
  whose episode key names the check-in, so no repeat of the sweep can open it twice.

This module is pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from correction_monitor.domain.alerts import Severity
from correction_monitor.domain.models import SupervisionLevel
from correction_monitor.domain.timeutil import iso

MISSED_SEVERITY: dict[SupervisionLevel, Severity] = {
    # 严管: a subject judged high-risk did not show up when told to.
    SupervisionLevel.STRICT: Severity.HIGH,
    # 普管: the phone still reports every 15 minutes; a missed check-in is a lapse to follow.
    SupervisionLevel.NORMAL: Severity.NORMAL,
    # 宽管: check-ins are the only supervision there is (no continuous tracking), so a
    # missed one leaves the subject unseen until the next week's window.
    SupervisionLevel.LENIENT: Severity.HIGH,
}
"""How urgent a missed window is, by supervision level (docs/checkin-deadlines.md)."""


MISSED_KEY_PREFIX = "checkin:"


def missed_checkin_key(checkin_id: int) -> str:
    """The episode key of a missed window's alert: the check-in itself.

    >>> missed_checkin_key(42)
    'checkin:42'
    """
    return f"{MISSED_KEY_PREFIX}{checkin_id}"


def lead_text(lead_s: float) -> str:
    """A reminder lead as written in keys: whole seconds when it is whole.

    >>> lead_text(1800.0), lead_text(90.5)
    ('1800', '90.5')
    """
    return str(int(lead_s)) if float(lead_s).is_integer() else str(lead_s)


def reminder_key(checkin_id: int, lead_s: float) -> str:
    """The dedupe key of one reminder: a retried or doubled sweep sends it once.

    >>> reminder_key(42, 1800.0)
    'reminder:42:1800'
    """
    return f"reminder:{checkin_id}:{lead_text(lead_s)}"


@dataclass(frozen=True, slots=True)
class DueReminder:
    """A pending window whose reminder for ``lead_s`` is due: when it opens and closes (UTC),
    and the station's time zone it is told in."""

    checkin_id: int
    subject_id: int
    kind: str
    opens_at: datetime
    closes_at: datetime
    lead_s: float
    timezone: str


def _local(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def reminder_text(reminder: DueReminder, now: datetime) -> str:
    """The reminder as the subject reads it (zh-CN), naming when the window closes in the
    station's time zone and, when it has not opened yet, when it opens.

    >>> from datetime import UTC
    >>> r = DueReminder(1, 2, "scheduled", datetime(2026, 12, 7, 11, 0, tzinfo=UTC),
    ...                 datetime(2026, 12, 7, 14, 0, tzinfo=UTC), 1800, "Asia/Shanghai")
    >>> reminder_text(r, datetime(2026, 12, 7, 13, 30, tzinfo=UTC))
    '签到提醒：您本次签到将于12月7日 22:00截止，请在截止前打开应用完成签到。'
    """
    closes = _local(reminder.closes_at, reminder.timezone)
    what = "随机抽查签到" if reminder.kind == "challenge" else "签到"
    if now < reminder.opens_at:
        opens = _local(reminder.opens_at, reminder.timezone)
        return f"签到提醒：您的{what}时段将于{opens}开始、{closes}截止，请按时打开应用完成签到。"
    return f"签到提醒：您本次{what}将于{closes}截止，请在截止前打开应用完成签到。"


def reminder_data(reminder: DueReminder) -> dict[str, Any]:
    """What the app needs to draw the reminder: the window it is about."""
    return {"checkin_id": reminder.checkin_id, "closes_at": iso(reminder.closes_at)}


@dataclass(frozen=True, slots=True)
class MissedWindow:
    """A window this sweep closed as missed, and the alert it opened (None when the window's
    alert existed already)."""

    checkin_id: int
    subject_id: int
    org_unit_id: int
    alert_id: int | None


@dataclass(frozen=True, slots=True)
class LevelTerms:
    """What a supervision level's missed window is raised with: its alert's severity and the
    policy its evidence quotes."""

    level: str
    severity: str
    policy: dict[str, Any]
