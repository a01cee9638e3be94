"""Reading the audit log (RULES.md §4), for auditors and administrators: entries about the
subjects of the reader's jurisdiction, and those about no single subject written by its
officers."""

from __future__ import annotations

from dataclasses import dataclass

from correction_monitor.domain.access import Principal, Role
from correction_monitor.domain.models import AuditRecord
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Forbidden
from correction_monitor.service.unit_of_work import UnitOfWork

AUDIT_READERS = frozenset({Role.AUDITOR, Role.ADMIN})
MAX_ENTRIES = 1000


@dataclass(frozen=True, slots=True)
class ListAuditEntries(Command[list[AuditRecord]]):
    """The newest ``limit`` entries (at most 1000), about ``subject_id`` when given."""

    actor: Principal
    subject_id: int | None = None
    limit: int = 100


async def list_audit_entries(command: ListAuditEntries, uow: UnitOfWork) -> list[AuditRecord]:
    who = command.actor
    if not who.may(AUDIT_READERS):
        raise Forbidden(f"role {who.role.value!r} may not do this")
    async with uow:
        return await uow.audit_log.entries(
            subject_id=command.subject_id,
            limit=min(command.limit, MAX_ENTRIES),
            scope=who.scope,
        )
