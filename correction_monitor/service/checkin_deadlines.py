"""Check-in deadlines: closing missed windows and reminding the subject before they close.

The sweep runs every few seconds in every process (``service/jobs.py``), on the injected
clock. Each batch is one transaction that claims its windows with ``SKIP LOCKED``, so the
processes share the work and none waits on another; a process killed mid-batch leaves its
windows pending (the transaction never committed) for the next sweep of any process. The
pending rows themselves are the durable timers (docs/checkin-deadlines.md): nothing has to
be scheduled when a window is laid out, and nothing is left behind when it is answered.

- **Missed**: every pending window whose ``closes_at`` has passed becomes ``missed`` and opens
  one ``missed_checkin`` alert, its evidence naming the window and the level's policy, with
  its ``alert.opened`` event, in the same transaction.
- **Reminders**: for each of the level's ``reminder_lead_s``, a pending window gets one
  reminder message once ``closes_at - lead`` has come (the message's dedupe key makes a
  repeat land once), and ``reminded_at`` records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from correction_monitor.domain.alerts import AlertChange, AlertType
from correction_monitor.domain.app_profile import windows_json
from correction_monitor.domain.checkin_deadlines import (
    MISSED_SEVERITY,
    LevelTerms,
    reminder_data,
    reminder_key,
    reminder_text,
)
from correction_monitor.domain.events import alert_event
from correction_monitor.domain.messages import MessageKind, NewMessage
from correction_monitor.domain.models import SupervisionLevel
from correction_monitor.policy import LevelPolicy, Policy
from correction_monitor.service.command import Command
from correction_monitor.service.unit_of_work import UnitOfWork

BATCH = 5000
"""Windows per transaction: large enough that 100,000 missed windows take a few dozen
statements, small enough that a batch holds its row locks and the event log's ordering lock
for well under a second."""


@dataclass(frozen=True, slots=True)
class DeadlineSweep:
    """What one sweep did: windows closed as missed, alerts opened, reminders sent."""

    missed: int
    alerts: int
    reminders: int


@dataclass(frozen=True, slots=True)
class SweepCheckinDeadlines(Command[DeadlineSweep]):
    """Close the windows due at ``now`` (UTC, the service's clock) as missed and send the
    reminders due then."""

    now: datetime
    batch: int = BATCH


def level_policy_evidence(level: LevelPolicy) -> dict[str, Any]:
    """The level's check-in policy as a missed window's evidence quotes it."""
    return {
        "label": level.label,
        "checkin_windows": windows_json(level.checkin_windows),
        "challenges_per_period": level.challenges_per_period,
        "challenge_period": level.challenge_period,
        "challenge_answer_s": level.challenge_answer_s,
        "reminder_lead_s": list(level.reminder_lead_s),
    }


def level_terms(policy: Policy) -> list[LevelTerms]:
    """Each level's severity for a missed window and the policy its evidence quotes."""
    return [
        LevelTerms(
            level.value,
            MISSED_SEVERITY[level].value,
            {"supervision_level": level.value} | level_policy_evidence(policy.level(level)),
        )
        for level in SupervisionLevel
    ]


def reminder_leads(policy: Policy) -> list[tuple[str, float]]:
    """Every (level, lead) pair of the policy."""
    return [
        (level.value, lead)
        for level in SupervisionLevel
        for lead in policy.level(level).reminder_lead_s
    ]


async def close_missed(
    uow: UnitOfWork, now: datetime, batch: int, policy: Policy
) -> tuple[int, int]:
    """Close every window due at ``now`` as missed, a batch per transaction, until a batch
    comes back short (the rest, if any, is held by others and theirs to close); returns
    (windows closed, alerts opened)."""
    terms = level_terms(policy)
    missed = opened = 0
    while True:
        async with uow:
            closed = await uow.checkin_deadlines.close_due(now, batch, terms)
            for window in closed:
                if window.alert_id is None:
                    continue
                uow.emit(
                    alert_event(
                        AlertChange.OPENED,
                        window.alert_id,
                        window.org_unit_id,
                        window.subject_id,
                        {"type": AlertType.MISSED_CHECKIN.value, "checkin_id": window.checkin_id},
                    )
                )
                opened += 1
        missed += len(closed)
        if len(closed) < batch:
            return missed, opened


async def send_reminders(uow: UnitOfWork, now: datetime, batch: int, policy: Policy) -> int:
    """Send every reminder due at ``now``, a batch per transaction; returns how many were
    sent (a reminder the subject already has is not sent again)."""
    leads = reminder_leads(policy)
    sent = 0
    while True:
        async with uow:
            due = await uow.checkin_deadlines.due_reminders(now, leads, batch)
            messages = [
                NewMessage(
                    subject_id=r.subject_id,
                    kind=MessageKind.REMINDER,
                    text=reminder_text(r, now),
                    data=reminder_data(r),
                    dedupe_key=reminder_key(r.checkin_id, r.lead_s),
                )
                for r in due
            ]
            if due:
                sent += len(await uow.messages.add(messages, now))
                await uow.checkin_deadlines.mark_reminded([r.checkin_id for r in due], now)
        if len(due) < batch:
            return sent


async def sweep_checkin_deadlines(
    command: SweepCheckinDeadlines, uow: UnitOfWork, *, policy: Policy
) -> DeadlineSweep:
    """Missed windows first (their alerts have a deadline of their own), then reminders."""
    missed, alerts = await close_missed(uow, command.now, command.batch, policy)
    reminders = await send_reminders(uow, command.now, command.batch, policy)
    return DeadlineSweep(missed, alerts, reminders)
