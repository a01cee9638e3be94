"""What officers do with the ladder's proposals: list and read them in their jurisdiction,
and decide one (RULES.md §4: decisions on 训诫 / 警告 and the rest belong to the county
administrator, ``county_admin``, or an ``admin``).

A decision is audited (``proposal.decide``: who, when, the decision and its note) and told as
``proposal.decided`` in its transaction. An approved level change applies the proposed level
to the subject in that same transaction, through the subject store's own change
(``update_supervision``), audited as ``subject.change`` and told as ``subject.changed`` as
any other change of level (service/subjects.py), so the check-in layout and the profiles
follow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal, Role
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.ladder import Measure, Proposal, ProposalStatus
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Conflict, Forbidden, InvalidInput, NotFound
from correction_monitor.service.unit_of_work import UnitOfWork

DECIDERS: Final = frozenset({Role.COUNTY_ADMIN, Role.ADMIN})
"""Who decides proposals (RULES.md §4, CONTRACT.md)."""

LIST_LIMIT = 500


@dataclass(frozen=True, slots=True)
class ListProposals(Command[list[Proposal]]):
    """The newest proposals of the caller's jurisdiction, narrowed to a subject or a
    status when given."""

    actor: Principal
    subject_id: int | None = None
    status: ProposalStatus | None = None


async def list_proposals(command: ListProposals, uow: UnitOfWork) -> list[Proposal]:
    async with uow:
        return await uow.proposals.list_in(
            command.actor.scope,
            status=command.status,
            subject_id=command.subject_id,
            limit=LIST_LIMIT,
        )


async def _visible(
    uow: UnitOfWork, who: Principal, proposal_id: int, *, for_update: bool = False
) -> Proposal:
    try:
        proposal = await uow.proposals.get(proposal_id, for_update=for_update)
    except stored.NotFound:
        raise NotFound(f"proposal {proposal_id}") from None
    if not who.sees(proposal.org_unit_id):
        raise NotFound(f"proposal {proposal_id}")
    return proposal


@dataclass(frozen=True, slots=True)
class GetProposal(Command[Proposal]):
    """One proposal of the caller's jurisdiction (others' are not found)."""

    actor: Principal
    proposal_id: int


async def get_proposal(command: GetProposal, uow: UnitOfWork) -> Proposal:
    async with uow:
        return await _visible(uow, command.actor, command.proposal_id)


@dataclass(frozen=True, slots=True)
class DecideProposal(Command[Proposal]):
    """A county administrator (or an admin) approves or rejects a pending proposal, with
    an optional note saying why."""

    actor: Principal
    proposal_id: int
    decision: ProposalStatus
    note: str | None = None
    request_id: str | None = None


async def _apply_level(
    uow: UnitOfWork, who: Principal, proposal: Proposal, request_id: str | None
) -> bool:
    """Give the subject the level an approved level change proposes; False when it has
    that level already (nothing changes, nothing is told)."""
    level = proposal.proposed_level
    assert level is not None, "a level change names its level"
    subject = await uow.subjects.get_for_update(proposal.subject_id)
    if subject.supervision_level is level:
        return False
    await uow.subjects.update_supervision(
        subject.id,
        supervision_level=level,
        responsible_officer_id=subject.responsible_officer_id,
        responsible_supervisor_id=subject.responsible_supervisor_id,
    )
    changes = {"supervision_level": {"from": subject.supervision_level.value, "to": level.value}}
    reason = f"proposal {proposal.id} approved ({proposal.article})"
    uow.audit(
        officer_id=who.officer_id,
        action="subject.change",
        subject_id=subject.id,
        request_id=request_id,
        detail={"changes": changes, "reason": reason, "proposal_id": proposal.id},
    )
    uow.emit(
        DomainEvent(
            EventName.SUBJECT_CHANGED,
            subject.org_unit_id,
            subject_id=subject.id,
            data={"changes": changes, "reason": reason, "changed_by": who.officer_id},
        )
    )
    return True


async def decide_proposal(command: DecideProposal, uow: UnitOfWork, *, clock: Clock) -> Proposal:
    """Decide a pending proposal of the caller's jurisdiction: another role is refused
    (403), another jurisdiction's proposal is not found (404), a decided one is a conflict
    (409)."""
    who = command.actor
    if not who.may(DECIDERS):
        raise Forbidden(f"role {who.role.value!r} may not decide proposals")
    if command.decision is ProposalStatus.PENDING:
        raise InvalidInput("invalid_request", "decision must be 'approved' or 'rejected'")
    async with uow:
        proposal = await _visible(uow, who, command.proposal_id, for_update=True)
        if proposal.status is not ProposalStatus.PENDING:
            raise Conflict(
                "not_pending", f"proposal {proposal.id} is {proposal.status.value}, not pending"
            )
        decided = await uow.proposals.decide(
            proposal.id,
            command.decision,
            officer_id=who.officer_id,
            at=clock.now(),
            note=command.note,
        )
        assert decided is not None, "the pending proposal is locked by this unit of work"
        level_applied = False
        if decided.status is ProposalStatus.APPROVED and decided.measure is Measure.LEVEL_CHANGE:
            level_applied = await _apply_level(uow, who, decided, command.request_id)
        uow.audit(
            officer_id=who.officer_id,
            action="proposal.decide",
            subject_id=decided.subject_id,
            request_id=command.request_id,
            detail={
                "proposal_id": decided.id,
                "measure": decided.measure.value,
                "article": decided.article,
                "decision": decided.status.value,
                "note": decided.decision_note,
                "level_applied": level_applied,
            },
        )
        uow.emit(
            DomainEvent(
                EventName.PROPOSAL_DECIDED,
                decided.org_unit_id,
                subject_id=decided.subject_id,
                data={
                    "proposal_id": decided.id,
                    "measure": decided.measure.value,
                    "decision": decided.status.value,
                    "subject_id": decided.subject_id,
                    "decided_by": who.officer_id,
                    "proposed_level": (
                        decided.proposed_level.value if decided.proposed_level else None
                    ),
                },
            )
        )
    return decided
