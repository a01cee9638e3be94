"""Check-ins (报到/签到): laying out each subject's windows and random challenges, answers
from the subject's app, officers' schedules (一人一策), on-demand challenges and reviews.

A check-in row is created ``pending`` when it is laid out; answering sets ``passed``,
``needs_review`` or ``failed`` with its reasons; closing an unanswered window as ``missed``
belongs to the deadline sweep (``service/checkin_deadlines.py``). Windows replaced before
they open are ``cancelled`` and never shown. Every decision uses the injected clock.

Layout (:func:`lay_out`) runs per subject, serialised by a lock of the subject's: from the
scheduled job over every subject falling behind (:class:`LayOutCheckins`), before a read of
a subject's check-ins when it is behind, and again at once when its windows change (its own
schedule set or cleared, its level changed, a leave approved or cancelled: the
:func:`relayout_consumer` of the event log). docs/checkins.md has the whole story.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from correction_monitor.domain.access import CASEWORK_ROLES, Principal
from correction_monitor.domain.checkins import (
    ALGORITHM,
    ANSWERED,
    AnswerTarget,
    Checkin,
    CheckinKind,
    CheckinStatus,
    Draw,
    DrawInputs,
    Face,
    NewCheckin,
    Slot,
    decide,
    draw_times,
    leave_days,
    new_seed,
    periods_meeting,
    stationary,
    wholly_outside,
    window_slots,
    windows_from_json,
    windows_to_json,
)
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import DomainEvent, EventName, StoredEvent
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.domain.integrity import Rule
from correction_monitor.domain.messages import MessageKind, NewMessage
from correction_monitor.domain.models import Subject
from correction_monitor.domain.timers import DueTimer, Timer
from correction_monitor.domain.timeutil import iso
from correction_monitor.policy import CheckinWindow, Policy
from correction_monitor.service.command import Command
from correction_monitor.service.consumers import Consumer
from correction_monitor.service.errors import Conflict, Forbidden, InvalidInput, NotFound
from correction_monitor.service.integrity import raise_signal
from correction_monitor.service.jurisdiction import visible_subject
from correction_monitor.service.unit_of_work import UnitOfWork
from geofences.classify import PreparedArea, classify
from geofences.crs import CRS, to_wgs84
from geofences.model import Circle, Membership

LAYOUT_SLACK = 0.25
"""A subject is behind when laid out less than ``(1 - LAYOUT_SLACK) * layout_ahead_s``
ahead: with the default two days, each subject is laid out about twice a day."""
LAYOUT_BATCH = 200
"""Subjects laid out per unit of work by the scheduled job."""
LIST_LIMIT = 5000
"""Check-ins answered by one read at most."""
CHALLENGE_TIMER = "checkin.challenge"
"""The durable timer that tells the subject's app when a drawn challenge opens."""
RELAYOUT_EVENTS = frozenset(
    e.value
    for e in (EventName.SUBJECT_CHANGED, EventName.LEAVE_APPROVED, EventName.LEAVE_CANCELLED)
)
"""Events after which a subject's windows not yet open are laid out again."""


# ------------------------------------------------------------------------- areas


