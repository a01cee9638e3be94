"""The composition root: which handler serves which command, with what it depends on.

The aiohttp app (``web/app.py``), the command line and the tests all build their
:class:`Services` here; they differ only in the unit of work they pass (PostgreSQL, or the
in-memory one of ``tests/fakes.py``) and the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.clock import Clock, SystemClock
from correction_monitor.policy import Policy, load_policy
from correction_monitor.service import (
    alerts,
    audit_log,
    boundaries,
    checkin_deadlines,
    devices,
    evidence,
    fences,
    incidents,
    ladder,
    leave,
    lost_contact,
    messages,
    notifications,
    officers,
    org_units,
    patrol_exports,
    patrol_outcomes,
    patrols,
    profile,
    proposals,
    reports,
    self_resolution,
    status,
    subjects,
    tasks,
    track,
)
from correction_monitor.service import checkins as checkin_handlers
from correction_monitor.service.auth import PasswordWork, shared_password_work
from correction_monitor.service.command import Command, Handler
from correction_monitor.service.consumers import CONSUMERS, Consumer, ConsumerRunner
from correction_monitor.service.errors import ServiceError
from correction_monitor.service.ingest import DeviceLookup, FixSubmitter, Ingest
from correction_monitor.service.timers import TIMER_HANDLERS, TimerHandler, TimerService
from correction_monitor.service.unit_of_work import PostgresUnitOfWork, UnitOfWork

R = TypeVar("R")

DEFAULT_TOKEN_TTL_S = 8 * 3600.0


@dataclass(frozen=True, slots=True)
class Services:
    """Runs commands: each through its one handler, with a fresh unit of work; fires due
    timers (``timers``) and advances the event log's consumers (``consumers``)."""

    uow: Callable[[], UnitOfWork]
    handlers: Mapping[type[Command[Any]], Handler]
    timers: TimerService
    consumers: ConsumerRunner
    clock: Clock
    # The process's bounded pool for password hashing (logins, new officers).
    passwords: PasswordWork | None = None
    # Delivers notifications (service/notifications.py); None without an HTTP transport.
    sender: notifications.NotificationSender | None = None

    async def handle(self, command: Command[R]) -> R:
        handler = self.handlers[type(command)]
        return cast(R, await handler(command, self.uow()))


