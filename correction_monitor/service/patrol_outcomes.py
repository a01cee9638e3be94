"""Recording what a night patrol found at a stop, and closing the loop with the alerts.

An officer of a casework role records a stop's outcome (``domain/patrol_outcomes.py``): the
time of the visit (never after the service's clock), an optional note and an optional fix
(WGS-84). Recording it again corrects it: the stop keeps the latest, the audit entry keeps
the value it replaced. Every recording is audited (``patrol_stop.record``: who, when, the
note as why) and told as ``patrol_stop.recorded``.

What the finding means for the alerts, in the same transaction:

- ``absent`` within the subject's curfew (station's time zone): when the phone's
  ``curfew_violation`` alert of that curfew night is still unresolved, the recording
  officer confirms it, the visit added to its evidence (``patrols``); when there is none
  (or only one resolved otherwise than confirmed), a ``curfew_violation`` alert is opened
  with the visit as its evidence (episode ``patrol_stop:<stop id>``), released at once (an
  officer found it) and confirmed by that officer. Confirming goes the way an officer's
  resolution does: ``alert.resolved`` with disposition ``confirmed`` and an
  ``alert.resolve`` audit entry, so the legal ladder's consumer proposes the measure. An
  alert of that night already confirmed gets the visit added to its evidence only. The
  stop's ``alert_id`` names the alert.
- ``present`` while a location alert said the subject was away (left_activity_area,
  curfew_violation, leave_overdue, its episode under way at the visit's time): the visit is
  added to that alert's evidence (``patrol_contradiction``), told as
  ``patrol_stop.contradicted``, and raised as a 人机分离 signal (rule
  ``patrol_contradiction``); the contradicted alert's disposition stays the officers' to
  decide. The alert-quality report counts contradicted alerts per type.

A correction never undoes what an earlier finding did to an alert (a resolution is undone
by reopening it, a supervisor's decision).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from correction_monitor.domain import alerts as lifecycle
from correction_monitor.domain.access import CASEWORK_ROLES, Principal
from correction_monitor.domain.alerts import (
    SEVERITY,
    AlertChange,
    AlertOpen,
    AlertType,
    Disposition,
    Gravity,
)
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import DomainEvent, EventName, alert_event, event_of
from correction_monitor.domain.patrol_outcomes import (
    AWAY_TYPES,
    CONTRADICTION_KEY,
    PATROLS_KEY,
    CurfewSpan,
    Outcome,
    curfew_at,
    names_stop,
    patrol_alert_key,
)
from correction_monitor.domain.timeutil import iso
from correction_monitor.policy import Policy
from correction_monitor.service.alerts import record_resolution
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Forbidden, InvalidInput, NotFound
from correction_monitor.service.integrity import raise_signal
from correction_monitor.service.unit_of_work import UnitOfWork

CONTRADICTION_RULE = "patrol_contradiction"
OUTCOME_WRITERS = CASEWORK_ROLES


@dataclass(frozen=True, slots=True)
class PatrolFix:
    """Where the officers were when they recorded it (WGS-84; ``crs`` as given)."""

    lat: float
    lon: float
    accuracy_m: float | None = None
    crs: str = "wgs84"

    def to_json(self) -> dict[str, Any]:
        return {"lat": self.lat, "lon": self.lon, "accuracy_m": self.accuracy_m, "crs": self.crs}


@dataclass(frozen=True, slots=True)
class RecordedStop:
    """A stop after its outcome was recorded."""

    plan_id: int
    stop_id: int
    team_id: int
    subject_id: int
    seq: int
    eta: datetime
    reasons: list[Any]
    outcome: str | None
    at: datetime | None
    note: str | None
    fix: dict[str, Any] | None
    recorded_by: int | None
    recorded_at: datetime | None
    alert_id: int | None
    contradicted_alert_ids: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "stop_id": self.stop_id,
            "team_id": self.team_id,
            "subject_id": self.subject_id,
            "seq": self.seq,
            "eta": iso(self.eta),
            "reasons": self.reasons,
            "outcome": self.outcome,
            "at": iso(self.at),
            "note": self.note,
            "fix": self.fix,
            "recorded_by": self.recorded_by,
            "recorded_at": iso(self.recorded_at),
            "alert_id": self.alert_id,
            "contradicted_alert_ids": list(self.contradicted_alert_ids),
        }


@dataclass(frozen=True, slots=True)
class RecordStopOutcome(Command[RecordedStop]):
    actor: Principal
    plan_id: int
    subject_id: int
    outcome: Outcome
    at: datetime
    note: str | None = None
    fix: PatrolFix | None = None
    request_id: str | None = None


def _visit(
    command: RecordStopOutcome, stop_id: int, team_id: int, team: str, seq: int, now: datetime
) -> dict[str, Any]:
    """The visit as alert evidence."""
    return {
        "source": "patrol",
        "plan_id": command.plan_id,
        "stop_id": stop_id,
        "team_id": team_id,
        "team": team,
        "seq": seq,
        "outcome": command.outcome.value,
        "at": iso(command.at),
        "note": command.note,
        "fix": command.fix.to_json() if command.fix else None,
        "recorded_by": command.actor.officer_id,
        "recorded_at": iso(now),
    }


async def _confirm(
    uow: UnitOfWork,
    who: Principal,
    alert_id: int,
    note: str,
    request_id: str | None,
    now: datetime,
) -> None:
    """The recording officer confirms the alert, as resolving it would (event and audit)."""
    alert = await uow.alerts.get(alert_id)
    lifecycle.resolve(alert.status)  # unresolved: the callers chose it so
    await record_resolution(
        uow,
        who,
        alert,
        Disposition.CONFIRMED,
        Gravity.MINOR,
        note,
        request_id=request_id,
        purpose="patrol finding",
        via="patrol_stop",
        at=now,
    )


async def _absent_in_curfew(
    uow: UnitOfWork,
    command: RecordStopOutcome,
    span: CurfewSpan,
    visit: dict[str, Any],
    org_unit_id: int,
    now: datetime,
) -> int:
    """Confirm (or open and confirm) the night's curfew alert; its id."""
    who = command.actor
    note = "夜间巡查：宵禁时段入户走访，本人不在住所" + (
        f"（{command.note}）" if command.note else ""
    )
    found = await uow.patrol_exports.curfew_alerts(
        command.subject_id, span.opens_at, span.closes_at
    )
    unresolved = [a for a in found if a.status != lifecycle.AlertStatus.RESOLVED]
    confirmed = [a for a in found if a.disposition == Disposition.CONFIRMED]
    for known in unresolved[:1] or confirmed[:1]:
        await uow.alert_lifecycle.lock(known.id)
        current = await uow.alerts.get(known.id)
        if not names_stop(current.evidence.get(PATROLS_KEY), visit["stop_id"]):
            await uow.patrol_exports.append_evidence(known.id, PATROLS_KEY, visit)
        if current.status != lifecycle.AlertStatus.RESOLVED:
            await _confirm(uow, who, known.id, note, command.request_id, now)
        return known.id
    opened = AlertOpen(
        subject_id=command.subject_id,
        org_unit_id=org_unit_id,
        type=AlertType.CURFEW_VIOLATION,
        severity=SEVERITY[AlertType.CURFEW_VIOLATION],
        fence_id=None,
        episode_key=patrol_alert_key(visit["stop_id"]),
        started_at=command.at,
        evidence={
            "reason": "patrol_absent",
            "source": "patrol",
            "curfew": span.to_json(),
            PATROLS_KEY: [visit],
        },
    )
    changes = await uow.alerts.apply([opened], now)
    for change in changes:
        uow.emit(event_of(change))
    alert_id = await uow.patrol_exports.patrol_alert_id(
        command.subject_id, patrol_alert_key(visit["stop_id"])
    )
    await uow.alert_lifecycle.lock(alert_id)
    alert = await uow.alerts.get(alert_id)
    # An officer found it: it reaches officers at once (no grace, no message first).
    if await uow.alert_lifecycle.release(alert_id, now):
        uow.emit(
            alert_event(
                AlertChange.RELEASED,
                alert.id,
                alert.org_unit_id,
                alert.subject_id,
                {"type": alert.type.value, "released_at": iso(now), "source": "patrol"},
            )
        )
    if alert.status != lifecycle.AlertStatus.RESOLVED:
        await _confirm(uow, who, alert_id, note, command.request_id, now)
    return alert_id


