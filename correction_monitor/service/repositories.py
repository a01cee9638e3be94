"""What the handlers need from storage: one repository per aggregate, as protocols.

PostgreSQL implements them in ``adapters/repositories.py`` (one connection and transaction,
held by the unit of work); tests implement them in memory (``tests/fakes.py``). Every method
returns domain objects; a lookup that finds nothing raises
:class:`~correction_monitor.adapters.errors.NotFound`, an insert that meets a taken unique key
raises :class:`~correction_monitor.adapters.errors.AlreadyExists`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from shapely.geometry.base import BaseGeometry

from correction_monitor.domain.alert_quality import QualityRow
from correction_monitor.domain.alerts import (
    AlertOp,
    AlertStatus,
    AlertType,
    AppliedChange,
    Disposition,
    Gravity,
)
from correction_monitor.domain.checkin_deadlines import DueReminder, LevelTerms, MissedWindow
from correction_monitor.domain.checkins import (
    AnswerTarget,
    Checkin,
    CheckinKind,
    CheckinStatus,
    Draw,
    NewCheckin,
    StoredSchedule,
)
from correction_monitor.domain.events import StoredEvent
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.incidents import Incident, Neighbour
from correction_monitor.domain.integrity import RuleAlert
from correction_monitor.domain.ladder import (
    CleanSubject,
    ConfirmedAlert,
    LostContactEpisode,
    NewProposal,
    Proposal,
    ProposalStatus,
)
from correction_monitor.domain.leave import (
    ApprovalLevel,
    ApprovedLeave,
    Leave,
    LeaveReport,
    LeaveStatus,
    NewLeave,
    NewLeaveReport,
)
from correction_monitor.domain.messages import NewMessage, SubjectMessage
from correction_monitor.domain.models import (
    AdminAreaRecord,
    Alert,
    AuditRecord,
    Device,
    GeofenceRecord,
    NewFence,
    NewSubject,
    Officer,
    OrgUnit,
    SilentSubject,
    Subject,
    SubjectContact,
    SupervisionLevel,
)
from correction_monitor.domain.notifications import (
    Channel,
    ChannelKind,
    Claimed,
    DeliveryRecord,
    DueDelivery,
    Failure,
    Notice,
    RobotMinute,
)
from correction_monitor.domain.patrol import NewPatrolTeam, PatrolTeam, Plan, RiskFacts
from correction_monitor.domain.tasks import (
    Candidate,
    Escalation,
    NewTask,
    Task,
    TaskKind,
    TaskStatus,
    TaskStep,
)
from correction_monitor.domain.timers import DueTimer
from geofences.geojson import AdminArea


class OrgUnitRepository(Protocol):
    async def get(self, unit_id: int) -> OrgUnit: ...

    async def get_by_code(self, code: str) -> OrgUnit: ...

    async def add(self, code: str, name: str, parent_id: int | None, timezone: str) -> OrgUnit: ...

    async def all(self) -> list[OrgUnit]: ...

    async def lineage_ids(self, unit_id: int) -> frozenset[int]:
        """The unit and every unit above it (station → county → ...)."""
        ...

    async def codes_by_id(self, ids: Iterable[int]) -> dict[int, str]: ...


class OfficerRepository(Protocol):
    async def get(self, officer_id: int) -> Officer: ...

    async def get_by_username(self, username: str) -> Officer: ...

    async def add(
        self,
        username: str,
        password_hash: str,
        role: str,
        org_unit_id: int,
        display_name: str | None = None,
        phone: str | None = None,
    ) -> Officer: ...

    async def list_in(self, org_unit_ids: frozenset[int] | None) -> list[Officer]:
        """Officers of these units (all with None), by id."""
        ...

    async def set_password_hash(self, officer_id: int, password_hash: str) -> None: ...

    async def record_login_failure(self, username: str, at: datetime) -> None:
        """Remember a failed login for ``username`` (known or not) at ``at``."""
        ...

    async def login_failures_since(
        self, username: str, since: datetime, limit: int
    ) -> list[datetime]:
        """When the last ``limit`` failed logins for ``username`` after ``since`` happened,
        newest first."""
        ...

    async def store_token(self, digest: bytes, officer_id: int, expires_at: datetime) -> None:
        """Keep a bearer token's SHA-256 digest until ``expires_at`` (UTC)."""
        ...

    async def token_expires_at(self, digest: bytes) -> datetime | None:
        """When the token of this digest expires; None when there is no such token (never
        issued, revoked, or purged after expiring)."""
        ...

    async def revoke_token(self, digest: bytes) -> bool:
        """Drop the token of this digest at once; False when there was none."""
        ...