def bootstrap(
    uow: Callable[[], UnitOfWork],
    *,
    policy: Policy,
    token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
    clock: Clock | None = None,
    device_credentials: devices.Credentials = devices.new_credentials,
    timer_handlers: Mapping[str, TimerHandler] | None = None,
    consumers: Sequence[Consumer] | None = None,
    positions: status.PositionCache | None = None,
    passwords: PasswordWork | None = None,
    transport: notifications.Transport | None = None,
    pdf_font: Path | None = None,
) -> Services:
    """Wire every handler to its dependencies.

    ``uow`` makes a unit of work per command; ``policy`` supplies the numbers handlers
    apply (the default home radius); ``token_ttl_s`` is how long an officer's token lives;
    ``device_credentials`` draws a new device's token and OsmAnd id; ``timer_handlers`` and
    ``consumers`` are the durable timers' handlers by kind and the event log's consumers
    (the service's own registries unless given); ``positions`` is the hot state's copy of
    the latest positions (without it, a subject's status reads PostgreSQL alone);
    ``passwords`` the bounded pool passwords are hashed and checked on (the process's own
    unless given); ``transport`` sends notifications over HTTP (no sender without it);
    ``pdf_font`` the TrueType file evidence documents embed (``CM_PDF_FONT``; the npm
    package's when None).
    """
    clock = clock or SystemClock()
    passwords = passwords or shared_password_work()
    handlers: dict[type[Command[Any]], Handler] = {
        org_units.CreateOrgUnit: org_units.create_org_unit,
        org_units.ListOrgUnits: org_units.list_org_units,
        officers.CreateOfficer: partial(officers.create_officer, passwords=passwords),
        officers.RegisterOfficer: partial(officers.register_officer, passwords=passwords),
        officers.ListOfficers: officers.list_officers,
        officers.IssueToken: partial(
            officers.issue_token, ttl_s=token_ttl_s, clock=clock, passwords=passwords
        ),
        officers.Logout: officers.logout,
        boundaries.ImportBoundaries: boundaries.import_boundaries,
        boundaries.ListBoundaries: boundaries.list_boundaries,
        fences.CreateFence: fences.create_fence,
        fences.GetFence: fences.get_fence,
        fences.ListFences: fences.list_fences,
        subjects.CreateSubject: partial(
            subjects.create_subject, default_home_radius_m=policy.default_home_radius_m
        ),
        subjects.GetSubject: subjects.get_subject,
        subjects.ListSubjects: subjects.list_subjects,
        subjects.ChangeSubject: subjects.change_subject,
        devices.EnrolDevice: partial(
            devices.enrol_device,
            credentials=device_credentials,
            integrity=policy.integrity,
            clock=clock,
        ),
        devices.ListDevices: devices.list_devices,
        devices.RevokeDevice: devices.revoke_device,
        alerts.ListAlerts: alerts.list_alerts,
        alerts.GetAlert: alerts.get_alert,
        alerts.OpenAlertFeed: alerts.open_alert_feed,
        lost_contact.SweepLostContact: partial(lost_contact.sweep_lost_contact, policy=policy),
        alerts.AcknowledgeAlert: partial(alerts.acknowledge_alert, clock=clock),
        alerts.ResolveAlert: partial(alerts.resolve_alert, clock=clock),
        alerts.ReopenAlert: partial(alerts.reopen_alert, clock=clock),
        incidents.GetIncident: incidents.get_incident,
        reports.AlertQualityReport: reports.alert_quality_report,
        reports.PublishAlertQualityMetrics: reports.publish_alert_quality_metrics,
        track.ReadTrack: partial(track.read_track, clock=clock),
        evidence.RenderEvidence: partial(evidence.render_evidence, clock=clock, font=pdf_font),
        status.ReadSubjectStatus: partial(status.read_subject_status, positions=positions),
        audit_log.ListAuditEntries: audit_log.list_audit_entries,
        checkin_deadlines.SweepCheckinDeadlines: partial(
            checkin_deadlines.sweep_checkin_deadlines, policy=policy
        ),
        profile.ReadProfile: partial(profile.read_profile, policy=policy),
        messages.ListOwnMessages: messages.list_own_messages,
        messages.MarkMessageRead: partial(messages.mark_message_read, clock=clock),
        messages.SendMessage: partial(messages.send_message, clock=clock),
        messages.ListSubjectMessages: messages.list_subject_messages,
        leave.ApplyLeave: partial(leave.apply_leave, policy=policy, clock=clock),
        leave.ListMyLeave: leave.list_my_leave,
        leave.CancelLeave: partial(leave.cancel_leave, clock=clock),
        leave.ReportLeave: partial(leave.report_leave, policy=policy, clock=clock),
        leave.ListLeave: leave.list_leave,
        leave.GetLeave: leave.get_leave,
        leave.DecideLeave: partial(leave.decide_leave, policy=policy, clock=clock),
        checkin_handlers.LayOutCheckins: partial(checkin_handlers.lay_out_checkins, policy=policy),
        checkin_handlers.ListMyCheckins: partial(
            checkin_handlers.list_my_checkins, policy=policy, clock=clock
        ),
        checkin_handlers.ListSubjectCheckins: partial(
            checkin_handlers.list_subject_checkins, policy=policy, clock=clock
        ),
        checkin_handlers.ListCheckinDraws: checkin_handlers.list_checkin_draws,
        checkin_handlers.SetCheckinSchedule: partial(
            checkin_handlers.set_checkin_schedule, policy=policy, clock=clock
        ),
        checkin_handlers.ClearCheckinSchedule: partial(
            checkin_handlers.clear_checkin_schedule, policy=policy, clock=clock
        ),
        checkin_handlers.IssueChallenge: partial(checkin_handlers.issue_challenge, clock=clock),
        checkin_handlers.ReviewCheckin: partial(checkin_handlers.review_checkin, clock=clock),
        checkin_handlers.AnswerCheckin: partial(
            checkin_handlers.answer_checkin,
            policy=policy,
            clock=clock,
            areas=checkin_handlers.AreaCache(),
        ),
        proposals.ListProposals: proposals.list_proposals,
        proposals.GetProposal: proposals.get_proposal,
        proposals.DecideProposal: partial(proposals.decide_proposal, clock=clock),
        ladder.ProposeLenient: partial(ladder.propose_lenient_levels, policy=policy),
        tasks.ListTasks: tasks.list_tasks,
        tasks.GetTask: tasks.get_task,
        tasks.RecordTaskStep: partial(tasks.record_task_step, clock=clock),
        tasks.CompleteTask: partial(tasks.complete_task, clock=clock),
        tasks.SweepTaskEscalations: partial(tasks.sweep_task_escalations, policy=policy),
        notifications.CreateChannel: partial(notifications.create_channel, clock=clock),
        notifications.ListChannels: notifications.list_channels,
        notifications.DeactivateChannel: notifications.deactivate_channel,
        notifications.ListDeliveries: notifications.list_deliveries,
        patrols.CreateTeam: partial(patrols.create_team, policy=policy),
        patrols.ListTeams: patrols.list_teams,
        patrols.CreatePlan: partial(patrols.create_plan, policy=policy, clock=clock),
        patrols.GetPlan: patrols.get_plan,
        patrols.ListPlans: patrols.list_plans,
        patrols.PublishPlan: partial(patrols.publish_plan, clock=clock),
        patrols.EditPlan: partial(patrols.edit_plan, policy=policy, clock=clock),
        patrols.Forecast: partial(patrols.forecast, policy=policy, clock=clock),
        patrols.PlanComingNights: partial(patrols.plan_coming_nights, policy=policy, clock=clock),
        patrol_exports.ExportPlan: patrol_exports.export_plan,
        patrol_exports.RenderPatrolSheet: partial(
            patrol_exports.render_patrol_sheet, clock=clock, font=pdf_font
        ),
        patrol_outcomes.RecordStopOutcome: partial(
            patrol_outcomes.record_stop_outcome, clock=clock, policy=policy
        ),
    }
    if timer_handlers is None:
        # A drawn challenge's opening tells the subject's app (service/checkins.py).
        timer_handlers = {
            **TIMER_HANDLERS,
            checkin_handlers.CHALLENGE_TIMER: checkin_handlers.challenge_opened,
            # A self-resolution grace ran out: the alert reaches officers.
            self_resolution.RELEASE_TIMER: partial(self_resolution.release_when_due, clock=clock),
        }
    if consumers is None:
        # A level change or a leave decision lays the subject's windows out again.
        # A confirmed alert or an approved response feeds the legal ladder.
        consumers = [
            *CONSUMERS,
            # First: opened alerts are released (or wait out a self-resolution grace) and
            # grouped into incidents, so the same run's later consumers see the release.
            self_resolution.consumer(policy, clock),
            checkin_handlers.relayout_consumer(policy, clock),
            ladder.ladder_consumer(policy, clock),
            # Alerts reaching officers, check-ins to review, leave applications and
            # proposals open tasks; what settles them completes them (service/tasks.py).
            tasks.task_consumer(policy, clock),
            # Last, so the events the others emitted in this run are delivered in it too.
            notifications.notifications_consumer(clock),
        ]
    timers = TimerService(uow, timer_handlers, clock)
    runner = ConsumerRunner(uow, consumers)
    sender = (
        notifications.NotificationSender(uow, transport, policy.notifications, clock)
        if transport is not None
        else None
    )
    return Services(uow, handlers, timers, runner, clock, passwords, sender)