async def _present(
    uow: UnitOfWork,
    command: RecordStopOutcome,
    visit: dict[str, Any],
    org_unit_id: int,
    policy: Policy,
    now: datetime,
) -> list[int]:
    """Record the visit against the alerts that said the subject was away; their ids."""
    away = await uow.patrol_exports.away_alerts(
        command.subject_id, [t.value for t in AWAY_TYPES], command.at
    )
    contradicted = []
    for alert in away:
        contradicted.append(alert.id)
        if names_stop(alert.evidence.get(CONTRADICTION_KEY), visit["stop_id"]):
            continue
        await uow.patrol_exports.append_evidence(alert.id, CONTRADICTION_KEY, visit)
        uow.emit(
            DomainEvent(
                EventName.PATROL_STOP_CONTRADICTED,
                org_unit_id,
                command.subject_id,
                alert.id,
                {
                    "plan_id": command.plan_id,
                    "stop_id": visit["stop_id"],
                    "alert_id": alert.id,
                    "alert_type": alert.type,
                    "at": visit["at"],
                    "recorded_by": command.actor.officer_id,
                },
            )
        )
        await raise_signal(
            uow,
            subject_id=command.subject_id,
            org_unit_id=org_unit_id,
            rule=CONTRADICTION_RULE,
            at=now,
            item={
                "alert_id": alert.id,
                "alert_type": alert.type,
                "plan_id": command.plan_id,
                "stop_id": visit["stop_id"],
                "visited_at": visit["at"],
                "fix": visit["fix"],
                "recorded_by": command.actor.officer_id,
            },
            policy=policy.integrity,
        )
    return contradicted


