"""Tasks (二级包保): opened and completed from the event log, escalated by the SLA sweep,
worked by officers (docs/tasks.md).

- **Opening and completion** (:func:`task_consumer`): a consumer of the event log opens a
  task for each event that calls for one and completes it on the event that settles it. Its
  effects commit with its cursor, and each task's ``dedupe_key`` is unique, so an event
  handled again opens nothing twice.
- **Escalation** (:class:`SweepTaskEscalations`): every process sweeps every few seconds on
  the injected clock (``service/jobs.py``); each batch claims due open tasks ``FOR UPDATE
  SKIP LOCKED`` and escalates them in one statement, so two processes never escalate a task
  twice and a restart finds only what is still due.
- **Officers** list their queue, read a task with its steps, record a search's steps (and
  notes on any task), and close a search with its outcome. Each write is audited and told
  as an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import CASEWORK_ROLES, Principal
from correction_monitor.domain.alerts import AlertStatus
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import DomainEvent, EventName, StoredEvent
from correction_monitor.domain.leave import ApprovalLevel
from correction_monitor.domain.models import Subject
from correction_monitor.domain.tasks import (
    OFFICER_STEPS,
    SEARCH_STEPS,
    NewTask,
    SearchOutcome,
    StepKind,
    Task,
    TaskKind,
    TaskStatus,
    TaskStep,
    ack_due,
    county_admin,
    dedupe_key,
    first_assignee,
    kind_for_alert,
    leave_assignee,
)
from correction_monitor.domain.timeutil import BadInstant, parse_instant
from correction_monitor.policy import Policy
from correction_monitor.service.command import Command
from correction_monitor.service.consumers import Consumer
from correction_monitor.service.errors import Conflict, Forbidden, InvalidInput, NotFound
from correction_monitor.service.unit_of_work import UnitOfWork

LIST_LIMIT = 500
"""Tasks per list, open ones first by due time."""
SWEEP_BATCH = 5000
"""Tasks per escalation transaction: a few dozen statements for 100,000 due tasks, each
holding its row locks and the event log's ordering lock well under a second."""
STEP_CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of the service's clock an officer's ``at`` may be (phones drift)."""


# ------------------------------------------------------------------------- opening


def _audit_opened(uow: UnitOfWork, task: Task, cause: StoredEvent) -> None:
    uow.audit(
        officer_id=None,
        action="task.create",
        subject_id=task.subject_id,
        detail=task.event_data() | {"event_id": cause.id, "event": cause.name},
    )
    uow.emit(
        DomainEvent(
            EventName.TASK_CREATED,
            task.org_unit_id,
            subject_id=task.subject_id,
            alert_id=task.alert_id,
            data=task.event_data(),
        )
    )


async def _open(uow: UnitOfWork, new: NewTask, cause: StoredEvent) -> Task | None:
    """Open ``new`` unless it was opened already; the task, or None."""
    task = await uow.tasks.add(new)
    if task is not None:
        _audit_opened(uow, task, cause)
    return task


async def _complete(
    uow: UnitOfWork,
    key: str,
    at: datetime,
    done_by: int | None,
    cause: StoredEvent,
    outcome: str | None = None,
) -> Task | None:
    """Complete the open task of ``key`` because of ``cause``; nothing when none is open."""
    task = await uow.tasks.complete(key=key, at=at, done_by=done_by, outcome=outcome)
    if task is None:
        return None
    await uow.tasks.add_step(
        task.id, StepKind.DONE.value, at, done_by, None, {"event": cause.name, "outcome": outcome}
    )
    _done(uow, task, officer_id=None, detail={"event_id": cause.id, "event": cause.name})
    return task


def _done(
    uow: UnitOfWork,
    task: Task,
    *,
    officer_id: int | None,
    detail: dict[str, Any],
    request_id: str | None = None,
) -> None:
    """Audit and tell a task's completion (``officer_id`` None: settled by an event)."""
    data = task.event_data() | {"done_by": task.done_by, "outcome": task.outcome}
    uow.audit(
        officer_id=officer_id,
        action="task.done",
        subject_id=task.subject_id,
        request_id=request_id,
        detail=data | detail,
    )
    uow.emit(
        DomainEvent(
            EventName.TASK_DONE,
            task.org_unit_id,
            subject_id=task.subject_id,
            alert_id=task.alert_id,
            data=data,
        )
    )