class SubjectRepository(Protocol):
    async def get(self, subject_id: int) -> Subject: ...

    async def get_for_update(self, subject_id: int) -> Subject:
        """The subject, its row locked until the unit of work ends (changes read, then
        written, without another change between)."""
        ...

    async def update_supervision(
        self,
        subject_id: int,
        *,
        supervision_level: SupervisionLevel,
        responsible_officer_id: int | None,
        responsible_supervisor_id: int | None,
    ) -> Subject:
        """Set the subject's level and who is responsible for it; the subject as it now is."""
        ...

    async def add(self, new: NewSubject) -> Subject: ...

    async def list_in(
        self, org_unit_ids: frozenset[int] | None, *, limit: int, offset: int
    ) -> list[Subject]:
        """Subjects of these units (all with None), by id."""
        ...

    async def contact(self, subject_id: int) -> SubjectContact | None:
        """How the subject's device has been heard from (None when nothing is recorded)."""
        ...


class DeviceRepository(Protocol):
    async def add(
        self, subject_id: int, digest: bytes, osmand_id: str, platform: str | None
    ) -> Device:
        """Enrol a device; AlreadyExists when the token digest or OsmAnd id is taken
        (the unit of work stays usable, so other identifiers can be tried)."""
        ...

    async def list_for(self, subject_id: int) -> list[Device]: ...

    async def revoke(self, subject_id: int, device_id: int) -> Device:
        """Revoke an unrevoked device of this subject; NotFound when there is none."""
        ...


class GeoRepository(Protocol):
    """Shared geometries, imported administrative areas and fences."""

    async def store_geometry(self, geometry: BaseGeometry) -> int:
        """Store a WGS-84 geometry once; the id of its (possibly existing) row."""
        ...

    async def load_geometry(self, geometry_id: int) -> BaseGeometry: ...

    async def upsert_admin_area(self, area: AdminArea, geometry_id: int, source_crs: str) -> None:
        """Store an area under its adcode, replacing an earlier import of it."""
        ...

    async def admin_areas(self) -> list[AdminAreaRecord]: ...

    async def admin_area_shapes(self) -> dict[str, AdminArea]:
        """Every imported area with its boundary, by adcode."""
        ...

    async def add_fence(self, new: NewFence) -> GeofenceRecord: ...

    async def get_fence(self, fence_id: int) -> GeofenceRecord: ...

    async def get_fences(self, ids: Iterable[int]) -> list[GeofenceRecord]:
        """Those of ``ids`` that exist."""
        ...

    async def list_fences(self, org_unit_ids: frozenset[int] | None) -> list[GeofenceRecord]:
        """Fences of these units (all with None), by id."""
        ...