def ingest_service(
    devices: DeviceLookup,
    committer: FixSubmitter,
    *,
    policy: Policy,
    clock: Clock | None = None,
) -> Ingest:
    """The ingest use case of a process: phones' uploads authenticated by its device
    directory (``service/device_identity.py``), held to ``policy``'s ingest bounds on
    ``clock`` and handed to its group committer, whose transaction is each upload's (no unit
    of work per upload)."""
    return Ingest(devices, committer, policy=policy.ingest, clock=clock or SystemClock())


async def create_officer(
    database_url: str,
    *,
    username: str,
    password: str,
    role: str,
    org_code: str,
    org_name: str | None = None,
    parent_code: str | None = None,
    timezone: str = "Asia/Shanghai",
) -> int:
    """Create an officer, creating their org unit first when it does not exist; returns the
    officer's id. For the command line, the demo and test set-ups, which hold a database
    URL and nothing else.

    Raises ValueError with a readable message for a bad role, a duplicate username, an
    unknown parent or a weak password.
    """
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        services = bootstrap(lambda: PostgresUnitOfWork(pool), policy=load_policy())
        officer = await services.handle(
            officers.CreateOfficer(
                username=username,
                password=password,
                role=role,
                org_code=org_code,
                org_name=org_name,
                parent_code=parent_code,
                timezone=timezone,
            )
        )
    except ServiceError as exc:
        raise ValueError(exc.message) from exc
    finally:
        await pool.close()
    return officer.id
