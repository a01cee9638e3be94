"""Lost contact (失联): silence longer than the level's threshold, by the server clock.

A sweep opens a ``lost_contact`` alert for each subject whose last accepted fix (or, never
heard from, whose device enrolment) is older than the threshold; the committer closes it when
accepted fixes resume and adds the lost time to the subject's 脱离监管 clock (RULES.md §1).
A device that reports only rejected fixes is not in contact: only accepted fixes count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from correction_monitor.domain.alerts import (
    SEVERITY,
    AlertOp,
    AlertOpen,
    AlertType,
    lost_contact_key,
)
from correction_monitor.domain.events import event_of
from correction_monitor.policy import Policy
from correction_monitor.service.command import Command
from correction_monitor.service.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class SweepLostContact(Command[int]):
    """Open the lost-contact alerts due at ``now`` (the server clock, UTC); the result is how
    many were opened."""

    now: datetime


async def sweep_lost_contact(command: SweepLostContact, uow: UnitOfWork, *, policy: Policy) -> int:
    """Open a ``lost_contact`` alert for each subject silent longer than its level allows.

    The job registry runs it in one process at a time (service/jobs.py); two sweeps at once
    would still open one alert per silence (the silence is marked once, and the alert is
    unique per episode).
    """
    now = command.now
    shortest = min(level.lost_contact_after_s for level in policy.levels.values())
    async with uow:
        ops: list[AlertOp] = []
        for silent in await uow.contact.silent_since(now - timedelta(seconds=shortest)):
            level = policy.level(silent.supervision_level)
            silent_s = (now - silent.last_contact).total_seconds()
            if silent_s <= level.lost_contact_after_s:
                continue
            if not await uow.contact.mark_lost(silent.subject_id, silent.last_contact):
                continue
            clock_s = silent.lost_total_s + silent_s
            ops.append(
                AlertOpen(
                    subject_id=silent.subject_id,
                    org_unit_id=silent.org_unit_id,
                    type=AlertType.LOST_CONTACT,
                    severity=SEVERITY[AlertType.LOST_CONTACT],
                    fence_id=None,
                    episode_key=lost_contact_key(silent.last_contact),
                    started_at=silent.last_contact,
                    evidence={
                        "last_contact_at": silent.last_contact.isoformat(),
                        "silent_s": round(silent_s),
                        "policy": {
                            "supervision_level": silent.supervision_level,
                            "lost_contact_after_s": level.lost_contact_after_s,
                        },
                        "lost_contact_clock_s": round(clock_s),
                        "beyond_10_days": clock_s > policy.lost_contact_warning_after_s,
                        "beyond_1_month": clock_s > policy.lost_contact_revocation_after_s,
                        "action": policy.lost_contact_action,
                        "article": policy.lost_contact_article,
                    },
                )
            )
        changes = await uow.alerts.apply(ops, now)
        for change in changes:
            uow.emit(event_of(change))
    return len(changes)