class AlertRepository(Protocol):
    async def get(self, alert_id: int) -> Alert: ...

    async def apply(
        self, ops: Sequence[AlertOp], detected_at: datetime | None = None
    ) -> list[AppliedChange]:
        """Open and end episodes' alerts (idempotent per episode), new ones detected at
        ``detected_at`` (the caller's clock); the changes made, whose events the caller
        emits."""
        ...

    async def list_in(
        self,
        org_unit_ids: frozenset[int] | None,
        *,
        subject_id: int | None = None,
        type: AlertType | None = None,
        status: AlertStatus | None = None,
        limit: int,
    ) -> list[Alert]:
        """Alerts of these units (all with None), newest first; retracted ones too (an
        alert officers could see is never hidden)."""
        ...

    async def acknowledge(self, alert_id: int, officer_id: int, at: datetime | None = None) -> bool:
        """Mark an open alert acknowledged at ``at`` (the caller's clock); True when this
        call changed it."""
        ...

    async def resolve(
        self,
        alert_id: int,
        officer_id: int,
        disposition: Disposition,
        note: str | None,
        gravity: Gravity = Gravity.MINOR,
        at: datetime | None = None,
    ) -> bool:
        """Resolve an alert not yet resolved (acknowledging it too if it was open) with a
        disposition and a gravity (情节) at ``at`` (the caller's clock); True when this call
        changed it."""
        ...


class AlertLifecycleRepository(Protocol):
    """Self-resolution, release to officers and reopening (``service/self_resolution.py``,
    ``service/alerts.py``); each change is made at most once."""

    async def lock(self, alert_id: int) -> None: ...

    async def start_grace(self, alert_id: int, grace_s: float) -> datetime | None:
        """Start the alert's self-resolution grace; when it ends (UTC), or None when it
        had started, or the alert was released or self-resolved."""
        ...

    async def release(self, alert_id: int, at: datetime) -> bool: ...

    async def self_resolve(self, alert_id: int) -> bool: ...

    async def reopen(
        self, alert_id: int, at: datetime, officer_id: int, previous: dict[str, Any]
    ) -> bool:
        """Reopen a resolved alert, keeping ``previous`` in its resolution history."""
        ...


class IncidentRepository(Protocol):
    """Incidents grouping the alerts of one event (``domain/incidents.py``)."""

    async def neighbours(
        self,
        subject_id: int,
        alert_id: int,
        types: Sequence[str],
        since: datetime,
        ongoing_types: Sequence[str],
    ) -> list[Neighbour]: ...

    async def create(
        self, subject_id: int, org_unit_id: int, opened_at: datetime, data: dict[str, Any]
    ) -> int: ...

    async def attach(self, incident_id: int, alert_ids: Sequence[int]) -> list[int]: ...

    async def get(self, incident_id: int) -> Incident: ...


class ReportRepository(Protocol):
    """Aggregates for reports (``service/reports.py``)."""

    async def alert_quality(
        self,
        org_unit_ids: frozenset[int] | None,
        start: datetime | None,
        end: datetime | None,
        *,
        by_org_unit: bool,
    ) -> list[QualityRow]: ...


class FixRepository(Protocol):
    """Stored fixes, as officers read them (ingestion writes them in its own transaction)."""

    async def track(
        self, subject_id: int, start: datetime, end: datetime, limit: int
    ) -> list[TrackPoint]:
        """The subject's first ``limit`` fixes in ``[start, end)``, time-ordered."""
        ...


class AuditLog(Protocol):
    """The audit log's read side (entries are written through ``UnitOfWork.audit``)."""

    async def entries(
        self, *, subject_id: int | None, limit: int, scope: frozenset[int] | None
    ) -> list[AuditRecord]:
        """Newest first; with ``scope``, only entries about subjects of those units, or about
        no single subject and written by an officer (not an administrator) of those units."""
        ...


class TimerRepository(Protocol):
    """Due durable timers (``service/timers.py`` fires them)."""

    async def take_due(self, now: datetime, limit: int, kinds: Sequence[str]) -> list[DueTimer]:
        """Lock up to ``limit`` timers of ``kinds`` due at ``now`` (timers that other units
        of work hold are skipped)."""
        ...

    async def mark_fired(self, timer_id: int, at: datetime) -> None: ...

    async def mark_failed(self, timer_id: int, error: str, retry_at: datetime) -> None: ...

    async def cancel(self, kind: str, key: str) -> bool:
        """Drop a timer that has not fired; True when there was one."""
        ...


