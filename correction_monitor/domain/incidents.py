"""Incidents: one event told by several alerts (事件归并).

A subject who leaves the area on a trip may, on that same trip, miss a check-in, fall silent
and come back after the leave ended: four alerts, one event. Officers should see that they
belong together, so the alerts share one incident. Nothing is merged or hidden: every alert
stays listed and is acknowledged and resolved on its own; the incident only groups them.

The rule (:func:`correlates`): when an alert of a *trip* type opens, it joins the incident of
the subject's most recent earlier alert of a trip type that is still going on, or that was
raised or ended within :data:`WINDOW_S` before it was raised. Without an incident yet, the
two (and any other such alert) start one. Retracted alerts never correlate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from correction_monitor.domain.alerts import AlertType
from correction_monitor.domain.timeutil import iso

TRIP_TYPES = frozenset(
    {
        AlertType.LEFT_ACTIVITY_AREA,
        AlertType.LEAVE_OVERDUE,
        AlertType.MISSED_CHECKIN,
        AlertType.LOST_CONTACT,
        AlertType.CURFEW_VIOLATION,
    }
)
"""Alert types that describe a subject being away or out of reach: one trip raises several.
(A 禁止令 breach and a device's integrity are facts of their own and open no incident.)"""

ONGOING_TYPES = frozenset(
    {
        AlertType.LEFT_ACTIVITY_AREA,
        AlertType.LEAVE_OVERDUE,
        AlertType.LOST_CONTACT,
        AlertType.CURFEW_VIOLATION,
    }
)
"""Trip types whose alerts end (the subject confirmed back, contact resumed): while not
ended and not resolved they are still going on, however long ago they were raised."""

WINDOW_S = 2 * 3600.0
"""An earlier trip alert raised or ended within this many seconds before a new one was
raised describes the same trip."""


@dataclass(frozen=True, slots=True)
class Neighbour:
    """An earlier alert of the subject, as correlation reads it."""

    alert_id: int
    type: AlertType
    detected_at: datetime
    ended_at: datetime | None
    resolved: bool
    incident_id: int | None


def window_start(detected_at: datetime) -> datetime:
    """The earliest time a neighbour's raising or ending may fall at to correlate."""
    return detected_at - timedelta(seconds=WINDOW_S)


def correlates(new_type: AlertType, new_detected_at: datetime, other: Neighbour) -> bool:
    """Whether ``other`` describes the same trip as a new alert of ``new_type`` raised at
    ``new_detected_at``.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, 12, tzinfo=UTC)
    >>> away = Neighbour(1, AlertType.LEFT_ACTIVITY_AREA, t - timedelta(hours=5), None, False, None)
    >>> correlates(AlertType.MISSED_CHECKIN, t, away)
    True
    >>> missed = Neighbour(2, AlertType.MISSED_CHECKIN, t - timedelta(hours=3), None, False, None)
    >>> correlates(AlertType.LOST_CONTACT, t, missed)
    False
    >>> correlates(AlertType.ENTERED_EXCLUSION_ZONE, t, away)
    False
    """
    if new_type not in TRIP_TYPES or other.type not in TRIP_TYPES:
        return False
    since = window_start(new_detected_at)
    if other.detected_at >= since:
        return True
    if other.ended_at is not None:
        return other.ended_at >= since
    return other.type in ONGOING_TYPES and not other.resolved


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident and its alerts' ids (oldest first); ``status`` is ``open`` while any of
    its alerts is not resolved."""

    id: int
    subject_id: int
    org_unit_id: int
    opened_at: datetime
    alert_ids: tuple[int, ...]
    types: tuple[str, ...]
    open_alerts: int
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject_id": self.subject_id,
            "opened_at": iso(self.opened_at),
            "status": "open" if self.open_alerts else "resolved",
            "alert_ids": list(self.alert_ids),
            "types": list(self.types),
            "rule": self.data,
        }
