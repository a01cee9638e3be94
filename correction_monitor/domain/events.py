"""Domain events: facts recorded with the change that caused them.

A handler (or the ingest commit) collects events while it changes state; the unit of work
writes them to the event log (the outbox, ``adapters/outbox.py``) in the same transaction,
so an event exists exactly when its change does. Consumers (the live feed, tasks,
notifications) read the log in commit order with cursors of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from correction_monitor.domain.alerts import AlertChange, AppliedChange


class EventName(StrEnum):
    """Names of the events in the log: ``<aggregate>.<what happened>``."""

    ALERT_OPENED = AlertChange.OPENED.event_name
    ALERT_ENDED = AlertChange.ENDED.event_name
    ALERT_ACKNOWLEDGED = AlertChange.ACKNOWLEDGED.event_name
    ALERT_RESOLVED = AlertChange.RESOLVED.event_name
    ALERT_RETRACTED = AlertChange.RETRACTED.event_name
    ALERT_REOPENED = AlertChange.REOPENED.event_name
    ALERT_RELEASED = AlertChange.RELEASED.event_name
    ALERT_SELF_RESOLVED = AlertChange.SELF_RESOLVED.event_name
    SUBJECT_CREATED = "subject.created"
    SUBJECT_UPDATED = "subject.updated"
    # An officer changed a subject's level or who is responsible for it:
    # data {"changes": {field: {"from", "to"}}, "reason", "changed_by"}.
    SUBJECT_CHANGED = "subject.changed"
    OFFICER_CREATED = "officer.created"
    DEVICE_ENROLLED = "device.enrolled"
    DEVICE_REVOKED = "device.revoked"
    FENCE_CREATED = "fence.created"
    # Check-ins: the subject's app answered one (data {"checkin_id", "kind", "status",
    # "reasons"}); an officer reviewed one (data {"checkin_id", "decision", "reviewed_by"}),
    # issued a challenge (data {"checkin_id", "closes_at", "issued_by"}), or set or cleared a
    # subject's own windows (data {"windows", "own"}).
    CHECKIN_ANSWERED = "checkin.answered"
    CHECKIN_REVIEWED = "checkin.reviewed"
    CHECKIN_CHALLENGED = "checkin.challenged"
    CHECKIN_SCHEDULE_CHANGED = "checkin_schedule.changed"
    # An officer's message to the subject's app: data {"message_id", "kind"}.
    MESSAGE_SENT = "message.sent"
    # Leave (外出): data {"leave_id", "starts_at", "ends_at", "days", "approval_level", ...}.
    LEAVE_APPLIED = "leave.applied"
    LEAVE_APPROVED = "leave.approved"
    LEAVE_REJECTED = "leave.rejected"
    LEAVE_CANCELLED = "leave.cancelled"
    # The subject's arrival/departure/return report: data {"leave_id", "kind", "inside"}.
    LEAVE_REPORTED = "leave.reported"
    # Tasks (二级包保): data {"task_id", "kind", "assignee_id", "escalation_level", "due_at",
    # and the alert/checkin/leave/proposal id it is about}.
    TASK_CREATED = "task.created"
    TASK_ESCALATED = "task.escalated"
    TASK_DONE = "task.done"
    # An officer recorded a step of a task (a search's phone call, 信息化核查, visit, notice
    # to 公安, or a note): data {"task_id", "step_id", "kind", "task_kind", "officer_id"}.
    TASK_STEP_RECORDED = "task.step_recorded"
    # Proposals of the legal ladder: data {"proposal_id", "measure", "article", ...}.
    PROPOSAL_CREATED = "proposal.created"
    PROPOSAL_DECIDED = "proposal.decided"
    # Night patrols' plans: made (data {"plan_id", "org_unit", "night", "seed", "stops", ...}),
    # edited by a supervisor (data {"plan_id", "op", "subject_id", "reason", ...}), published.
    PATROL_PLAN_CREATED = "patrol_plan.created"
    PATROL_PLAN_EDITED = "patrol_plan.edited"
    PATROL_PLAN_PUBLISHED = "patrol_plan.published"
    # Night patrols: an officer recorded a stop's outcome (data {"plan_id", "stop_id",
    # "team_id", "outcome", "at", "recorded_by", "alert_id", "contradicted_alert_ids",
    # "corrected"}); a visit found the subject home while an alert said away (data
    # {"plan_id", "stop_id", "alert_id", "alert_type", "at", "recorded_by"}).
    PATROL_STOP_RECORDED = "patrol_stop.recorded"
    PATROL_STOP_CONTRADICTED = "patrol_stop.contradicted"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """One fact, as consumers need it.

    ``org_unit_id`` places the event in a jurisdiction (feeds and notification channels
    filter by it); ``data`` carries what a consumer needs without reading the aggregate
    back (JSON-serialisable).
    """

    name: str
    org_unit_id: int | None
    subject_id: int | None = None
    alert_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the log, with its position (``id``, commit order)."""

    id: int
    name: str
    occurred_at: datetime
    org_unit_id: int | None
    subject_id: int | None
    alert_id: int | None
    data: dict[str, Any]


def alert_event(
    change: AlertChange,
    alert_id: int,
    org_unit_id: int,
    subject_id: int,
    data: dict[str, Any] | None = None,
) -> DomainEvent:
    """The event recording ``change`` of an alert."""
    return DomainEvent(change.event_name, org_unit_id, subject_id, alert_id, data or {})


def event_of(change: AppliedChange) -> DomainEvent:
    """The domain event telling an alert's ``change``; it goes to the event log with the
    transaction that made the change, as its last write."""
    op = change.op
    return alert_event(
        change.kind, change.alert_id, op.org_unit_id, op.subject_id, {"type": op.type}
    )