async def _alert_released(
    event: StoredEvent, uow: UnitOfWork, policy: Policy, now: datetime
) -> None:
    """An alert reached officers: a verification (a search for lost contact) for the
    subject's responsible officer, due by the level's acknowledgement SLA."""
    if event.alert_id is None:
        return
    alert = await uow.alerts.get(event.alert_id)
    subject = await uow.subjects.get(alert.subject_id)
    level = policy.level(subject.supervision_level)
    kind = kind_for_alert(alert.type)
    candidates = await uow.tasks.candidates(alert.org_unit_id)
    task = await _open(
        uow,
        NewTask(
            kind=kind,
            subject_id=alert.subject_id,
            org_unit_id=alert.org_unit_id,
            assignee_id=first_assignee(subject.responsible_officer_id, candidates),
            due_at=ack_due(
                alert.detected_at, alert.severity, level.ack_sla_high_s, level.ack_sla_normal_s
            ),
            created_at=now,
            dedupe_key=dedupe_key(kind, alert.id),
            alert_id=alert.id,
        ),
        event,
    )
    # Settled before the task could open (an officer acted during the grace, or this
    # consumer ran late): the task is done at once, so it never escalates.
    if task is None:
        return
    settled = (
        alert.status is AlertStatus.RESOLVED
        or (kind is TaskKind.VERIFY_ALERT and alert.status is AlertStatus.ACKNOWLEDGED)
        or (kind is TaskKind.SEARCH and alert.ended_at is not None)
    )
    if settled:
        done_by = alert.resolved_by or alert.acknowledged_by
        await _complete(uow, task_key(task), now, done_by, event)


def task_key(task: Task) -> str:
    about = task.alert_id or task.checkin_id or task.leave_id or task.proposal_id
    assert about is not None, "every task is about something"
    return dedupe_key(task.kind, about)


_ABOUT = {
    TaskKind.REVIEW_CHECKIN: "checkin_id",
    TaskKind.APPROVE_LEAVE: "leave_id",
    TaskKind.DECIDE_PROPOSAL: "proposal_id",
}
"""Which field names what a task that is not about an alert is about."""


async def _open_about(
    uow: UnitOfWork,
    event: StoredEvent,
    subject: Subject,
    kind: TaskKind,
    about: int,
    assignee_id: int | None,
    due_in_s: float,
    now: datetime,
) -> None:
    """Open a task of ``kind`` about the check-in, leave or proposal ``about``, due
    ``due_in_s`` from ``now``."""
    await _open(
        uow,
        NewTask(
            kind=kind,
            subject_id=subject.id,
            org_unit_id=subject.org_unit_id,
            assignee_id=assignee_id,
            due_at=now + timedelta(seconds=due_in_s),
            created_at=now,
            dedupe_key=dedupe_key(kind, about),
            **{_ABOUT[kind]: about},
        ),
        event,
    )


async def _checkin_answered(
    event: StoredEvent, uow: UnitOfWork, policy: Policy, now: datetime
) -> None:
    if event.data.get("status") != "needs_review" or event.subject_id is None:
        return
    subject = await uow.subjects.get(event.subject_id)
    candidates = await uow.tasks.candidates(subject.org_unit_id)
    assignee = first_assignee(subject.responsible_officer_id, candidates)
    checkin_id = int(event.data["checkin_id"])
    await _open_about(
        uow,
        event,
        subject,
        TaskKind.REVIEW_CHECKIN,
        checkin_id,
        assignee,
        policy.tasks.review_checkin_s,
        now,
    )


async def _leave_applied(
    event: StoredEvent, uow: UnitOfWork, policy: Policy, now: datetime
) -> None:
    if event.subject_id is None:
        return
    subject = await uow.subjects.get(event.subject_id)
    level = ApprovalLevel(event.data.get("approval_level", ApprovalLevel.STATION.value))
    candidates = await uow.tasks.candidates(subject.org_unit_id)
    assignee = leave_assignee(level, subject.responsible_officer_id, candidates)
    leave_id = int(event.data["leave_id"])
    await _open_about(
        uow,
        event,
        subject,
        TaskKind.APPROVE_LEAVE,
        leave_id,
        assignee,
        policy.tasks.approve_leave_s,
        now,
    )