class EventLog(Protocol):
    """The event log's read side and consumer cursors (``service/consumers.py``)."""

    async def take_cursor(self, consumer: str) -> int | None:
        """Lock the consumer's position for this unit of work; None when another holds it."""
        ...

    async def advance_cursor(self, consumer: str, position: int) -> None: ...

    async def read_after(
        self, after_id: int, *, names: Sequence[str] | None = None, limit: int = 500
    ) -> list[StoredEvent]:
        """Events after ``after_id`` in commit order (only ``names`` when given)."""
        ...

    async def last_id(self) -> int:
        """The newest visible event's position."""
        ...


class ContactRepository(Protocol):
    """Who has gone silent (``service/lost_contact.py``)."""

    async def silent_since(self, before: datetime) -> list[SilentSubject]: ...

    async def mark_lost(self, subject_id: int, since: datetime) -> bool: ...


class MessageRepository(Protocol):
    """Messages to subjects' apps."""

    async def add(self, messages: Sequence[NewMessage], at: datetime) -> list[SubjectMessage]:
        """Send ``messages`` at ``at``; those whose dedupe key the subject already has are
        skipped (and not returned)."""

    async def since(self, subject_id: int, after_id: int, limit: int) -> list[SubjectMessage]:
        """The subject's messages with an id above ``after_id``, oldest first."""

    async def mark_read(self, subject_id: int, message_id: int, at: datetime) -> datetime | None:
        """Mark the message read (the first read counts); None when the subject has none such."""


class IntegrityRepository(Protocol):
    """Device-integrity alerts by rule, and a subject's devices as the ``new_device`` rule
    reads them (``service/integrity.py``)."""

    async def lock_subject(self, subject_id: int) -> None:
        """Serialise the subject's integrity signals until the unit of work ends."""
        ...

    async def alerts_of_rule(self, subject_id: int, rule: str) -> list[RuleAlert]:
        """Every device_integrity alert of the subject for ``rule``, oldest first."""
        ...

    async def set_evidence(self, alert_id: int, evidence: dict[str, Any]) -> None: ...

    async def devices_heard(self, subject_id: int) -> list[tuple[int, str | None, datetime | None]]:
        """The subject's unrevoked devices: (id, platform, last heard from or None), by id."""
        ...


class LeaveRepository(Protocol):
    """Leave (外出) applications, their decisions and the subject's reports."""

    async def add(self, new: NewLeave) -> Leave: ...

    async def get(self, leave_id: int, *, for_update: bool = False) -> Leave:
        """One leave (locked for the unit of work with ``for_update``)."""
        ...

    async def list_in(
        self,
        org_unit_ids: frozenset[int] | None,
        *,
        status: LeaveStatus | None,
        subject_id: int | None,
        limit: int,
    ) -> list[Leave]:
        """Leaves of these units (all with None), newest first."""
        ...

    async def of_subject(self, subject_id: int, limit: int) -> list[Leave]:
        """The subject's leaves, newest first."""
        ...

    async def decide(
        self,
        leave_id: int,
        status: LeaveStatus,
        *,
        officer_id: int | None,
        at: datetime,
        note: str | None,
        approval_level: ApprovalLevel,
    ) -> Leave | None:
        """Move a pending leave to ``status``; None when it is no longer pending."""
        ...

    async def approved_spans(
        self, subject_id: int, start: datetime, end: datetime, except_id: int
    ) -> list[tuple[datetime, datetime]]:
        """Spans of the subject's approved non-commuting leaves but ``except_id`` meeting
        ``[start, end]``."""
        ...

    async def add_report(self, new: NewLeaveReport) -> LeaveReport: ...

    async def reports(self, leave_id: int) -> list[LeaveReport]: ...


class CheckinDeadlineRepository(Protocol):
    """Closing missed check-in windows and finding due reminders, in bulk
    (``service/checkin_deadlines.py``)."""

    async def close_due(
        self, now: datetime, limit: int, terms: Sequence[LevelTerms]
    ) -> list[MissedWindow]:
        """Close up to ``limit`` pending windows due at ``now`` (skipping those others hold)
        as missed, each opening its ``missed_checkin`` alert; the windows closed."""
        ...

    async def due_reminders(
        self, now: datetime, leads: Sequence[tuple[str, float]], limit: int
    ) -> list[DueReminder]:
        """Lock up to ``limit`` pending windows whose next reminder is due at ``now``."""
        ...

    async def mark_reminded(self, checkin_ids: Sequence[int], at: datetime) -> None: ...


