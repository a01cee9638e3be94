"""Raising 人机分离 signals: one ``device_integrity`` alert per subject and rule while
unresolved, extended by later signals of the rule (``domain/integrity.py`` has the rules
and the evidence).

Any path that detects a signal raises it here, in its own transaction: an officer's
enrolment of a device (``service/devices.py``), the ingest commit (``ingest/signals.py``,
over the commit's connection) and a check-in's answer. A switched-off rule raises nothing.
The subject's signals are serialised by a transaction-scoped lock, so two transactions
raising the same rule at once make one alert, not two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from correction_monitor.domain.alerts import AlertOpen
from correction_monitor.domain.events import event_of
from correction_monitor.domain.integrity import (
    Rule,
    enabled,
    extended,
    new_evidence,
    policy_evidence,
    signal_alert,
)
from correction_monitor.domain.timeutil import iso
from correction_monitor.policy import IntegrityPolicy
from correction_monitor.service.repositories import IntegrityRepository
from correction_monitor.service.unit_of_work import UnitOfWork


async def signal_ops(
    integrity: IntegrityRepository,
    *,
    subject_id: int,
    org_unit_id: int,
    rule: str,
    items: Sequence[dict[str, Any]],
    policy: IntegrityPolicy,
) -> list[AlertOpen]:
    """Add ``items`` (JSON objects, each with an ISO-8601 ``at``) to the subject's unresolved
    alert of ``rule``, or return the opening of a new one for the caller to apply with its
    other alert changes (and to announce as an event). Nothing when the rule is switched off
    or there are no items."""
    rule = Rule(rule).value  # an unknown rule is a programming error, never silently off
    if not items or not enabled(policy, rule):
        return []
    await integrity.lock_subject(subject_id)
    known = await integrity.alerts_of_rule(subject_id, rule)
    for alert in known:
        if not alert.resolved:
            await integrity.set_evidence(alert.id, extended(alert.evidence, items))
            return []
    evidence = new_evidence(rule, items, policy_evidence(policy, rule))
    return [signal_alert(subject_id, org_unit_id, len(known) + 1, evidence)]


async def raise_signal(
    uow: UnitOfWork,
    *,
    subject_id: int,
    org_unit_id: int,
    rule: str,
    at: datetime,
    item: dict[str, Any],
    policy: IntegrityPolicy,
) -> None:
    """Raise one signal of ``rule`` for the subject in the open unit of work: ``item`` holds
    its facts (JSON values), ``at`` when it happened (the service's clock: a new alert is
    detected then). Extends the unresolved alert of the
    rule, or opens one (its ``alert.opened`` event is emitted with the work's commit)."""
    ops = await signal_ops(
        uow.integrity,
        subject_id=subject_id,
        org_unit_id=org_unit_id,
        rule=rule,
        items=[{"at": iso(at)} | item],
        policy=policy,
    )
    if ops:
        for change in await uow.alerts.apply(ops, at):
            uow.emit(event_of(change))