class AreaCache:
    """Prepared fence areas for answers' ``outside_area`` test, kept per process.

    A fence is never edited in place (a changed fence is a new fence, with a new id and, for a
    polygon, a new geometry row), so what a fence id is made of is read once, and a prepared
    area is keyed by what it is made of; both stay valid. The least recently used are
    dropped beyond ``size``.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._shapes: OrderedDict[int, tuple[Any, ...]] = OrderedDict()
        self._areas: OrderedDict[tuple[Any, ...], PreparedArea] = OrderedDict()

    async def _shape_of(self, uow: UnitOfWork, fence_id: int) -> tuple[Any, ...] | None:
        """What the fence is made of: ``("geometry", id)`` or ``("circle", lon, lat, r)``."""
        key = self._shapes.get(fence_id)
        if key is not None:
            self._shapes.move_to_end(fence_id)
            return key
        found = await uow.geo.get_fences([fence_id])
        if not found:
            return None  # not remembered: a fence with this id may be created later
        fence = found[0]
        if fence.geometry_id is not None:
            key = ("geometry", fence.geometry_id)
        else:
            assert fence.center_lon is not None
            assert fence.center_lat is not None
            assert fence.radius_m is not None
            key = ("circle", fence.center_lon, fence.center_lat, fence.radius_m)
        self._shapes[fence_id] = key
        while len(self._shapes) > self._size:
            self._shapes.popitem(last=False)
        return key

    async def of_fence(self, uow: UnitOfWork, fence_id: int) -> PreparedArea | None:
        key = await self._shape_of(uow, fence_id)
        if key is None:
            return None
        area = self._areas.get(key)
        if area is None:
            if key[0] == "geometry":
                area = PreparedArea(await uow.geo.load_geometry(key[1]))
            else:
                area = PreparedArea(Circle(key[1], key[2], key[3]))
            self._areas[key] = area
            while len(self._areas) > self._size:
                self._areas.popitem(last=False)
        else:
            self._areas.move_to_end(key)
        return area


# ------------------------------------------------------------------------- layout


async def _timezone(uow: UnitOfWork, org_unit_id: int) -> str:
    return (await uow.org_units.get(org_unit_id)).timezone


async def subject_windows(
    uow: UnitOfWork, subject: Subject, policy: Policy
) -> tuple[tuple[CheckinWindow, ...], bool]:
    """The subject's scheduled windows and whether they are its own (一人一策) rather than
    its level's."""
    own = await uow.checkins.schedule(subject.id)
    if own is not None:
        return windows_from_json(own.windows), True
    return policy.level(subject.supervision_level).checkin_windows, False


def _behind(laid: datetime | None, now: datetime, policy: Policy) -> bool:
    ahead = policy.checkins.layout_ahead_s * (1 - LAYOUT_SLACK)
    return laid is None or laid < now + timedelta(seconds=ahead)


async def lay_out(
    uow: UnitOfWork, subject: Subject, *, policy: Policy, now: datetime, force: bool = False
) -> list[Checkin]:
    """Lay the subject's windows and challenges out to ``now + layout_ahead_s``; the
    check-ins created. Without ``force``, only when the subject is behind.

    Windows not yet open are made to match the subject's schedule as it is now: those no
    longer in it are cancelled, missing ones laid out (a subject's first layout also lays out
    a window open now). Each challenge period meeting the span is drawn once; drawn challenges
    not yet open whose period is no longer the level's are cancelled.
    """
    await uow.checkins.lock_layout(subject.id)
    laid = await uow.checkins.laid_until(subject.id)
    if not force and not _behind(laid, now, policy):
        return []
    horizon = now + timedelta(seconds=policy.checkins.layout_ahead_s)
    if subject.status != "active":
        await uow.checkins.set_laid_until(subject.id, horizon, now)
        return []
    timezone = await _timezone(uow, subject.org_unit_id)
    level = policy.level(subject.supervision_level)
    windows, _ = await subject_windows(uow, subject, policy)
    periods = (
        periods_meeting(level.challenge_period, now, horizon, timezone)
        if level.challenges_per_period > 0
        else []
    )
    future = await uow.checkins.pending_after(subject.id, CheckinKind.SCHEDULED, now)
    span_end = max(
        [horizon, *(p.closes_at for p in periods), *(c.opens_at + timedelta(1) for c in future)]
    )
    skip: frozenset[date] = frozenset()
    if policy.checkins.skip_on_leave:
        leaves = await uow.checkins.approved_leaves(subject.id, now - timedelta(days=2), span_end)
        skip = leave_days([(lv.starts_at, lv.ends_at) for lv in leaves], ZoneInfo(timezone))
    slots = window_slots(
        windows,
        timezone,
        term_start=subject.term_start,
        term_end=subject.term_end,
        start=now - timedelta(days=2),
        end=span_end,
        skip_days=skip,
    )
    wanted = set(slots)
    await uow.checkins.cancel([c.id for c in future if Slot(c.opens_at, c.closes_at) not in wanted])
    new = [
        NewCheckin(subject.id, subject.org_unit_id, CheckinKind.SCHEDULED, s.opens_at, s.closes_at)
        for s in slots
        if s.opens_at < horizon and (s.opens_at > now or (laid is None and s.closes_at > now))
    ]
    created = await uow.checkins.add(new, now)
    await uow.checkins.cancel_stale_challenges(
        subject.id, now, level.challenge_period if level.challenges_per_period > 0 else None
    )
    for period in periods:
        created += await _draw_period(uow, subject, period, slots, policy, timezone, now)
    await uow.checkins.set_laid_until(subject.id, horizon, now)
    return created


