"""The alert lifecycle: types, severities, statuses and the changes allowed between them.

An alert describes one episode (a breach of a rule, a silence, a missed check-in). Two
things happen to it, independently:

- the *episode* moves with the evidence: it is **opened** when a breach is confirmed,
  **ended** when the subject is confirmed back, **retracted** when fixes that arrived later
  show it did not happen as first seen, and **reopened** when it turns out not to have ended
  (or to have happened after all);
- the *case* moves with officers: ``open`` → ``acknowledged`` → ``resolved`` with a
  disposition (confirmed / justified / false alarm). Only an officer closes a case, whatever
  the evidence later says, so nothing officers have seen disappears from their lists.

What evaluation decides about an episode is an :class:`AlertOpen` or an :class:`AlertEnd`
(an :data:`AlertOp`); storage turns each into the changes it makes. Every change is one
:class:`AlertChange`, written as an ``alert.<change>`` domain event in the transaction that
made it. This module is pure: no I/O, no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AlertType(StrEnum):
    """What an alert is about (CONTRACT.md; more may be added)."""

    LEFT_ACTIVITY_AREA = "left_activity_area"
    """越界: confirmed outside the activity area (活动区域)."""
    ENTERED_EXCLUSION_ZONE = "entered_exclusion_zone"
    """Confirmed inside a 禁止令 place while its schedule applies."""
    CURFEW_VIOLATION = "curfew_violation"
    """Confirmed away from home during curfew hours."""
    LOST_CONTACT = "lost_contact"
    """失联: no accepted fix for longer than the level's threshold (server clock)."""
    MISSED_CHECKIN = "missed_checkin"
    """A check-in window closed unanswered."""
    LEAVE_OVERDUE = "leave_overdue"
    """Still away after an approved leave (外出) ended, beyond its grace."""
    DEVICE_INTEGRITY = "device_integrity"
    """人机分离 signals: mock locations, contradicting accounts, device changes."""


class Severity(StrEnum):
    """How urgently officers must look: sets the acknowledgement SLA (policy)."""

    HIGH = "high"
    NORMAL = "normal"


SEVERITY: dict[AlertType, Severity] = {
    AlertType.LEFT_ACTIVITY_AREA: Severity.HIGH,
    AlertType.ENTERED_EXCLUSION_ZONE: Severity.HIGH,
    AlertType.CURFEW_VIOLATION: Severity.NORMAL,
    AlertType.LOST_CONTACT: Severity.HIGH,
    AlertType.MISSED_CHECKIN: Severity.NORMAL,
    AlertType.LEAVE_OVERDUE: Severity.HIGH,
    AlertType.DEVICE_INTEGRITY: Severity.NORMAL,
}

EPISODE_TYPES = (
    AlertType.LEFT_ACTIVITY_AREA,
    # The activity area's episode, raised instead of left_activity_area after a leave.
    AlertType.LEAVE_OVERDUE,
    AlertType.ENTERED_EXCLUSION_ZONE,
    AlertType.CURFEW_VIOLATION,
)
"""Types raised by the fix evaluation's episode machines (replayed when fixes come late)."""


class AlertStatus(StrEnum):
    """Where officers are with an alert (the ``status`` field)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Disposition(StrEnum):
    """How officers closed an alert; feeds the alert-quality report and the legal ladder."""

    CONFIRMED = "confirmed"
    JUSTIFIED = "justified"
    FALSE_ALARM = "false_alarm"


class Gravity(StrEnum):
    """How grave a confirmed breach was, as the resolving officer judged it (情节): the legal
    ladder proposes by it (RULES.md §1)."""

    MINOR = "minor"
    """情节轻微."""
    SERIOUS = "serious"
    """情节较重."""


class AlertChange(StrEnum):
    """A change of an alert, as told on the feed (SSE ``event:``) and in the event log."""

    OPENED = "opened"
    ENDED = "ended"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    RETRACTED = "retracted"
    REOPENED = "reopened"
    # The alert reached officers: at once, or when its self-resolution grace ran out with
    # the subject still in breach (tasks and notifications follow this, not ``opened``).
    RELEASED = "released"
    # The alert ended within its self-resolution grace: it never reaches officers.
    SELF_RESOLVED = "self_resolved"

    @property
    def event_name(self) -> str:
        """The domain event's name, e.g. ``alert.opened``."""
        return f"alert.{self.value}"


@dataclass(frozen=True, slots=True)
class AlertOpen:
    """Raise an alert for an episode (idempotent on subject, type and episode key).

    ``started_at`` is the episode's first fix (UTC); ``evidence`` is a JSON object.
    """

    subject_id: int
    org_unit_id: int
    type: AlertType
    severity: Severity
    fence_id: int | None
    episode_key: str
    started_at: datetime
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AlertEnd:
    """Mark an episode's alert as ended (the subject is confirmed back at ``ended_at``, UTC)."""

    subject_id: int
    org_unit_id: int
    type: AlertType
    episode_key: str
    ended_at: datetime
    evidence: dict[str, Any]


AlertOp = AlertOpen | AlertEnd


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """A change an ``AlertOp`` made to a stored alert, still to be told as an event
    (``domain.events.event_of``)."""

    alert_id: int
    kind: AlertChange
    op: AlertOp


"""What evaluation decides about one episode's alert."""


