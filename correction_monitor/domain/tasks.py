"""Tasks (二级包保): work an officer owes, with a deadline, escalating when it is missed.

A task is opened by an event (an alert that reached officers, a check-in needing review, a
leave application, a ladder proposal), names what it is about and who holds it, and is due
by a policy SLA. Missed, it climbs: level 1 to the subject's responsible supervisor, level 2
to a county administrator (RULES.md §4). It is done when what it is about is settled (the
alert acknowledged, the check-in reviewed, ...) or, for a search, by hand with its outcome.

This module is pure: the kinds, who holds a task at each level (from the candidates storage
lists), and the JSON officers read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from correction_monitor.domain.access import Role
from correction_monitor.domain.alerts import AlertType, Severity
from correction_monitor.domain.leave import ApprovalLevel
from correction_monitor.domain.timeutil import iso


class TaskKind(StrEnum):
    VERIFY_ALERT = "verify_alert"
    SEARCH = "search"
    """立即组织查找 (社区矫正法 第30条): a subject lost contact."""
    REVIEW_CHECKIN = "review_checkin"
    APPROVE_LEAVE = "approve_leave"
    DECIDE_PROPOSAL = "decide_proposal"


class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


class StepKind(StrEnum):
    """What was done on a task. Officers record the first five; the service records the
    rest (escalations, a missed last SLA, completion)."""

    PHONE = "phone"
    INFO_CHECK = "info_check"
    """信息化核查: checking the subject's whereabouts through information systems."""
    VISIT = "visit"
    NOTIFY_POLICE = "notify_police"
    """Notifying 公安 (the police) of the missing subject."""
    NOTE = "note"
    ESCALATED = "escalated"
    SLA_MISSED = "sla_missed"
    DONE = "done"


SEARCH_STEPS = frozenset(
    {StepKind.PHONE, StepKind.INFO_CHECK, StepKind.VISIT, StepKind.NOTIFY_POLICE}
)
"""The steps of a search (立即组织查找); only search tasks take them."""
OFFICER_STEPS = SEARCH_STEPS | {StepKind.NOTE}
"""Steps an officer may record by hand (a note on any task)."""


class SearchOutcome(StrEnum):
    """How a search ended, when an officer closes it by hand."""

    FOUND = "found"
    NOT_FOUND = "not_found"


MAX_LEVEL = 2
"""Level 2 (the county) is the last: a task missing its SLA there stays with the county
administrator, the miss recorded once."""


def dedupe_key(kind: TaskKind, about: int) -> str:
    """What makes a task unique: its kind and the row it is about, so an event handled
    again (or told twice) never opens a second task.

    >>> dedupe_key(TaskKind.VERIFY_ALERT, 12)
    'verify_alert:12'
    """
    return f"{kind.value}:{about}"


def kind_for_alert(alert_type: AlertType) -> TaskKind:
    """A lost contact calls for a search (社区矫正法 第30条); every other alert for a
    verification."""
    return TaskKind.SEARCH if alert_type is AlertType.LOST_CONTACT else TaskKind.VERIFY_ALERT


def ack_due(detected_at: datetime, severity: str, high_s: float, normal_s: float) -> datetime:
    """When an alert's task is due: its detection plus the level's acknowledgement SLA for
    its severity (a severity other than high takes the normal SLA)."""
    seconds = high_s if severity == Severity.HIGH.value else normal_s
    return detected_at + timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An officer who might hold a task: their role and how far above the subject's
    station their unit is (0: the station itself)."""

    officer_id: int
    role: Role
    depth: int


def _first(candidates: Sequence[Candidate], role: Role, *, depth: int | None = None) -> int | None:
    for c in sorted(candidates, key=lambda c: (c.depth, c.officer_id)):
        if c.role is role and (depth is None or c.depth == depth):
            return c.officer_id
    return None


def station_supervisor(candidates: Sequence[Candidate]) -> int | None:
    """The station's supervisor (所长), the oldest account when there are several."""
    return _first(candidates, Role.SUPERVISOR, depth=0)


def county_admin(candidates: Sequence[Candidate]) -> int | None:
    """The nearest county administrator above the station, else the nearest administrator."""
    return _first(candidates, Role.COUNTY_ADMIN) or _first(candidates, Role.ADMIN)


def upper_admin(candidates: Sequence[Candidate]) -> int | None:
    """The nearest administrator above the station, else the nearest county administrator."""
    return _first(candidates, Role.ADMIN) or _first(candidates, Role.COUNTY_ADMIN)