class ProfileRepository(Protocol):
    """What the subject's app is shown of its own rules beyond the subject's record."""

    async def own_schedule(self, subject_id: int) -> list[dict[str, Any]] | None:
        """The subject's own check-in windows (一人一策) as stored; None when it follows its
        level's."""
        ...


class CheckinRepository(Protocol):
    """Check-in windows and challenges, a subject's own schedule, how far it is laid out and
    its challenge draws (``service/checkins.py``)."""

    async def lock_layout(self, subject_id: int) -> None:
        """Serialise the subject's layouts until the unit of work ends."""
        ...

    async def laid_until(self, subject_id: int) -> datetime | None: ...

    async def set_laid_until(self, subject_id: int, until: datetime, at: datetime) -> None: ...

    async def subjects_behind(self, before: datetime, today: date, limit: int) -> list[int]:
        """Active subjects, their term not over by ``today``, laid out short of ``before``."""
        ...

    async def schedule(self, subject_id: int) -> StoredSchedule | None: ...

    async def set_schedule(
        self, subject_id: int, windows: list[dict[str, Any]], officer_id: int, at: datetime
    ) -> None: ...

    async def clear_schedule(self, subject_id: int) -> bool:
        """Drop the subject's own schedule; False when it had none."""
        ...

    async def add(self, new: Sequence[NewCheckin], at: datetime) -> list[Checkin]:
        """Lay out windows and challenges (one per subject, kind and opening); the ones
        created, or revived from cancelled."""
        ...

    async def pending_after(
        self, subject_id: int, kind: CheckinKind, after: datetime
    ) -> list[Checkin]: ...

    async def cancel(self, checkin_ids: Sequence[int]) -> None:
        """Cancel pending check-ins (replaced before they opened; never shown)."""
        ...

    async def cancel_stale_challenges(
        self, subject_id: int, after: datetime, keep_period: str | None
    ) -> int:
        """Cancel drawn challenges opening after ``after`` whose draw's period is not
        ``keep_period`` (all of them with None); how many."""
        ...

    async def list_for(
        self,
        subject_id: int,
        start: datetime,
        end: datetime,
        *,
        challenges_opened_by: datetime | None,
        limit: int,
    ) -> list[Checkin]: ...

    async def get(self, checkin_id: int, *, for_update: bool = False) -> Checkin | None: ...

    async def answer_target(self, checkin_id: int) -> AnswerTarget | None:
        """The check-in, locked until the unit of work ends, with what an answer needs of
        its subject; None when there is no such check-in."""
        ...

    async def answer(
        self,
        checkin_id: int,
        *,
        status: CheckinStatus,
        reasons: Sequence[str],
        answered_at: datetime,
        answer: dict[str, Any],
        photo_sha256: str | None,
        device_id: int,
    ) -> Checkin | None:
        """Record an answer; None when the check-in was answered already."""
        ...

    async def review(
        self,
        checkin_id: int,
        *,
        status: CheckinStatus,
        officer_id: int,
        at: datetime,
        note: str | None,
    ) -> Checkin | None:
        """Decide a check-in that needs review; None when it does not."""
        ...

    async def photo_used_by(
        self, subject_id: int, photo_sha256: str, other_than: int
    ) -> int | None: ...

    async def draw(self, subject_id: int, period: str, period_start: datetime) -> Draw | None: ...

    async def add_draw(
        self,
        *,
        subject_id: int,
        period: str,
        period_start: datetime,
        period_end: datetime,
        seed: str,
        algorithm: str,
        inputs: dict[str, Any],
        times: list[str],
        at: datetime,
    ) -> Draw | None:
        """Store a draw; None when the period was drawn already."""
        ...

    async def draws(self, subject_id: int, limit: int) -> list[Draw]: ...

    async def approved_leaves(
        self, subject_id: int, start: datetime, end: datetime
    ) -> list[ApprovedLeave]:
        """The subject's approved leaves whose span meets ``[start, end]``."""
        ...


