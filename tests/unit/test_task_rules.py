"""Who holds a task first, and when an alert's task is due (domain/tasks.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from correction_monitor.domain.access import Role
from correction_monitor.domain.alerts import AlertType
from correction_monitor.domain.leave import ApprovalLevel
from correction_monitor.domain.tasks import (
    Candidate,
    TaskKind,
    ack_due,
    county_admin,
    first_assignee,
    kind_for_alert,
    leave_assignee,
    station_supervisor,
)

T0 = datetime(2027, 1, 5, 8, 0, tzinfo=UTC)
STATION_SUPERVISORS = [Candidate(12, Role.SUPERVISOR, 0), Candidate(11, Role.SUPERVISOR, 0)]
ABOVE = [
    Candidate(30, Role.ADMIN, 2),
    Candidate(21, Role.COUNTY_ADMIN, 1),
    Candidate(20, Role.COUNTY_ADMIN, 1),
    Candidate(40, Role.SUPERVISOR, 1),  # a supervisor of the county unit is not the station's
]


def test_a_task_goes_to_the_responsible_officer_else_the_station_supervisor_else_nobody() -> None:
    assert first_assignee(7, STATION_SUPERVISORS + ABOVE) == 7
    assert first_assignee(None, STATION_SUPERVISORS + ABOVE) == 11
    assert first_assignee(None, ABOVE) is None
    assert station_supervisor(ABOVE) is None


def test_county_work_goes_to_the_nearest_county_administrator_else_an_administrator() -> None:
    assert county_admin(ABOVE) == 20
    assert county_admin([Candidate(30, Role.ADMIN, 2)]) == 30
    assert county_admin(STATION_SUPERVISORS) is None


def test_a_leave_is_approved_where_its_level_says() -> None:
    everyone = STATION_SUPERVISORS + ABOVE
    assert leave_assignee(ApprovalLevel.STATION, 7, everyone) == 7
    assert leave_assignee(ApprovalLevel.COUNTY, 7, everyone) == 20
    assert leave_assignee(ApprovalLevel.UPPER, 7, everyone) == 30
    assert leave_assignee(ApprovalLevel.UPPER, 7, STATION_SUPERVISORS + ABOVE[1:]) == 20


def test_an_alerts_task_is_due_by_its_severitys_sla_and_lost_contact_is_a_search() -> None:
    assert ack_due(T0, "high", 900, 7200) == T0 + timedelta(seconds=900)
    assert ack_due(T0, "normal", 900, 7200) == T0 + timedelta(seconds=7200)
    assert kind_for_alert(AlertType.LOST_CONTACT) is TaskKind.SEARCH
    assert kind_for_alert(AlertType.MISSED_CHECKIN) is TaskKind.VERIFY_ALERT