async def _proposal_created(
    event: StoredEvent, uow: UnitOfWork, policy: Policy, now: datetime
) -> None:
    subject_id = event.subject_id or event.data.get("subject_id")
    if not isinstance(subject_id, int):
        return
    subject = await uow.subjects.get(subject_id)
    candidates = await uow.tasks.candidates(subject.org_unit_id)
    proposal_id = int(event.data["proposal_id"])
    await _open_about(
        uow,
        event,
        subject,
        TaskKind.DECIDE_PROPOSAL,
        proposal_id,
        county_admin(candidates),
        policy.tasks.decide_proposal_s,
        now,
    )


def _officer(data: dict[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` in an event's data naming an officer."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


async def _completion(event: StoredEvent, uow: UnitOfWork, now: datetime) -> None:
    """Complete the task an event settles: a verification when its alert is acknowledged
    or resolved, a search when its alert ends (contact is back) or is resolved, a review
    when the check-in is reviewed, a leave's approval when it is decided or cancelled, a
    proposal's decision when it is decided."""
    name, data = event.name, event.data
    if name in (EventName.ALERT_ACKNOWLEDGED, EventName.ALERT_RESOLVED, EventName.ALERT_ENDED):
        if event.alert_id is None:
            return
        by = _officer(data, "by")
        if name != EventName.ALERT_ENDED:
            key = dedupe_key(TaskKind.VERIFY_ALERT, event.alert_id)
            await _complete(uow, key, now, by, event, name.removeprefix("alert."))
        if name != EventName.ALERT_ACKNOWLEDGED:
            # Only a lost_contact alert has a search: for others there is nothing to close.
            outcome = "contact_restored" if name == EventName.ALERT_ENDED else "alert_resolved"
            await _complete(
                uow, dedupe_key(TaskKind.SEARCH, event.alert_id), now, by, event, outcome
            )
    elif name == EventName.CHECKIN_REVIEWED:
        key = dedupe_key(TaskKind.REVIEW_CHECKIN, int(data["checkin_id"]))
        await _complete(uow, key, now, _officer(data, "reviewed_by"), event, data.get("decision"))
    elif name in (EventName.LEAVE_APPROVED, EventName.LEAVE_REJECTED, EventName.LEAVE_CANCELLED):
        key = dedupe_key(TaskKind.APPROVE_LEAVE, int(data["leave_id"]))
        outcome = name.removeprefix("leave.")
        await _complete(uow, key, now, _officer(data, "decided_by"), event, outcome)
    elif name == EventName.PROPOSAL_DECIDED:
        key = dedupe_key(TaskKind.DECIDE_PROPOSAL, int(data["proposal_id"]))
        by = _officer(data, "decided_by", "by")
        decision = data.get("decision") or data.get("status")
        await _complete(uow, key, now, by, event, str(decision) if decision else None)


TASK_EVENTS = frozenset(
    {
        EventName.ALERT_RELEASED,
        EventName.CHECKIN_ANSWERED,
        EventName.LEAVE_APPLIED,
        EventName.PROPOSAL_CREATED,
        EventName.ALERT_ACKNOWLEDGED,
        EventName.ALERT_RESOLVED,
        EventName.ALERT_ENDED,
        EventName.CHECKIN_REVIEWED,
        EventName.LEAVE_APPROVED,
        EventName.LEAVE_REJECTED,
        EventName.LEAVE_CANCELLED,
        EventName.PROPOSAL_DECIDED,
    }
)
"""The events that open or settle a task."""


def task_consumer(policy: Policy, clock: Clock) -> Consumer:
    """The event log's reader that opens and completes tasks (registered in
    ``service/bootstrap.py``); tasks open at the consumer's clock."""

    async def handle(event: StoredEvent, uow: UnitOfWork) -> None:
        now = clock.now()
        if event.name == EventName.ALERT_RELEASED:
            await _alert_released(event, uow, policy, now)
        elif event.name == EventName.CHECKIN_ANSWERED:
            await _checkin_answered(event, uow, policy, now)
        elif event.name == EventName.LEAVE_APPLIED:
            await _leave_applied(event, uow, policy, now)
        elif event.name == EventName.PROPOSAL_CREATED:
            await _proposal_created(event, uow, policy, now)
        else:
            await _completion(event, uow, now)

    return Consumer("tasks", handle, frozenset(TASK_EVENTS))


# ------------------------------------------------------------------------- escalation


@dataclass(frozen=True, slots=True)
class EscalationSweep:
    """What one sweep did: tasks escalated a level, and tasks that missed their last SLA."""

    escalated: int
    missed: int


@dataclass(frozen=True, slots=True)
class SweepTaskEscalations(Command[EscalationSweep]):
    """Escalate every open task due at ``now`` (UTC, the service's clock)."""

    now: datetime
    batch: int = SWEEP_BATCH


async def sweep_task_escalations(
    command: SweepTaskEscalations, uow: UnitOfWork, *, policy: Policy
) -> EscalationSweep:
    """A batch per transaction until a batch comes back short (the rest, if any, is held
    by other processes and theirs to escalate). Each escalation's step and audit entry are
    written by the batch's statement; its ``task.escalated`` event is appended last."""
    escalated = missed = 0
    while True:
        async with uow:
            moved = await uow.tasks.escalate_due(
                command.now, command.batch, policy.tasks.escalation_sla_s
            )
            for e in moved:
                uow.emit(
                    DomainEvent(
                        EventName.TASK_ESCALATED,
                        e.org_unit_id,
                        subject_id=e.subject_id,
                        alert_id=e.alert_id,
                        data=e.event_data(),
                    )
                )
        missed += sum(e.missed for e in moved)
        escalated += sum(not e.missed for e in moved)
        if len(moved) < command.batch:
            return EscalationSweep(escalated, missed)


# ------------------------------------------------------------------------- officers


def _sees(who: Principal, task: Task) -> bool:
    """A task of the caller's jurisdiction, or one handed to them (an escalation)."""
    return who.sees(task.org_unit_id) or task.assignee_id == who.officer_id


async def _visible(uow: UnitOfWork, who: Principal, task_id: int, *, lock: bool = False) -> Task:
    try:
        task = await uow.tasks.get(task_id, for_update=lock)
    except stored.NotFound:
        raise NotFound(f"task {task_id}") from None
    if not _sees(who, task):
        raise NotFound(f"task {task_id}")
    return task


@dataclass(frozen=True, slots=True)
class ListTasks(Command[list[Task]]):
    """Tasks of the caller's jurisdiction (and those handed to them), filtered; no status
    means every status. ``assignee_me`` asks for the caller's own queue."""

    actor: Principal
    status: TaskStatus | None = None
    assignee_id: int | None = None
    assignee_me: bool = False
    subject_id: int | None = None
    kind: TaskKind | None = None


async def list_tasks(command: ListTasks, uow: UnitOfWork) -> list[Task]:
    who = command.actor
    assignee = who.officer_id if command.assignee_me else command.assignee_id
    async with uow:
        return await uow.tasks.list_in(
            scope=who.scope,
            viewer_id=who.officer_id,
            status=command.status,
            assignee_id=assignee,
            subject_id=command.subject_id,
            kind=command.kind,
            limit=LIST_LIMIT,
        )


@dataclass(frozen=True, slots=True)
class TaskWithSteps:
    task: Task
    steps: list[TaskStep]


@dataclass(frozen=True, slots=True)
class GetTask(Command[TaskWithSteps]):
    actor: Principal
    task_id: int


async def get_task(command: GetTask, uow: UnitOfWork) -> TaskWithSteps:
    async with uow:
        task = await _visible(uow, command.actor, command.task_id)
        return TaskWithSteps(task, await uow.tasks.steps(task.id))


@dataclass(frozen=True, slots=True)
class RecordTaskStep(Command[TaskStep]):
    """An officer records what they did on a task: a search's phone call, 信息化核查, visit
    or notice to 公安, or a note on any task. ``at`` (ISO-8601 or epoch ms) says when it
    was done, now unless given."""

    actor: Principal
    task_id: int
    kind: str
    note: str | None = None
    at: str | int | float | None = None
    request_id: str | None = None


def _step_kind(raw: str) -> StepKind:
    try:
        kind = StepKind(raw)
    except ValueError:
        kind = None
    if kind is None or kind not in OFFICER_STEPS:
        allowed = sorted(k.value for k in OFFICER_STEPS)
        raise InvalidInput("invalid_request", f"kind must be one of {allowed}")
    return kind


def _step_at(raw: str | int | float | None, now: datetime) -> datetime:
    if raw is None:
        return now
    try:
        at = parse_instant(raw)
    except BadInstant as exc:
        raise InvalidInput("invalid_request", f"at: {exc}") from None
    if at > now + STEP_CLOCK_SKEW:
        raise InvalidInput("invalid_request", "at is in the future")
    return at


async def record_task_step(command: RecordTaskStep, uow: UnitOfWork, *, clock: Clock) -> TaskStep:
    who = command.actor
    if not who.may(CASEWORK_ROLES):
        raise Forbidden("your role may not work on tasks")
    kind = _step_kind(command.kind)
    now = clock.now()
    at = _step_at(command.at, now)
    async with uow:
        task = await _visible(uow, who, command.task_id, lock=True)
        if kind in SEARCH_STEPS and task.kind is not TaskKind.SEARCH:
            raise Conflict(
                "not_a_search",
                f"task {task.id} is a {task.kind.value}; only a search takes a {kind.value}",
            )
        if task.status is TaskStatus.DONE:
            raise Conflict("task_done", f"task {task.id} is done")
        step = await uow.tasks.add_step(
            task.id, kind.value, at, who.officer_id, command.note, {"recorded_at": now.isoformat()}
        )
        uow.audit(
            officer_id=who.officer_id,
            action="task.step",
            subject_id=task.subject_id,
            request_id=command.request_id,
            detail={
                "task_id": task.id,
                "step_id": step.id,
                "kind": kind.value,
                "note": command.note,
            },
        )
        uow.emit(
            DomainEvent(
                EventName.TASK_STEP_RECORDED,
                task.org_unit_id,
                subject_id=task.subject_id,
                alert_id=task.alert_id,
                data={
                    "task_id": task.id,
                    "step_id": step.id,
                    "kind": kind.value,
                    "task_kind": task.kind.value,
                    "officer_id": who.officer_id,
                },
            )
        )
        return step


@dataclass(frozen=True, slots=True)
class CompleteTask(Command[Task]):
    """An officer closes a search by hand with its outcome (found / not_found). The other
    kinds complete when what they are about is settled (the alert acknowledged, the
    check-in reviewed, the leave or the proposal decided), never by hand."""

    actor: Principal
    task_id: int
    outcome: str | None = None
    note: str | None = None
    request_id: str | None = None


async def complete_task(command: CompleteTask, uow: UnitOfWork, *, clock: Clock) -> Task:
    who = command.actor
    if not who.may(CASEWORK_ROLES):
        raise Forbidden("your role may not work on tasks")
    now = clock.now()
    async with uow:
        task = await _visible(uow, who, command.task_id, lock=True)
        if task.kind is not TaskKind.SEARCH:
            raise Conflict(
                "completes_by_event",
                f"a {task.kind.value} task is done when what it is about is settled",
            )
        if task.status is TaskStatus.DONE:
            raise Conflict("task_done", f"task {task.id} is done")
        try:
            outcome = SearchOutcome(command.outcome or "")
        except ValueError:
            allowed = sorted(o.value for o in SearchOutcome)
            raise InvalidInput("invalid_request", f"outcome must be one of {allowed}") from None
        done = await uow.tasks.complete(
            task_id=task.id,
            at=now,
            done_by=who.officer_id,
            outcome=outcome.value,
            note=command.note,
        )
        assert done is not None, "the open task is locked by this unit of work"
        await uow.tasks.add_step(
            task.id,
            StepKind.DONE.value,
            now,
            who.officer_id,
            command.note,
            {"outcome": outcome.value},
        )
        _done(
            uow,
            done,
            officer_id=who.officer_id,
            detail={"note": command.note},
            request_id=command.request_id,
        )
        return await uow.tasks.get(task.id)