class ProposalRepository(Protocol):
    """Proposals of the legal ladder, and what the ladder reads to make them."""

    async def add(self, new: NewProposal) -> Proposal | None:
        """Store a proposal; None when its dedupe key was proposed already."""
        ...

    async def get(self, proposal_id: int, *, for_update: bool = False) -> Proposal: ...

    async def list_in(
        self,
        org_unit_ids: frozenset[int] | None,
        *,
        status: ProposalStatus | None,
        subject_id: int | None,
        limit: int,
    ) -> list[Proposal]: ...

    async def decide(
        self,
        proposal_id: int,
        status: ProposalStatus,
        *,
        officer_id: int,
        at: datetime,
        note: str | None,
    ) -> Proposal | None:
        """Record the decision of a pending proposal; None when it is not pending."""
        ...

    async def approved_counts(self, subject_id: int) -> dict[str, int]:
        """The subject's approved proposals, counted by measure."""
        ...

    async def pending_level_change(self, subject_id: int, level: SupervisionLevel) -> bool: ...

    async def resolved_alert(self, alert_id: int) -> ConfirmedAlert | None: ...

    async def lost_contact_episodes(self, subject_id: int) -> list[LostContactEpisode]: ...

    async def clean_at_normal(
        self, clean_since_before: datetime, limit: int
    ) -> list[CleanSubject]: ...


class TaskRepository(Protocol):
    """Tasks (二级包保) and their steps; the SLA sweep's escalations in bulk."""

    async def add(self, new: NewTask) -> Task | None:
        """Open a task; None when its dedupe key is taken (opened already)."""
        ...

    async def get(self, task_id: int, *, for_update: bool = False) -> Task: ...

    async def complete(
        self,
        *,
        key: str | None = None,
        task_id: int | None = None,
        at: datetime,
        done_by: int | None,
        outcome: str | None = None,
        note: str | None = None,
    ) -> Task | None:
        """Mark the open task (by dedupe key or id) done; None when none is open."""
        ...

    async def list_in(
        self,
        *,
        scope: frozenset[int] | None,
        viewer_id: int,
        status: TaskStatus | None,
        assignee_id: int | None,
        subject_id: int | None,
        kind: TaskKind | None,
        limit: int,
    ) -> list[Task]:
        """Tasks of the scope's units or held by the viewer, open first by due time."""
        ...

    async def steps(self, task_id: int) -> list[TaskStep]: ...

    async def add_step(
        self,
        task_id: int,
        kind: str,
        at: datetime,
        officer_id: int | None,
        note: str | None,
        data: dict[str, Any],
    ) -> TaskStep: ...

    async def candidates(self, org_unit_id: int) -> list[Candidate]:
        """Supervisors of the station and administrators above it, nearest first."""
        ...

    async def escalate_due(
        self, now: datetime, limit: int, escalation_sla_s: Sequence[float]
    ) -> list[Escalation]:
        """Escalate a batch of due open tasks (claimed SKIP LOCKED), with their steps and
        audit entries; the caller emits the events."""
        ...