async def record_stop_outcome(
    command: RecordStopOutcome, uow: UnitOfWork, *, clock: Clock, policy: Policy
) -> RecordedStop:
    who = command.actor
    if not who.may(OUTCOME_WRITERS):
        raise Forbidden("your role may not record patrol outcomes")
    now = clock.now()
    if command.at > now:
        raise InvalidInput("at_in_future", "at is after the service's clock")
    async with uow:
        plan = await uow.patrol_exports.plan(command.plan_id)
        if plan is None or not who.sees(plan.org_unit_id):
            raise NotFound(f"patrol plan {command.plan_id}")
        stop = await uow.patrol_exports.stop_for_update(command.plan_id, command.subject_id)
        if stop is None:
            raise NotFound(f"subject {command.subject_id} is not a stop of plan {plan.id}")
        team = await uow.patrol_exports.team_name(stop.team_id)
        subject = await uow.patrol_exports.subject_curfew(command.subject_id)
        visit = _visit(command, stop.id, stop.team_id, team, stop.seq, now)
        alert_id: int | None = None
        contradicted: list[int] = []
        span: CurfewSpan | None = None
        if subject.curfew_start is not None and subject.curfew_end is not None:
            span = curfew_at(
                command.at, subject.curfew_start, subject.curfew_end, ZoneInfo(subject.timezone)
            )
        if command.outcome is Outcome.ABSENT and span is not None:
            alert_id = await _absent_in_curfew(uow, command, span, visit, subject.org_unit_id, now)
        elif command.outcome is Outcome.PRESENT:
            contradicted = await _present(uow, command, visit, subject.org_unit_id, policy, now)
        previous = (
            {
                "outcome": stop.outcome,
                "at": iso(stop.outcome_at),
                "note": stop.outcome_note,
                "fix": stop.outcome_fix,
                "recorded_by": stop.recorded_by,
                "recorded_at": iso(stop.recorded_at),
                "alert_id": stop.alert_id,
            }
            if stop.outcome is not None
            else None
        )
        recorded = await uow.patrol_exports.record(
            stop.id,
            outcome=command.outcome.value,
            at=command.at,
            note=command.note,
            fix=command.fix.to_json() if command.fix else None,
            recorded_by=who.officer_id,
            recorded_at=now,
            alert_id=alert_id,
        )
        detail = {
            "plan_id": plan.id,
            "stop_id": stop.id,
            "team_id": stop.team_id,
            "outcome": command.outcome.value,
            "at": iso(command.at),
            "note": command.note,
            "fix": visit["fix"],
            "in_curfew": span is not None,
            "alert_id": alert_id,
            "contradicted_alert_ids": contradicted,
            "previous": previous,
        }
        uow.audit(
            officer_id=who.officer_id,
            action="patrol_stop.record",
            subject_id=command.subject_id,
            purpose=command.note or "patrol finding",
            request_id=command.request_id,
            detail=detail,
        )
        uow.emit(
            DomainEvent(
                EventName.PATROL_STOP_RECORDED,
                plan.org_unit_id,
                command.subject_id,
                alert_id,
                {
                    "plan_id": plan.id,
                    "stop_id": stop.id,
                    "team_id": stop.team_id,
                    "outcome": command.outcome.value,
                    "at": iso(command.at),
                    "recorded_by": who.officer_id,
                    "alert_id": alert_id,
                    "contradicted_alert_ids": contradicted,
                    "corrected": previous is not None,
                },
            )
        )
    return RecordedStop(
        plan_id=plan.id,
        stop_id=recorded.id,
        team_id=recorded.team_id,
        subject_id=recorded.subject_id,
        seq=recorded.seq,
        eta=recorded.eta,
        reasons=recorded.reasons,
        outcome=recorded.outcome,
        at=recorded.outcome_at,
        note=recorded.outcome_note,
        fix=recorded.outcome_fix,
        recorded_by=recorded.recorded_by,
        recorded_at=recorded.recorded_at,
        alert_id=recorded.alert_id,
        contradicted_alert_ids=tuple(contradicted),
    )