def first_assignee(
    responsible_officer_id: int | None, candidates: Sequence[Candidate]
) -> int | None:
    """Who holds a station-level task first: the subject's responsible officer, else the
    station's supervisor, else nobody (the task is unassigned, seen by the station, and its
    SLA still runs, so a miss escalates it like any other)."""
    return responsible_officer_id or station_supervisor(candidates)


def leave_assignee(
    level: ApprovalLevel, responsible_officer_id: int | None, candidates: Sequence[Candidate]
) -> int | None:
    """Who decides a leave (RULES.md §2): the station's officer for a station-level leave,
    a county administrator for a county-level one, an administrator above for more."""
    if level is ApprovalLevel.STATION:
        return first_assignee(responsible_officer_id, candidates)
    if level is ApprovalLevel.COUNTY:
        return county_admin(candidates)
    return upper_admin(candidates)


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to open (nothing happens when its ``dedupe_key`` is taken)."""

    kind: TaskKind
    subject_id: int
    org_unit_id: int
    assignee_id: int | None
    due_at: datetime
    created_at: datetime
    dedupe_key: str
    alert_id: int | None = None
    checkin_id: int | None = None
    leave_id: int | None = None
    proposal_id: int | None = None


@dataclass(frozen=True, slots=True)
class Task:
    """A task as stored, with how many steps it has."""

    id: int
    kind: TaskKind
    subject_id: int
    org_unit_id: int
    alert_id: int | None
    proposal_id: int | None
    checkin_id: int | None
    leave_id: int | None
    assignee_id: int | None
    escalation_level: int
    due_at: datetime
    status: TaskStatus
    created_at: datetime
    done_at: datetime | None
    done_by: int | None
    outcome: str | None
    note: str | None
    sla_missed_at: datetime | None
    steps_count: int

    def overdue(self, now: datetime) -> bool:
        """Open past its due time."""
        return self.status is TaskStatus.OPEN and self.due_at <= now

    def event_data(self) -> dict[str, Any]:
        """What ``task.*`` events carry (domain/events.py)."""
        return {
            "task_id": self.id,
            "kind": self.kind.value,
            "assignee_id": self.assignee_id,
            "escalation_level": self.escalation_level,
            "due_at": iso(self.due_at),
            "alert_id": self.alert_id,
            "checkin_id": self.checkin_id,
            "leave_id": self.leave_id,
            "proposal_id": self.proposal_id,
        }

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The contract's Task, with the completion's details, the steps count and whether
        it is overdue at ``now``."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "subject_id": self.subject_id,
            "alert_id": self.alert_id,
            "proposal_id": self.proposal_id,
            "checkin_id": self.checkin_id,
            "leave_id": self.leave_id,
            "assignee_id": self.assignee_id,
            "escalation_level": self.escalation_level,
            "due_at": iso(self.due_at),
            "status": self.status.value,
            "created_at": iso(self.created_at),
            "done_at": iso(self.done_at),
            "done_by": self.done_by,
            "outcome": self.outcome,
            "note": self.note,
            "sla_missed_at": iso(self.sla_missed_at),
            "overdue": self.overdue(now),
            "steps_count": self.steps_count,
        }


@dataclass(frozen=True, slots=True)
class TaskStep:
    id: int
    task_id: int
    kind: str
    at: datetime
    officer_id: int | None
    note: str | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "at": iso(self.at),
            "officer_id": self.officer_id,
            "note": self.note,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Escalation:
    """One task the SLA sweep moved: from whom to whom, to which level, due when (a task
    already at the last level keeps its holder, ``missed`` says so)."""

    task_id: int
    kind: TaskKind
    subject_id: int
    org_unit_id: int
    alert_id: int | None
    from_assignee_id: int | None
    to_assignee_id: int | None
    level: int
    due_at: datetime
    missed: bool

    def event_data(self) -> dict[str, Any]:
        """``task.escalated``'s data (notifications build their message from it)."""
        return {
            "task_id": self.task_id,
            "kind": self.kind.value,
            "from_assignee_id": self.from_assignee_id,
            "to_assignee_id": self.to_assignee_id,
            "assignee_id": self.to_assignee_id,
            "escalation_level": self.level,
            "level": self.level,
            "due_at": iso(self.due_at),
            "subject_id": self.subject_id,
            "alert_id": self.alert_id,
            "sla_missed": self.missed,
        }