async def _draw_period(
    uow: UnitOfWork,
    subject: Subject,
    period: Slot,
    slots: Sequence[Slot],
    policy: Policy,
    timezone: str,
    now: datetime,
) -> list[Checkin]:
    """Draw the period's challenges unless it was drawn; the challenges laid out."""
    level = policy.level(subject.supervision_level)
    if await uow.checkins.draw(subject.id, level.challenge_period, period.opens_at) is not None:
        return []
    curfew = subject.curfew
    inputs = DrawInputs(
        timezone=timezone,
        period=level.challenge_period,
        period_start=period.opens_at,
        period_end=period.closes_at,
        not_before=now,
        count=level.challenges_per_period,
        answer_s=round(level.challenge_answer_s),
        waking_start=policy.checkins.waking_start,
        waking_end=policy.checkins.waking_end,
        curfew=(curfew.start, curfew.end) if curfew is not None else None,
        term_start=subject.term_start,
        term_end=subject.term_end,
        avoid=tuple(
            s for s in slots if s.closes_at > period.opens_at and s.opens_at < period.closes_at
        ),
    )
    seed = new_seed()
    times = draw_times(seed, inputs)
    stored = await uow.checkins.add_draw(
        subject_id=subject.id,
        period=inputs.period,
        period_start=period.opens_at,
        period_end=period.closes_at,
        seed=seed,
        algorithm=ALGORITHM,
        inputs=inputs.to_json(),
        times=[iso(t) or "" for t in times],
        at=now,
    )
    if stored is None:
        return []
    answer = timedelta(seconds=inputs.answer_s)
    created = await uow.checkins.add(
        [
            NewCheckin(
                subject.id, subject.org_unit_id, CheckinKind.CHALLENGE, t, t + answer, stored.id
            )
            for t in times
        ],
        now,
    )
    for checkin in created:
        uow.schedule(
            Timer(
                CHALLENGE_TIMER,
                str(checkin.id),
                checkin.opens_at,
                {"checkin_id": checkin.id, "subject_id": subject.id},
            )
        )
    return created


@dataclass(frozen=True, slots=True)
class LayOutCheckins(Command[int]):
    """Lay out, in batches, every active subject behind at ``now``; how many were laid out
    (the scheduled job ``checkin-layout``). At most ``limit`` subjects per run."""

    now: datetime
    limit: int = 20_000


async def lay_out_checkins(command: LayOutCheckins, uow: UnitOfWork, *, policy: Policy) -> int:
    now = command.now
    before = now + timedelta(seconds=policy.checkins.layout_ahead_s * (1 - LAYOUT_SLACK))
    done = 0
    while done < command.limit:
        async with uow:
            # The term is in local days; a day's margin covers every time zone.
            ids = await uow.checkins.subjects_behind(
                before, (now - timedelta(days=1)).date(), min(LAYOUT_BATCH, command.limit - done)
            )
            for subject_id in ids:
                await lay_out(uow, await uow.subjects.get(subject_id), policy=policy, now=now)
        done += len(ids)
        if len(ids) < LAYOUT_BATCH:
            break
    return done


def relayout_consumer(policy: Policy, clock: Clock) -> Consumer:
    """The event log's reader that lays a subject's windows out again after its level
    changed or a leave of its was approved or cancelled."""

    async def handle(event: StoredEvent, uow: UnitOfWork) -> None:
        if event.subject_id is None:
            return
        subject = await uow.subjects.get(event.subject_id)
        await lay_out(uow, subject, policy=policy, now=clock.now(), force=True)

    return Consumer("checkin-relayout", handle, RELAYOUT_EVENTS)


