"""Self-resolution first, then officers: when an alert reaches officers, and incidents.

An alert of a type that policy ``[self_resolution]`` gives a grace (seconds) does not reach
officers at once. The subject's phone is told first ("您已离开活动区域，请立即返回或联系社区
矫正工作人员"), and the alert waits until ``self_resolution_until`` (its ``detected_at``
plus the grace):

- when its episode ends within the grace (the evidence's ``ended_at`` no later than
  ``self_resolution_until``, nor than the breach's confirmation plus the grace in the
  evidence's own time, so late uploads of a long breach never count), it is
  ``self_resolved``: told as ``alert.self_resolved``, never released, no task, no
  notification;
- when the grace runs out with the episode still going on (or ended after it), it is
  **released**: ``released_at`` is set and ``alert.released`` told.

A type with no grace is released as soon as it opens. Every alert that reaches officers is
released exactly once; tasks and notifications follow ``alert.released``, not
``alert.opened``. The alert itself is listed and on the live feed from its opening, with
``self_resolution_until`` saying it is in its grace: nothing is hidden from officers who
look, only nobody is summoned yet.

This runs as a consumer of the event log (``alert.opened``, ``alert.ended``,
``alert.reopened``), so alerts opened by every path (ingest, the lost-contact sweep, the
missed check-in sweep, integrity signals) are covered, and its effects commit with its
cursor: exactly once. The grace's end is a durable timer (``alert.release``, keyed by the
alert id) on the injected clock. The same consumer groups the alerts of one trip into an
incident (``domain/incidents.py``).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.alerts import AlertChange, AlertType, after_grace
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import EventName, StoredEvent, alert_event
from correction_monitor.domain.incidents import (
    ONGOING_TYPES,
    TRIP_TYPES,
    WINDOW_S,
    correlates,
    window_start,
)
from correction_monitor.domain.messages import MessageKind, NewMessage
from correction_monitor.domain.models import Alert
from correction_monitor.domain.timers import DueTimer, Timer
from correction_monitor.domain.timeutil import iso, parse_instant
from correction_monitor.policy import Policy
from correction_monitor.service.consumers import Consumer
from correction_monitor.service.unit_of_work import UnitOfWork

CONSUMER = "alert-release"
RELEASE_TIMER = "alert.release"

MESSAGES: dict[AlertType, str] = {
    AlertType.LEFT_ACTIVITY_AREA: "您已离开活动区域，请立即返回或联系社区矫正工作人员。",
    AlertType.CURFEW_VIOLATION: "现为宵禁时段，您不在居住地，请立即返回或联系社区矫正工作人员。",
    AlertType.LEAVE_OVERDUE: "您的外出期限已过，请立即返回或联系社区矫正工作人员。",
    AlertType.ENTERED_EXCLUSION_ZONE: "您已进入禁止进入的区域，请立即离开或联系社区矫正工作人员。",
    AlertType.MISSED_CHECKIN: "您错过了一次签到，请立即联系社区矫正工作人员。",
    AlertType.LOST_CONTACT: "系统长时间未收到您的位置，请立即开启定位或联系社区矫正工作人员。",
    AlertType.DEVICE_INTEGRITY: "您的设备状态异常，请立即联系社区矫正工作人员。",
}
"""The message to the phone when a grace starts, per type (zh-CN, the app's language)."""


def message_text(alert_type: AlertType) -> str:
    return MESSAGES.get(alert_type, "请立即联系社区矫正工作人员。")


def _change_data(alert: Alert) -> dict[str, object]:
    """What consumers of ``alert.released`` / ``alert.self_resolved`` need without reading
    the alert back."""
    return {
        "type": alert.type.value,
        "severity": alert.severity,
        "detected_at": iso(alert.detected_at),
        "started_at": iso(alert.started_at),
        "ended_at": iso(alert.ended_at),
        "self_resolution_until": iso(alert.self_resolution_until),
        "incident_id": alert.incident_id,
    }


def _confirmed_at(alert: Alert) -> datetime | None:
    """When the breach was confirmed in the evidence's time (fix evaluation records it);
    None when the evidence does not say or says it unreadably (it is stored data, but
    never worth failing a release over)."""
    raw = alert.evidence.get("confirmed_at")
    if not isinstance(raw, str):
        return None
    try:
        return parse_instant(raw)
    except ValueError:
        return None


async def _settle(alert: Alert, uow: UnitOfWork, now: datetime) -> AlertChange | None:
    """Release or self-resolve ``alert`` when its grace says so (``after_grace``); the
    change made, if any, told as its event."""
    if alert.released_at is not None or alert.self_resolved:
        return None
    until = alert.self_resolution_until
    outcome = after_grace(
        ended_at=alert.ended_at,
        until=until,
        retracted=alert.retracted_at is not None,
        now=now,
        confirmed_at=_confirmed_at(alert),
        grace_s=(until - alert.detected_at).total_seconds() if until else 0.0,
    )
    if outcome is AlertChange.RELEASED:
        if not await uow.alert_lifecycle.release(alert.id, now):
            return None
    elif outcome is AlertChange.SELF_RESOLVED:
        if not await uow.alert_lifecycle.self_resolve(alert.id):
            return None
        await uow.timers.cancel(RELEASE_TIMER, str(alert.id))
    else:
        return None
    data = _change_data(alert)
    if outcome is AlertChange.RELEASED:
        data["released_at"] = iso(now)
    uow.emit(alert_event(outcome, alert.id, alert.org_unit_id, alert.subject_id, data))
    return outcome


async def _locked(uow: UnitOfWork, alert_id: int) -> Alert | None:
    try:
        await uow.alert_lifecycle.lock(alert_id)
        return await uow.alerts.get(alert_id)
    except stored.NotFound:
        return None


async def _correlate(alert: Alert, uow: UnitOfWork) -> None:
    """Put ``alert`` into the incident of the subject's earlier alerts of the same trip
    (``domain/incidents.py``), starting one when none of them has one yet."""
    if alert.type not in TRIP_TYPES or alert.incident_id is not None:
        return
    found = await uow.incidents.neighbours(
        alert.subject_id,
        alert.id,
        sorted(TRIP_TYPES),
        window_start(alert.detected_at),
        sorted(ONGOING_TYPES),
    )
    related = [n for n in found if correlates(alert.type, alert.detected_at, n)]
    if not related:
        return
    joined = next((n.incident_id for n in related if n.incident_id is not None), None)
    if joined is None:
        joined = await uow.incidents.create(
            alert.subject_id,
            alert.org_unit_id,
            min(n.detected_at for n in related),
            {"rule": "same_trip", "window_s": WINDOW_S, "types": sorted(TRIP_TYPES)},
        )
    await uow.incidents.attach(joined, [alert.id, *(n.alert_id for n in related)])


async def on_alert_event(
    event: StoredEvent, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> None:
    """The consumer's handler: see the module docstring."""
    if event.alert_id is None:
        return
    alert = await _locked(uow, event.alert_id)
    if alert is None:
        return
    now = clock.now()
    if event.name == EventName.ALERT_OPENED:
        await _correlate(alert, uow)
        alert = await uow.alerts.get(alert.id)
        if alert.released_at is not None or alert.self_resolved:
            return
        grace_s = policy.self_resolution(alert.type.value)
        if grace_s <= 0 or alert.self_resolution_until is not None:
            await _settle(alert, uow, now)
            return
        until = await uow.alert_lifecycle.start_grace(alert.id, grace_s)
        if until is None:
            return
        await uow.messages.add(
            [
                NewMessage(
                    alert.subject_id,
                    MessageKind.SELF_RESOLUTION,
                    message_text(alert.type),
                    {
                        "alert_id": alert.id,
                        "type": alert.type.value,
                        "self_resolution_until": iso(until),
                    },
                    dedupe_key=f"self_resolution:{alert.id}",
                )
            ],
            now,
        )
        uow.schedule(Timer(RELEASE_TIMER, str(alert.id), until, {"alert_id": alert.id}))
    elif alert.self_resolution_until is not None:
        # Ended (maybe within the grace), or an episode that a replay found not to have
        # ended after all (then the grace's timer, or this, releases it when it is over).
        await _settle(alert, uow, now)


async def release_when_due(timer: DueTimer, uow: UnitOfWork, *, clock: Clock) -> None:
    """The grace of the alert keyed by ``timer`` is over: release it unless it ended within
    the grace (then it self-resolved) or was released or self-resolved already."""
    alert = await _locked(uow, int(timer.key))
    if alert is not None:
        await _settle(alert, uow, max(clock.now(), timer.due_at))


def consumer(policy: Policy, clock: Clock) -> Consumer:
    """The event-log consumer releasing and self-resolving alerts and grouping incidents."""
    return Consumer(
        CONSUMER,
        partial(on_alert_event, policy=policy, clock=clock),
        frozenset(
            {
                EventName.ALERT_OPENED.value,
                EventName.ALERT_ENDED.value,
                EventName.ALERT_REOPENED.value,
            }
        ),
    )
