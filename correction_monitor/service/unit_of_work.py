"""The unit of work: one transaction, its repositories, and what it records on the side.

A handler opens it with ``async with uow:`` and works through its repositories. Alongside
the changes it makes, it collects

- audit entries (``uow.audit(...)``: every audit write of a handler goes through it),
- domain events (``uow.emit(event)``), and
- durable timers (``uow.schedule(timer)``).

Leaving the block normally commits: the audit entries, then the timers, then the events are
written in the same transaction as the changes, events last (appending to the event log
takes the ordering lock that is held until commit, so the append and the commit go to the
server as one message, see ``adapters/outbox.py``). Leaving it
with an exception rolls everything back, collected entries included: an event exists exactly
when its change does.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import asyncpg

from correction_monitor.adapters import audit as audit_log
from correction_monitor.adapters import outbox
from correction_monitor.adapters import timers as timer_store
from correction_monitor.adapters.alerts import PostgresAlertLifecycle
from correction_monitor.adapters.app_profile import PostgresProfiles
from correction_monitor.adapters.checkin_deadlines import PostgresCheckinDeadlines
from correction_monitor.adapters.contact import PostgresContact
from correction_monitor.adapters.incidents import PostgresIncidents
from correction_monitor.adapters.integrity import PostgresIntegrity
from correction_monitor.adapters.leave import PostgresLeaves
from correction_monitor.adapters.notifications import PostgresNotifications
from correction_monitor.adapters.outbox import PostgresEvents
from correction_monitor.adapters.patrol_exports import PostgresPatrolExports
from correction_monitor.adapters.patrols import PostgresPatrols
from correction_monitor.adapters.proposals import PostgresProposals
from correction_monitor.adapters.reports import PostgresReports
from correction_monitor.adapters.repositories import (
    PostgresAlerts,
    PostgresAuditLog,
    PostgresCheckins,
    PostgresDevices,
    PostgresFixes,
    PostgresGeo,
    PostgresMessages,
    PostgresOfficers,
    PostgresOrgUnits,
    PostgresSubjects,
)
from correction_monitor.adapters.tasks import PostgresTasks
from correction_monitor.adapters.timers import PostgresTimers
from correction_monitor.domain.events import DomainEvent
from correction_monitor.domain.models import AuditEntry
from correction_monitor.domain.timers import Timer
from correction_monitor.service.repositories import (
    AlertLifecycleRepository,
    AlertRepository,
    AuditLog,
    CheckinDeadlineRepository,
    CheckinRepository,
    ContactRepository,
    DeviceRepository,
    EventLog,
    FixRepository,
    GeoRepository,
    IncidentRepository,
    IntegrityRepository,
    LeaveRepository,
    MessageRepository,
    NotificationRepository,
    OfficerRepository,
    OrgUnitRepository,
    PatrolRepository,
    ProfileRepository,
    ProposalRepository,
    ReportRepository,
    SubjectRepository,
    TaskRepository,
    TimerRepository,
)


class UnitOfWork(abc.ABC):
    """One transaction over the repositories; see the module docstring.

    The repositories exist while the block is open. A unit of work may be opened again
    after it has closed (each opening is a transaction of its own), never twice at once.
    """

    org_units: OrgUnitRepository
    officers: OfficerRepository
    subjects: SubjectRepository
    devices: DeviceRepository
    geo: GeoRepository
    alerts: AlertRepository
    fixes: FixRepository
    audit_log: AuditLog
    timers: TimerRepository
    contact: ContactRepository
    events: EventLog
    integrity: IntegrityRepository
    messages: MessageRepository
    checkin_deadlines: CheckinDeadlineRepository
    profiles: ProfileRepository
    leaves: LeaveRepository
    checkins: CheckinRepository
    alert_lifecycle: AlertLifecycleRepository
    incidents: IncidentRepository
    reports: ReportRepository
    tasks: TaskRepository
    proposals: ProposalRepository
    notifications: NotificationRepository
    patrols: PatrolRepository
    # Night patrols' exports and outcomes (service/patrol_exports.py, patrol_outcomes.py).
    patrol_exports: PostgresPatrolExports

    def __init__(self) -> None:
        self._audits: list[AuditEntry] = []
        self._events: list[DomainEvent] = []
        self._timers: list[Timer] = []

    def audit(
        self,
        *,
        officer_id: int | None,
        action: str,
        subject_id: int | None = None,
        purpose: str | None = None,
        request_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record an audit entry, written when the work commits."""
        self._audits.append(
            AuditEntry(officer_id, action, subject_id, purpose, request_id, detail or {})
        )

    def emit(self, event: DomainEvent) -> None:
        """Record a domain event, appended to the event log when the work commits."""
        self._events.append(event)

    def schedule(self, timer: Timer) -> None:
        """Set a durable timer, stored when the work commits."""
        self._timers.append(timer)

    async def __aenter__(self) -> Self:
        self._audits, self._events, self._timers = [], [], []
        await self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        audits, events, timers_ = self._audits, self._events, self._timers
        self._audits, self._events, self._timers = [], [], []
        if exc_type is None:
            await self._commit(audits, timers_, events)
        else:
            await self._rollback(exc_type, exc, tb)

    @abc.abstractmethod
    async def _begin(self) -> None:
        """Start the transaction and bind the repositories to it."""

    @abc.abstractmethod
    async def _commit(
        self,
        audits: Sequence[AuditEntry],
        timers: Sequence[Timer],
        events: Sequence[DomainEvent],
    ) -> None:
        """Write what was collected, in this order, and commit."""

    @abc.abstractmethod
    async def _rollback(
        self,
        exc_type: type[BaseException],
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Undo everything since :meth:`_begin`."""


class PostgresUnitOfWork(UnitOfWork):
    """A unit of work on one connection of ``pool``, held from opening to commit."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__()
        self._pool = pool
        self._open: tuple[contextlib.AsyncExitStack, asyncpg.Connection] | None = None

    async def _begin(self) -> None:
        if self._open is not None:
            raise RuntimeError("this unit of work is open already")
        stack = contextlib.AsyncExitStack()
        try:
            conn = await stack.enter_async_context(self._pool.acquire())
            # A transaction of its own making, not asyncpg's: its commit may travel with the
            # events (see _commit). Savepoints inside are plain SQL (SAVEPOINT, ROLLBACK TO,
            # RELEASE): asyncpg refuses ``conn.transaction()`` within it.
            await conn.execute("BEGIN")
        except BaseException as exc:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._open = (stack, conn)
        self.org_units = PostgresOrgUnits(conn)
        self.officers = PostgresOfficers(conn)
        self.subjects = PostgresSubjects(conn)
        self.devices = PostgresDevices(conn)
        self.geo = PostgresGeo(conn)
        self.alerts = PostgresAlerts(conn)
        self.checkins = PostgresCheckins(conn)
        self.fixes = PostgresFixes(conn)
        self.audit_log = PostgresAuditLog(conn)
        self.timers = PostgresTimers(conn)
        self.contact = PostgresContact(conn)
        self.events = PostgresEvents(conn)
        self.integrity = PostgresIntegrity(conn)
        self.messages = PostgresMessages(conn)
        self.checkin_deadlines = PostgresCheckinDeadlines(conn)
        self.profiles = PostgresProfiles(conn)
        self.leaves = PostgresLeaves(conn)
        self.alert_lifecycle = PostgresAlertLifecycle(conn)
        self.incidents = PostgresIncidents(conn)
        self.reports = PostgresReports(conn)
        self.tasks = PostgresTasks(conn)
        self.proposals = PostgresProposals(conn)
        self.notifications = PostgresNotifications(conn)
        self.patrols = PostgresPatrols(conn)
        self.patrol_exports = PostgresPatrolExports(conn)

    def _close(self) -> tuple[contextlib.AsyncExitStack, asyncpg.Connection]:
        assert self._open is not None, "the unit of work is not open"
        opened, self._open = self._open, None
        return opened

    async def _commit(
        self,
        audits: Sequence[AuditEntry],
        timers: Sequence[Timer],
        events: Sequence[DomainEvent],
    ) -> None:
        stack, conn = self._close()
        try:
            await audit_log.write(conn, audits)
            await timer_store.schedule(conn, timers)
            if events:
                # Last: the events, under the event log's ordering lock, and the commit, in
                # one message, so that the lock is never held across a round trip to here.
                await outbox.append_and_commit(conn, events)
            else:
                await conn.execute("COMMIT")
        except BaseException as exc:
            await _abandon(conn)
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        # The connection goes back to the pool.
        await stack.aclose()

    async def _rollback(
        self,
        exc_type: type[BaseException],
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, conn = self._close()
        await _abandon(conn)
        await stack.__aexit__(exc_type, exc, tb)


async def _abandon(conn: asyncpg.Connection) -> None:
    """Roll back what is left of the transaction (nothing when a failed commit ended it)."""
    if conn.is_closed() or not conn.is_in_transaction():
        return
    try:
        await conn.execute("ROLLBACK")
    except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
        # The connection is broken: the pool closes it as it takes it back.
        return