class TransitionRefused(Exception):
    """An officer's change that the alert's status does not allow; ``code`` is the slug."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def acknowledge(status: AlertStatus) -> AlertStatus | None:
    """The status after an officer acknowledges an alert in ``status``.

    Returns None when nothing changes (already acknowledged: answering again is harmless).

    Raises
    ------
    TransitionRefused
        ``alert_resolved`` when the alert is already resolved.

    Examples
    --------
    >>> acknowledge(AlertStatus.OPEN)
    <AlertStatus.ACKNOWLEDGED: 'acknowledged'>
    >>> acknowledge(AlertStatus.ACKNOWLEDGED) is None
    True
    """
    if status is AlertStatus.RESOLVED:
        raise TransitionRefused("alert_resolved", "the alert is already resolved")
    if status is AlertStatus.ACKNOWLEDGED:
        return None
    return AlertStatus.ACKNOWLEDGED


def resolve(status: AlertStatus) -> AlertStatus:
    """The status after an officer resolves an alert in ``status`` (open or acknowledged;
    resolving implies acknowledging).

    Raises
    ------
    TransitionRefused
        ``alert_resolved`` when the alert is already resolved.

    Examples
    --------
    >>> resolve(AlertStatus.OPEN)
    <AlertStatus.RESOLVED: 'resolved'>
    """
    if status is AlertStatus.RESOLVED:
        raise TransitionRefused("alert_resolved", "the alert is already resolved")
    return AlertStatus.RESOLVED


REOPEN_WINDOW_S = 30 * 86_400.0
"""A resolved alert may be reopened within this many seconds of its resolution (30 days)."""


def reopen(status: AlertStatus, resolved_at: datetime | None, now: datetime) -> AlertStatus:
    """The status after reopening an alert in ``status``, resolved at ``resolved_at`` (UTC),
    at ``now``: back to ``acknowledged`` (an officer already took it; its acknowledgement
    stands, its resolution goes to the history).

    Raises
    ------
    TransitionRefused
        ``alert_not_resolved`` when the alert is not resolved; ``reopen_window_passed`` when
        it was resolved more than :data:`REOPEN_WINDOW_S` ago.

    Examples
    --------
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> reopen(AlertStatus.RESOLVED, t, t)
    <AlertStatus.ACKNOWLEDGED: 'acknowledged'>
    >>> reopen(AlertStatus.OPEN, None, t)
    Traceback (most recent call last):
    ...
    correction_monitor.domain.alerts.TransitionRefused: only a resolved alert can be reopened
    """
    if status is not AlertStatus.RESOLVED or resolved_at is None:
        raise TransitionRefused("alert_not_resolved", "only a resolved alert can be reopened")
    if (now - resolved_at).total_seconds() > REOPEN_WINDOW_S:
        raise TransitionRefused(
            "reopen_window_passed",
            f"the alert was resolved more than {REOPEN_WINDOW_S / 86_400:.0f} days ago",
        )
    return AlertStatus.ACKNOWLEDGED


def after_grace(
    *,
    ended_at: datetime | None,
    until: datetime | None,
    retracted: bool,
    now: datetime,
    confirmed_at: datetime | None = None,
    grace_s: float = 0.0,
) -> AlertChange | None:
    """What becomes of an alert not yet released nor self-resolved, whose self-resolution
    grace runs to ``until`` (server time; None: it has none), at ``now``: ``RELEASED`` (it
    reaches officers), ``SELF_RESOLVED`` (its episode ended within the grace), or None (wait:
    the grace runs on, or a replay retracted it).

    The episode's end ``ended_at`` is evidence time. When the breach's confirmation time in
    evidence time is known (``confirmed_at``), the grace is counted from it too and the
    earlier end wins: fixes uploaded late that show a long breach, ended before anyone could
    be told, never count as the subject resolving it alone.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> g = t + timedelta(minutes=5)
    >>> after_grace(ended_at=None, until=None, retracted=False, now=t)
    <AlertChange.RELEASED: 'released'>
    >>> after_grace(ended_at=t + timedelta(minutes=2), until=g, retracted=False, now=t)
    <AlertChange.SELF_RESOLVED: 'self_resolved'>
    >>> after_grace(ended_at=None, until=g, retracted=False, now=t) is None
    True
    >>> after_grace(ended_at=None, until=g, retracted=False, now=g)
    <AlertChange.RELEASED: 'released'>
    >>> after_grace(ended_at=g + timedelta(seconds=1), until=g, retracted=False, now=g)
    <AlertChange.RELEASED: 'released'>

    A breach confirmed three hours before it was uploaded, ended an hour later:

    >>> early = t - timedelta(hours=3)
    >>> after_grace(ended_at=early + timedelta(hours=1), until=g, retracted=False, now=t,
    ...             confirmed_at=early, grace_s=300)
    <AlertChange.RELEASED: 'released'>
    """
    if until is None:
        return AlertChange.RELEASED
    if retracted:
        return None
    deadline = until
    if confirmed_at is not None:
        deadline = min(until, confirmed_at + timedelta(seconds=grace_s))
    if ended_at is not None and ended_at <= deadline:
        return AlertChange.SELF_RESOLVED
    if ended_at is not None or now >= until:
        return AlertChange.RELEASED
    return None


def episode_key(rule: str, started_at_s: float) -> str:
    """Identity of a fix-evaluation episode: its rule and its first fix's time (epoch ms).

    Re-evaluating the same fixes gives the same key, so an episode is raised once.

    >>> episode_key("area", 1_790_000_000.25)
    'area:1790000000250'
    """
    return f"{rule}:{round(started_at_s * 1000)}"


def lost_contact_key(since: datetime) -> str:
    """Identity of a lost-contact episode: when the silence began (epoch ms).

    >>> lost_contact_key(datetime(2026, 1, 1, tzinfo=UTC))
    'lost:1767225600000'
    """
    delta = since - _EPOCH
    return f"lost:{(delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000}"