def challenge_message(checkin: Checkin, *, sent_by: int | None = None) -> NewMessage:
    minutes = max(1, round((checkin.closes_at - checkin.opens_at).total_seconds() / 60))
    return NewMessage(
        checkin.subject_id,
        MessageKind.CHALLENGE,
        f"请立即签到：请在 {minutes} 分钟内完成人脸核验签到。"
        f" (Check in now: answer within {minutes} minutes.)",
        {"checkin_id": checkin.id, "closes_at": iso(checkin.closes_at)},
        dedupe_key=f"challenge:{checkin.id}",
        sent_by=sent_by,
    )


async def challenge_opened(timer: DueTimer, uow: UnitOfWork) -> None:
    """A drawn challenge opens: tell the subject's app, unless it was cancelled meanwhile."""
    checkin = await uow.checkins.get(int(timer.payload["checkin_id"]))
    if checkin is None or checkin.status is not CheckinStatus.PENDING:
        return
    await uow.messages.add([challenge_message(checkin)], timer.due_at)


# ------------------------------------------------------------------------- reads


def _default_span(now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(hours=24), now + timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class ListMyCheckins(Command[list[Checkin]]):
    """The subject's own check-ins meeting ``[start, end)`` (default: the last 24 h and the
    next 48 h), for its app. Challenges are shown once open: drawn ones are not told ahead."""

    subject_id: int
    start: datetime | None = None
    end: datetime | None = None


async def list_my_checkins(
    command: ListMyCheckins, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> list[Checkin]:
    now = clock.now()
    start, end = _span(command.start, command.end, now)
    async with uow:
        subject = await uow.subjects.get(command.subject_id)
        await lay_out(uow, subject, policy=policy, now=now)
        return await uow.checkins.list_for(
            subject.id, start, end, challenges_opened_by=now, limit=LIST_LIMIT
        )


def _span(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    default_start, default_end = _default_span(now)
    start = start or default_start
    end = end or default_end
    if end <= start:
        raise InvalidInput("invalid_request", "to must be after from")
    return start, end


@dataclass(frozen=True, slots=True)
class ListSubjectCheckins(Command[list[Checkin]]):
    """A subject's check-ins meeting ``[start, end)``, for officers (audited: answers carry
    the subject's position)."""

    actor: Principal
    subject_id: int
    start: datetime | None = None
    end: datetime | None = None
    purpose: str | None = None
    request_id: str | None = None


async def list_subject_checkins(
    command: ListSubjectCheckins, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> list[Checkin]:
    now = clock.now()
    start, end = _span(command.start, command.end, now)
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        await lay_out(uow, subject, policy=policy, now=now)
        found = await uow.checkins.list_for(
            subject.id, start, end, challenges_opened_by=None, limit=LIST_LIMIT
        )
        uow.audit(
            officer_id=command.actor.officer_id,
            action="checkin.list",
            subject_id=subject.id,
            purpose=command.purpose,
            request_id=command.request_id,
            detail={"from": iso(start), "to": iso(end), "count": len(found)},
        )
    return found


@dataclass(frozen=True, slots=True)
class ListCheckinDraws(Command[list[Draw]]):
    """A subject's challenge draws with their seeds and inputs, for auditors (audited)."""

    actor: Principal
    subject_id: int
    limit: int = 500
    request_id: str | None = None


async def list_checkin_draws(command: ListCheckinDraws, uow: UnitOfWork) -> list[Draw]:
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        found = await uow.checkins.draws(subject.id, command.limit)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="checkin.draws.read",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={"count": len(found)},
        )
    return found


# ------------------------------------------------------------------------- officers' acts


def _casework(who: Principal) -> None:
    if not who.may(CASEWORK_ROLES):
        raise Forbidden(f"role {who.role.value!r} may not do this")


@dataclass(frozen=True, slots=True)
class SetCheckinSchedule(Command[list[dict[str, Any]]]):
    """Give the subject windows of its own instead of its level's (一人一策), from now on:
    windows not yet open are replaced. The result is the schedule as stored."""

    actor: Principal
    subject_id: int
    windows: tuple[CheckinWindow, ...]
    request_id: str | None = None


async def set_checkin_schedule(
    command: SetCheckinSchedule, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> list[dict[str, Any]]:
    _casework(command.actor)
    now = clock.now()
    stored = windows_to_json(command.windows)
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        previous = await uow.checkins.schedule(subject.id)
        await uow.checkins.set_schedule(subject.id, stored, command.actor.officer_id, now)
        await lay_out(uow, subject, policy=policy, now=now, force=True)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="checkin_schedule.set",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={
                "windows": stored,
                "previous": previous.windows if previous is not None else None,
            },
        )
        uow.emit(
            DomainEvent(
                EventName.CHECKIN_SCHEDULE_CHANGED,
                subject.org_unit_id,
                subject_id=subject.id,
                data={"windows": stored, "own": True},
            )
        )
    return stored


@dataclass(frozen=True, slots=True)
class ClearCheckinSchedule(Command[None]):
    """Put the subject back on its level's windows, from now on."""

    actor: Principal
    subject_id: int
    request_id: str | None = None


async def clear_checkin_schedule(
    command: ClearCheckinSchedule, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> None:
    _casework(command.actor)
    now = clock.now()
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        previous = await uow.checkins.schedule(subject.id)
        if not await uow.checkins.clear_schedule(subject.id):
            return  # already on its level's windows: nothing changed, nothing to record
        await lay_out(uow, subject, policy=policy, now=now, force=True)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="checkin_schedule.clear",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={"previous": previous.windows if previous is not None else None},
        )
        uow.emit(
            DomainEvent(
                EventName.CHECKIN_SCHEDULE_CHANGED,
                subject.org_unit_id,
                subject_id=subject.id,
                data={
                    "windows": windows_to_json(
                        policy.level(subject.supervision_level).checkin_windows
                    ),
                    "own": False,
                },
            )
        )


@dataclass(frozen=True, slots=True)
class IssueChallenge(Command[Checkin]):
    """An officer's challenge, opening now, to be answered within ``answer_within_s``."""

    actor: Principal
    subject_id: int
    answer_within_s: int
    request_id: str | None = None


async def issue_challenge(command: IssueChallenge, uow: UnitOfWork, *, clock: Clock) -> Checkin:
    _casework(command.actor)
    now = clock.now()
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        if subject.status != "active":
            raise Conflict("subject_inactive", f"subject {subject.id} is not under supervision")
        created = await uow.checkins.add(
            [
                NewCheckin(
                    subject.id,
                    subject.org_unit_id,
                    CheckinKind.CHALLENGE,
                    now,
                    now + timedelta(seconds=command.answer_within_s),
                    issued_by=command.actor.officer_id,
                )
            ],
            now,
        )
        if not created:
            raise Conflict("challenge_exists", "a challenge opens at this very moment already")
        checkin = created[0]
        await uow.messages.add([challenge_message(checkin, sent_by=command.actor.officer_id)], now)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="checkin.challenge",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={"checkin_id": checkin.id, "answer_within_s": command.answer_within_s},
        )
        uow.emit(
            DomainEvent(
                EventName.CHECKIN_CHALLENGED,
                subject.org_unit_id,
                subject_id=subject.id,
                data={
                    "checkin_id": checkin.id,
                    "closes_at": iso(checkin.closes_at),
                    "issued_by": command.actor.officer_id,
                },
            )
        )
    return checkin


@dataclass(frozen=True, slots=True)
class ReviewCheckin(Command[Checkin]):
    """An officer's decision on a check-in that needs review: ``passed`` or ``failed``."""

    actor: Principal
    checkin_id: int
    decision: CheckinStatus
    note: str | None = None
    request_id: str | None = None


async def review_checkin(command: ReviewCheckin, uow: UnitOfWork, *, clock: Clock) -> Checkin:
    _casework(command.actor)
    if command.decision not in (CheckinStatus.PASSED, CheckinStatus.FAILED):
        raise InvalidInput("invalid_request", "decision must be 'passed' or 'failed'")
    now = clock.now()
    async with uow:
        found = await uow.checkins.get(command.checkin_id, for_update=True)
        if found is None or not command.actor.sees(found.org_unit_id):
            raise NotFound(f"check-in {command.checkin_id}")
        if found.status is not CheckinStatus.NEEDS_REVIEW:
            raise Conflict(
                "not_reviewable",
                f"check-in {found.id} is {found.shown_status(now)!r}; only a check-in that "
                "needs review can be reviewed",
            )
        reviewed = await uow.checkins.review(
            found.id,
            status=command.decision,
            officer_id=command.actor.officer_id,
            at=now,
            note=command.note,
        )
        assert reviewed is not None, "the row is locked and needs review"
        uow.audit(
            officer_id=command.actor.officer_id,
            action="checkin.review",
            subject_id=found.subject_id,
            request_id=command.request_id,
            detail={
                "checkin_id": found.id,
                "decision": command.decision.value,
                "note": command.note,
                "reasons": list(found.reasons),
            },
        )
        uow.emit(
            DomainEvent(
                EventName.CHECKIN_REVIEWED,
                found.org_unit_id,
                subject_id=found.subject_id,
                data={
                    "checkin_id": found.id,
                    "decision": command.decision.value,
                    "reviewed_by": command.actor.officer_id,
                },
            )
        )
    return reviewed


# ------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class AnswerCheckin(Command[Checkin]):
    """The subject's app answers one of its check-ins: a fix (in ``crs``), whether the
    phone says it is simulated, a face result and/or a photo's SHA-256 (lowercase hex)."""

    subject_id: int
    device_id: int
    checkin_id: int
    ts: datetime
    lat: float
    lon: float
    accuracy_m: float | None = None
    crs: CRS = CRS.WGS84
    mock: bool = False
    face: Face | None = None
    photo_sha256: str | None = None


async def answer_checkin(
    command: AnswerCheckin,
    uow: UnitOfWork,
    *,
    policy: Policy,
    clock: Clock,
    areas: AreaCache,
) -> Checkin:
    """Decide the answer's outcome (``domain.checkins.decide``) and record it; raise the
    ``replayed_media`` and ``stationary_checkin`` integrity signals it shows.

    409 ``already_answered`` for an answered one, 409 ``not_open`` before it opens; a
    check-in of another subject, cancelled, or a challenge not yet open is not found. A
    missed window may still be answered: ``failed`` with ``late`` (its alert stays).
    """
    now = clock.now()
    async with uow:
        target = await uow.checkins.answer_target(command.checkin_id)
        if target is None or target.checkin.subject_id != command.subject_id:
            raise NotFound(f"check-in {command.checkin_id}")
        checkin = target.checkin
        if checkin.status is CheckinStatus.CANCELLED or (
            checkin.kind is CheckinKind.CHALLENGE and now < checkin.opens_at
        ):
            raise NotFound(f"check-in {command.checkin_id}")
        if checkin.status in ANSWERED:
            raise Conflict("already_answered", f"check-in {checkin.id} was answered already")
        if now < checkin.opens_at:
            raise Conflict("not_open", f"check-in {checkin.id} opens at {iso(checkin.opens_at)}")
        subject_id, org_unit_id = checkin.subject_id, target.org_unit_id
        wgs_lon, wgs_lat = (float(v) for v in to_wgs84(command.lon, command.lat, command.crs))
        accuracy = (
            command.accuracy_m
            if command.accuracy_m is not None
            else policy.ingest.default_accuracy_m
        )
        outside = await _outside(uow, areas, target, wgs_lon, wgs_lat, accuracy, command.ts)
        replayed_of = (
            await uow.checkins.photo_used_by(subject_id, command.photo_sha256, checkin.id)
            if command.photo_sha256 is not None
            else None
        )
        status, reasons = decide(
            received_at=now,
            closes_at=checkin.closes_at,
            mock=command.mock,
            outside_area=outside,
            replayed_media=replayed_of is not None,
            face=command.face,
            photo=command.photo_sha256 is not None,
            face_score_min=policy.level(target.supervision_level).face_score_min,
        )
        answer = {
            "ts": iso(command.ts),
            "received_at": iso(now),
            "lat": wgs_lat,
            "lon": wgs_lon,
            "accuracy_m": command.accuracy_m,
            "accuracy_used_m": accuracy,
            "crs": command.crs.value,
            "raw": {"lat": command.lat, "lon": command.lon},
            "mock": command.mock,
            "face": (
                {
                    "score": command.face.score,
                    "liveness": command.face.liveness,
                    "vendor": command.face.vendor,
                }
                if command.face is not None
                else None
            ),
            "device_id": command.device_id,
            "previous_status": checkin.status.value,
        }
        answered = await uow.checkins.answer(
            checkin.id,
            status=status,
            reasons=[r.value for r in reasons],
            answered_at=now,
            answer=answer,
            photo_sha256=command.photo_sha256,
            device_id=command.device_id,
        )
        if answered is None:
            raise Conflict("already_answered", f"check-in {checkin.id} was answered already")
        uow.emit(
            DomainEvent(
                EventName.CHECKIN_ANSWERED,
                org_unit_id,
                subject_id=subject_id,
                data={
                    "checkin_id": answered.id,
                    "kind": answered.kind.value,
                    "status": answered.status.value,
                    "reasons": list(answered.reasons),
                },
            )
        )
        await _integrity_signals(uow, org_unit_id, answered, replayed_of, policy, now)
    return answered


async def _outside(
    uow: UnitOfWork,
    areas: AreaCache,
    target: AnswerTarget,
    lon: float,
    lat: float,
    accuracy_m: float,
    ts: datetime,
) -> bool:
    """Whether the fix's disc lies wholly outside the activity area and every approved leave
    destination running at ``ts`` (the leaves are read only for a fix outside the area)."""
    if target.activity_area_id is None:
        return False
    area = await areas.of_fence(uow, target.activity_area_id)
    if area is None:
        return False
    activity = int(classify(area, [lon], [lat], [accuracy_m])[0])
    if activity != Membership.OUTSIDE:
        return False
    destinations = []
    for leave in await uow.checkins.approved_leaves(target.checkin.subject_id, ts, ts):
        destination = await areas.of_fence(uow, leave.destination_fence_id)
        if destination is not None:
            destinations.append(int(classify(destination, [lon], [lat], [accuracy_m])[0]))
    return wholly_outside(activity, destinations, Membership.OUTSIDE)


async def _integrity_signals(
    uow: UnitOfWork,
    org_unit_id: int,
    answered: Checkin,
    replayed_of: int | None,
    policy: Policy,
    now: datetime,
) -> None:
    """人机分离 signals of an answer: a photo sent before, and a failed or doubtful answer
    while the phone has lain still for hours (each switched by ``[integrity]``)."""
    integrity = policy.integrity
    base = {
        "checkin_id": answered.id,
        "kind": answered.kind.value,
        "status": answered.status.value,
        "reasons": list(answered.reasons),
    }
    if replayed_of is not None and integrity.replayed_media:
        await raise_signal(
            uow,
            subject_id=answered.subject_id,
            org_unit_id=org_unit_id,
            rule=Rule.REPLAYED_MEDIA.value,
            at=now,
            item=base | {"photo_sha256": answered.photo_sha256, "earlier_checkin_id": replayed_of},
            policy=integrity,
        )
    doubtful = answered.status in (CheckinStatus.FAILED, CheckinStatus.NEEDS_REVIEW)
    if doubtful and integrity.stationary_checkin:
        span = timedelta(seconds=integrity.stationary_s)
        points = await uow.fixes.track(
            answered.subject_id, now - span, now + timedelta(seconds=1), 20_000
        )
        facts = stationary(
            [
                (p.ts, p.lon_e7 / 1e7, p.lat_e7 / 1e7)
                for p in points
                if not p.flags & FixFlag.NOT_DECIDING
            ],
            now,
            integrity.stationary_s,
            integrity.stationary_radius_m,
        )
        if facts is not None:
            await raise_signal(
                uow,
                subject_id=answered.subject_id,
                org_unit_id=org_unit_id,
                rule=Rule.STATIONARY_CHECKIN.value,
                at=now,
                item=base | facts,
                policy=integrity,
            )