class NotificationRepository(Protocol):
    """Notification channels and deliveries (``adapters/notifications.py``): channels of org
    units, one delivery per (channel, event), claimed with leases by senders."""

    async def add_channel(
        self,
        *,
        org_unit_id: int,
        kind: ChannelKind,
        url: str,
        secret: str | None,
        settings: dict[str, Any],
        events: Sequence[str],
        created_by: int | None,
        at: datetime,
    ) -> Channel: ...

    async def get_channel(self, channel_id: int) -> Channel: ...

    async def channels(self, ids: Iterable[int]) -> dict[int, Channel]: ...

    async def list_channels(
        self, org_unit_ids: frozenset[int] | None, *, include_inactive: bool
    ) -> list[Channel]: ...

    async def deactivate(self, channel_id: int) -> bool: ...

    async def fan_out(self, event_id: int, name: str, org_unit_id: int, at: datetime) -> int:
        """Pending deliveries of the event to the active channels of its unit and the units
        above it that want it; a pair already written is left alone."""
        ...

    async def fan_out_many(self, events: Sequence[tuple[int, str, int]], at: datetime) -> int:
        """:meth:`fan_out` for many (event id, name, org unit id) at once."""
        ...

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Claimed]:
        """Lease due deliveries of channels without a rate limit (SKIP LOCKED)."""
        ...

    async def robot_channels_due(self, now: datetime, limit: int) -> list[int]: ...

    async def lock_robot(self, channel_id: int, now: datetime) -> RobotMinute | None:
        """Hold the robot channel for this transaction and read its rolling minute; None
        when another sender holds it."""
        ...

    async def robot_due(self, channel_id: int, now: datetime, limit: int) -> list[DueDelivery]: ...

    async def fold(self, ids: Sequence[int]) -> None: ...

    async def postpone(self, ids: Sequence[int], until: datetime) -> None: ...

    async def claim_ids(self, ids: Sequence[int], lease_until: datetime) -> list[Claimed]: ...

    async def record_robot_sends(self, channel_id: int, at: datetime, count: int) -> None: ...

    async def digest_members(self, carrier_ids: Sequence[int]) -> dict[int, list[int]]: ...

    async def notices(self, event_ids: Iterable[int]) -> dict[int, Notice]: ...

    async def record_delivered(
        self, delivered: Sequence[tuple[int, int]], at: datetime, carriers: Sequence[int]
    ) -> None: ...

    async def record_failures(self, failures: Sequence[Failure]) -> None: ...

    async def deliveries(
        self, channel_id: int, status: str | None, limit: int
    ) -> list[DeliveryRecord]: ...


class PatrolRepository(Protocol):
    """Night patrols' teams and plans, and what planning reads (adapters/patrols.py)."""

    async def add_team(self, new: NewPatrolTeam) -> PatrolTeam | None: ...

    async def teams_in(self, org_unit_ids: frozenset[int] | None) -> list[PatrolTeam]: ...

    async def units_with_teams(self) -> list[int]: ...

    async def subtree(self, unit_id: int) -> frozenset[int]: ...

    async def subjects(
        self, org_unit_ids: frozenset[int], night: date, today: date
    ) -> list[dict[str, Any]]: ...

    async def approved_leaves(
        self, subject_ids: Sequence[int], start: datetime, end: datetime
    ) -> dict[int, list[tuple[datetime, datetime]]]: ...

    async def risks(
        self, subject_ids: Sequence[int], since: datetime, sanctions_since: datetime, at: datetime
    ) -> dict[int, RiskFacts]: ...

    async def recent_loads(
        self, team_ids: Sequence[int], since: date, until: date
    ) -> dict[int, int]: ...

    async def lock_night(self, org_unit_id: int, night: date) -> None: ...

    async def get_plan(self, plan_id: int, *, for_update: bool = False) -> Plan: ...

    async def plan_for(self, org_unit_id: int, night: date) -> Plan | None: ...

    async def plan_ids(
        self,
        org_unit_ids: frozenset[int] | None,
        night: date | None,
        status: str | None,
        limit: int,
    ) -> list[int]:
        """Ids of the plans of these units (all when None), of one night and status when
        given, the latest nights first."""
        ...

    async def plan_exists(self, org_unit_id: int, night: date) -> bool: ...

    async def delete_plan(self, plan_id: int) -> None: ...

    async def add_plan(self, plan: Plan, created_at: datetime, created_by: int | None) -> int: ...

    async def replace_routes(self, plan: Plan) -> None: ...

    async def publish(self, plan_id: int, at: datetime, by: int) -> bool: ...
