"""Feeding the legal ladder (domain/ladder.py): the event-log consumer that proposes a
measure for each confirmed alert and a change to strict after an approved reprimand or
warning, and the daily job that proposes lenient for subjects clean long enough at normal.

Each proposal is the system's act: stored pending with its article, grounds, alerts and what
the ladder counted (``basis``), audited as ``proposal.create`` with no officer, and told as a
``proposal.created`` event, all in the consumer's (or the job's) transaction. The consumer's
cursor advances in that same transaction (service/consumers.py), and every proposal is
unique on its ground (``alert:<id>``, ``level_change:after:<proposal id>``,
``lenient:<subject>:<clean since>``), so a proposal is made exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.alerts import Disposition, Gravity
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import DomainEvent, EventName, StoredEvent
from correction_monitor.domain.ladder import (
    STRICTER_AFTER,
    Breach,
    ConfirmedAlert,
    Counters,
    LadderRules,
    NewProposal,
    Proposal,
    ProposalStatus,
    lenient_key,
    lost_contact_clock,
    propose_lenient,
    propose_response,
    propose_strict_after,
)
from correction_monitor.domain.models import SupervisionLevel
from correction_monitor.policy import Policy
from correction_monitor.service.command import Command
from correction_monitor.service.consumers import Consumer
from correction_monitor.service.unit_of_work import UnitOfWork

LADDER_CONSUMER = "legal-ladder"
LADDER_EVENTS = frozenset({EventName.ALERT_RESOLVED.value, EventName.PROPOSAL_DECIDED.value})

LENIENT_BATCH = 500
"""Subjects proposed lenient per transaction of the daily job."""


async def record_proposal(uow: UnitOfWork, new: NewProposal) -> Proposal | None:
    """Store ``new`` pending, audited as the system's act and told as ``proposal.created``;
    None (and nothing recorded) when its ground was proposed already."""
    stored = await uow.proposals.add(new)
    if stored is None:
        return None
    detail = {
        "proposal_id": stored.id,
        "measure": stored.measure.value,
        "article": stored.article,
        "alert_ids": list(stored.alert_ids),
        "proposed_level": stored.proposed_level.value if stored.proposed_level else None,
        "dedupe_key": stored.dedupe_key,
    }
    uow.audit(
        officer_id=None, action="proposal.create", subject_id=stored.subject_id, detail=detail
    )
    uow.emit(
        DomainEvent(
            EventName.PROPOSAL_CREATED,
            stored.org_unit_id,
            subject_id=stored.subject_id,
            data={
                "proposal_id": stored.id,
                "measure": stored.measure.value,
                "article": stored.article,
                "subject_id": stored.subject_id,
                "alert_ids": list(stored.alert_ids),
                "proposed_level": detail["proposed_level"],
            },
        )
    )
    return stored


def _breach(alert: ConfirmedAlert, clock_s: float, lost_ids: list[int]) -> Breach:
    return Breach(
        alert_id=alert.alert_id,
        alert_type=alert.alert_type,
        gravity=alert.gravity or Gravity.MINOR,
        category=alert.category,
        started_at=alert.started_at,
        timezone=alert.timezone,
        lost_contact_clock_s=clock_s,
        lost_contact_alert_ids=tuple(lost_ids),
    )


async def propose_for_alert(
    uow: UnitOfWork, alert_id: int, *, rules: LadderRules, reset: str, now: datetime
) -> Proposal | None:
    """Propose the ladder's measure for a confirmed alert (None when the alert is gone, is
    no longer confirmed, or was proposed for already)."""
    alert = await uow.proposals.resolved_alert(alert_id)
    if alert is None or alert.disposition != Disposition.CONFIRMED:
        return None
    clock_s, lost_ids = 0.0, list[int]()
    if alert.alert_type == "lost_contact":
        since = alert.term_started_at() if reset == "term" else None
        clock_s, lost_ids = lost_contact_clock(
            await uow.proposals.lost_contact_episodes(alert.subject_id), since, alert.alert_id
        )
    counters = Counters.of(await uow.proposals.approved_counts(alert.subject_id))
    proposed = propose_response(_breach(alert, clock_s, lost_ids), counters, rules)
    proposed.basis["lost_contact_reset"] = reset
    return await record_proposal(
        uow,
        NewProposal(
            alert.subject_id,
            alert.org_unit_id,
            proposed,
            (alert.alert_id,),
            now,
            f"alert:{alert.alert_id}",
        ),
    )


async def propose_strict(
    uow: UnitOfWork, proposal_id: int, *, rules: LadderRules, now: datetime
) -> Proposal | None:
    """After an approved reprimand or warning, propose strict (unless the subject is strict
    already or a change to strict is pending)."""
    try:
        decided = await uow.proposals.get(proposal_id)
    except stored.NotFound:
        # An event naming no proposal can propose nothing; it must not stop the reader.
        return None
    if decided.status is not ProposalStatus.APPROVED or decided.measure not in STRICTER_AFTER:
        return None
    subject = await uow.subjects.get(decided.subject_id)
    if await uow.proposals.pending_level_change(subject.id, SupervisionLevel.STRICT):
        return None
    proposed = propose_strict_after(decided.id, decided.measure, subject.supervision_level, rules)
    if proposed is None:
        return None
    return await record_proposal(
        uow,
        NewProposal(
            subject.id,
            subject.org_unit_id,
            proposed,
            decided.alert_ids,
            now,
            f"level_change:after:{decided.id}",
        ),
    )


def ladder_consumer(policy: Policy, clock: Clock) -> Consumer:
    """The event log's reader that feeds the ladder: ``alert.resolved`` as confirmed
    proposes a measure; ``proposal.decided`` approving a reprimand or warning proposes
    strict."""
    rules = LadderRules.of(policy)

    async def handle(event: StoredEvent, uow: UnitOfWork) -> None:
        if event.name == EventName.ALERT_RESOLVED:
            if event.alert_id is None or event.data.get("disposition") != Disposition.CONFIRMED:
                return
            await propose_for_alert(
                uow, event.alert_id, rules=rules, reset=policy.lost_contact_reset, now=clock.now()
            )
        elif event.name == EventName.PROPOSAL_DECIDED:
            if event.data.get("decision") != ProposalStatus.APPROVED:
                return
            if event.data.get("measure") not in {m.value for m in STRICTER_AFTER}:
                return
            proposal_id = event.data.get("proposal_id")
            if not isinstance(proposal_id, int):
                return
            await propose_strict(uow, proposal_id, rules=rules, now=clock.now())

    return Consumer(LADDER_CONSUMER, handle, LADDER_EVENTS)


@dataclass(frozen=True, slots=True)
class ProposeLenient(Command[int]):
    """Propose lenient for every active subject at normal clean for the policy's days at
    ``now`` (UTC); the result is how many were proposed."""

    now: datetime


async def propose_lenient_levels(
    command: ProposeLenient, uow: UnitOfWork, *, policy: Policy
) -> int:
    """The daily job: one proposal per subject and clean span, in batches of
    :data:`LENIENT_BATCH` subjects per transaction."""
    rules = LadderRules.of(policy)
    cutoff = command.now - timedelta(days=rules.ladder.lenient_after_clean_days)
    total = 0
    while True:
        made = 0
        async with uow:
            candidates = await uow.proposals.clean_at_normal(cutoff, LENIENT_BATCH)
            for clean in candidates:
                proposed = propose_lenient(
                    clean.supervision_level, clean.clean_since, command.now, rules
                )
                if proposed is None:
                    continue
                stored = await record_proposal(
                    uow,
                    NewProposal(
                        clean.subject_id,
                        clean.org_unit_id,
                        proposed,
                        (),
                        command.now,
                        lenient_key(clean.subject_id, clean.clean_since),
                    ),
                )
                made += stored is not None
        total += made
        # A batch that proposed nothing would come back the same: stop there.
        if len(candidates) < LENIENT_BATCH or made == 0:
            return total
