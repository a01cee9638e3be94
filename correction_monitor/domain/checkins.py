"""Check-ins (报到/签到): scheduled windows, random challenges and the outcome of an answer.

Everything here is pure: the service layer (``service/checkins.py``) reads the subject, its
schedule, its leaves and the clock, and stores what these functions return.

- **Windows.** A subject's scheduled windows come from its level's ``checkin_windows`` or
  from its own schedule (一人一策). :func:`window_slots` lays them out over a span, in the
  station's IANA time zone, on the local days of the term, skipping the local days an
  approved leave touches.
- **Challenges.** :func:`draw_times` draws a period's random challenges from a seed and the
  draw's inputs, and nothing else, so an auditor holding the stored row re-derives the exact
  times (docs/checkins.md has the procedure). The algorithm is named :data:`ALGORITHM`.
- **Answers.** :func:`decide` gives an answer's outcome exactly as CONTRACT.md lists it.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from correction_monitor.domain.models import SupervisionLevel
from correction_monitor.domain.timeutil import iso
from correction_monitor.policy import CheckinWindow, parse_hhmm
from geofences.classify import geodesic_distance_m

ALGORITHM = "mt19937-uniform-v1"
"""The name stored with every draw: Python's ``random.Random(seed)`` (Mersenne Twister,
seeded from the seed's text) choosing whole seconds uniformly with ``randrange``, as
:func:`draw_times` describes. A change to the procedure gets a new name."""


class CheckinKind(StrEnum):
    SCHEDULED = "scheduled"
    CHALLENGE = "challenge"


class CheckinStatus(StrEnum):
    """As stored. ``open`` is never stored: it is a pending check-in between its opening and
    its close (see :meth:`Checkin.shown_status`); ``cancelled`` is a window replaced before it
    opened and is never shown."""

    PENDING = "pending"
    PASSED = "passed"
    NEEDS_REVIEW = "needs_review"
    FAILED = "failed"
    MISSED = "missed"
    CANCELLED = "cancelled"


ANSWERED = frozenset({CheckinStatus.PASSED, CheckinStatus.NEEDS_REVIEW, CheckinStatus.FAILED})


class Reason(StrEnum):
    """Why an answer failed or needs an officer's review, in the contract's order."""

    LATE = "late"
    MOCK_LOCATION = "mock_location"
    OUTSIDE_AREA = "outside_area"
    REPLAYED_MEDIA = "replayed_media"
    FACE_SCORE_LOW = "face_score_low"
    LIVENESS_FAILED = "liveness_failed"
    PHOTO_ONLY = "photo_only"


FAILING = frozenset({Reason.LATE, Reason.MOCK_LOCATION, Reason.OUTSIDE_AREA, Reason.REPLAYED_MEDIA})
"""Reasons that fail an answer; the others send it to an officer's review."""


@dataclass(frozen=True, slots=True)
class Checkin:
    """One check-in window or challenge as stored (times aware UTC)."""

    id: int
    subject_id: int
    org_unit_id: int
    kind: CheckinKind
    opens_at: datetime
    closes_at: datetime
    status: CheckinStatus
    answered_at: datetime | None = None
    reasons: tuple[str, ...] = ()
    answer: dict[str, Any] | None = None
    photo_sha256: str | None = None
    device_id: int | None = None
    draw_id: int | None = None
    issued_by: int | None = None
    reviewed_by: int | None = None
    reviewed_at: datetime | None = None
    review_note: str | None = None

    def shown_status(self, now: datetime) -> str:
        """The status as the API shows it at ``now``: a pending check-in is ``open`` from its
        opening to its close and ``missed`` after it (closing it is only recorded by the
        deadline sweep, which the time has already decided)."""
        if self.status is CheckinStatus.PENDING:
            if now >= self.closes_at:
                return CheckinStatus.MISSED.value
            if now >= self.opens_at:
                return "open"
        return self.status.value

    def is_open(self, now: datetime) -> bool:
        return self.status is CheckinStatus.PENDING and self.opens_at <= now < self.closes_at

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The Checkin of CONTRACT.md, as shown at ``now``."""
        return {
            "id": self.id,
            "subject_id": self.subject_id,
            "kind": self.kind.value,
            "opens_at": iso(self.opens_at),
            "closes_at": iso(self.closes_at),
            "status": self.shown_status(now),
            "answered_at": iso(self.answered_at),
            "reasons": list(self.reasons),
        }

    def to_officer_json(self, now: datetime) -> dict[str, Any]:
        """The Checkin with what officers also see: the answer as received, who issued or
        reviewed it, and the draw it came from."""
        return self.to_json(now) | {
            "answer": self.answer,
            "photo_sha256": self.photo_sha256,
            "device_id": self.device_id,
            "draw_id": self.draw_id,
            "issued_by": self.issued_by,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": iso(self.reviewed_at),
            "review_note": self.review_note,
        }


@dataclass(frozen=True, slots=True)
class AnswerTarget:
    """The check-in an answer is for, and what the answer needs of its subject: the unit its
    events are filed under, its level (the face score it needs) and its activity area."""

    checkin: Checkin
    org_unit_id: int
    supervision_level: SupervisionLevel
    activity_area_id: int | None


@dataclass(frozen=True, slots=True, order=True)
class Slot:
    """A span of time ``[opens_at, closes_at)`` (aware UTC)."""

    opens_at: datetime
    closes_at: datetime


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A subject's own windows (JSON as the API writes them), who set them and when."""

    windows: list[dict[str, Any]]
    set_by: int | None
    set_at: datetime


@dataclass(frozen=True, slots=True)
class Draw:
    """One draw of a subject's random challenges for a period, with what re-derives it."""

    id: int
    subject_id: int
    period: str
    period_start: datetime
    period_end: datetime
    seed: str
    algorithm: str
    inputs: dict[str, Any]
    times: list[str]
    drawn_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The draw as auditors read it: everything :func:`draw_times` needs, and what it
        gave."""
        return {
            "id": self.id,
            "subject_id": self.subject_id,
            "period": self.period,
            "period_start": iso(self.period_start),
            "period_end": iso(self.period_end),
            "seed": self.seed,
            "algorithm": self.algorithm,
            "inputs": self.inputs,
            "times": self.times,
            "drawn_at": iso(self.drawn_at),
        }


@dataclass(frozen=True, slots=True)
class NewCheckin:
    """A window or challenge about to be laid out."""

    subject_id: int
    org_unit_id: int
    kind: CheckinKind
    opens_at: datetime
    closes_at: datetime
    draw_id: int | None = None
    issued_by: int | None = None


# ------------------------------------------------------------------------- local time


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of local clock time ``at`` on ``day`` in ``zone``.

    A time repeated when clocks go back is its first occurrence; a time skipped when they go
    forward is read with the offset before the change (02:30 on Berlin's spring-forward day
    is 01:30 UTC, i.e. 03:30 local).

    >>> local_instant(date(2026, 3, 1), time(9), ZoneInfo("Asia/Urumqi")).isoformat()
    '2026-03-01T03:00:00+00:00'
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _span_of(day: date, start: time, end: time, zone: ZoneInfo) -> Slot:
    """A daily span from ``start`` to ``end`` on ``day``; an end not after the start closes
    the next day."""
    end_day = day if end > start else day + timedelta(days=1)
    return Slot(local_instant(day, start, zone), local_instant(end_day, end, zone))


def _local_days(start: datetime, end: datetime, zone: ZoneInfo) -> list[date]:
    """Every local day from the one before ``start``'s to ``end``'s (a window opening the day
    before may still be running)."""
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def leave_days(spans: Iterable[tuple[datetime, datetime]], zone: ZoneInfo) -> frozenset[date]:
    """The local days an approved leave touches: from its start's day to its end's day, both
    counted (as RULES.md §2 counts leave days). Spans are closed ``[starts_at, ends_at]``.

    >>> z = ZoneInfo("Asia/Shanghai")
    >>> s = datetime(2026, 3, 1, 16, tzinfo=UTC)  # 00:00 on 2 March in Beijing
    >>> sorted(d.isoformat() for d in leave_days([(s, s + timedelta(days=1, seconds=-1))], z))
    ['2026-03-02']
    """
    days: set[date] = set()
    for starts_at, ends_at in spans:
        day = starts_at.astimezone(zone).date()
        last = ends_at.astimezone(zone).date()
        while day <= last:
            days.add(day)
            day += timedelta(days=1)
    return frozenset(days)


# ------------------------------------------------------------------------- windows


def window_slots(
    windows: Sequence[CheckinWindow],
    timezone: str,
    *,
    term_start: date,
    term_end: date,
    start: datetime,
    end: datetime,
    skip_days: frozenset[date] = frozenset(),
) -> list[Slot]:
    """The scheduled windows opening in ``[start, end)``, in time order.

    Each window is laid out on the local days (in ``timezone``) of its ``days`` (ISO
    weekdays) that lie within the term (``term_start`` .. ``term_end``, local dates, both
    counted) and are not among ``skip_days`` (the days of an approved leave, see
    :func:`leave_days`). A window whose clock times fall in a DST gap is shortened by it; one
    left empty is not laid out.

    >>> from correction_monitor.policy import CheckinWindow
    >>> w = CheckinWindow(frozenset(range(1, 8)), time(9), time(12))
    >>> s = window_slots([w], "Asia/Urumqi", term_start=date(2026, 1, 1),
    ...     term_end=date(2026, 12, 31), start=datetime(2026, 3, 1, tzinfo=UTC),
    ...     end=datetime(2026, 3, 2, tzinfo=UTC))
    >>> [(iso(x.opens_at), iso(x.closes_at)) for x in s]
    [('2026-03-01T03:00:00Z', '2026-03-01T06:00:00Z')]
    """
    zone = ZoneInfo(timezone)
    slots: set[Slot] = set()
    for day in _local_days(start, end, zone):
        if not term_start <= day <= term_end or day in skip_days:
            continue
        for window in windows:
            if day.isoweekday() not in window.days:
                continue
            slot = _span_of(day, window.start, window.end, zone)
            if start <= slot.opens_at < end and slot.closes_at > slot.opens_at:
                slots.add(slot)
    return sorted(slots)


def windows_to_json(windows: Sequence[CheckinWindow]) -> list[dict[str, Any]]:
    """Windows as the API and the stored schedule write them."""
    return [
        {
            "days": sorted(w.days),
            "start": w.start.strftime("%H:%M"),
            "end": w.end.strftime("%H:%M"),
        }
        for w in windows
    ]


def windows_from_json(data: Sequence[dict[str, Any]]) -> tuple[CheckinWindow, ...]:
    """Windows written by :func:`windows_to_json`; ValueError on anything else."""
    out = []
    for window in data:
        days = frozenset(int(d) for d in window["days"])
        if not days or not days <= frozenset(range(1, 8)):
            raise ValueError(f"days must be ISO weekdays 1..7, got {window['days']!r}")
        out.append(CheckinWindow(days, parse_hhmm(window["start"]), parse_hhmm(window["end"])))
    return tuple(out)


# ------------------------------------------------------------------------- periods


def period_bounds(period: str, moment: datetime, timezone: str) -> Slot:
    """The local ``day``, ISO ``week`` (from Monday) or calendar ``month`` containing
    ``moment``, from local midnight to local midnight.

    >>> b = period_bounds("week", datetime(2026, 3, 4, 12, tzinfo=UTC), "Asia/Shanghai")
    >>> iso(b.opens_at), iso(b.closes_at)
    ('2026-03-01T16:00:00Z', '2026-03-08T16:00:00Z')
    """
    zone = ZoneInfo(timezone)
    day = moment.astimezone(zone).date()
    if period == "day":
        first, after = day, day + timedelta(days=1)
    elif period == "week":
        first = day - timedelta(days=day.isoweekday() - 1)
        after = first + timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown challenge period {period!r}")
    return Slot(local_instant(first, time(0), zone), local_instant(after, time(0), zone))


def periods_meeting(period: str, start: datetime, end: datetime, timezone: str) -> list[Slot]:
    """The periods that meet ``[start, end)``, in order."""
    out: list[Slot] = []
    moment = start
    while moment < end:
        bounds = period_bounds(period, moment, timezone)
        out.append(bounds)
        moment = bounds.closes_at
    return out


# ------------------------------------------------------------------------- challenge draws


def new_seed() -> str:
    """A fresh seed for a draw: 128 bits from the operating system's CSPRNG, as hex, so the
    subject cannot predict it."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class DrawInputs:
    """Everything a draw depends on besides its seed; stored with the draw as JSON.

    ``not_before``: challenges start no earlier (the moment of drawing, so a period drawn
    part-way through holds no challenge in its past). ``avoid``: the scheduled windows of
    the period, which challenges keep clear of where they can.
    """

    timezone: str
    period: str
    period_start: datetime
    period_end: datetime
    not_before: datetime
    count: int
    answer_s: int
    waking_start: time
    waking_end: time
    curfew: tuple[time, time] | None
    term_start: date
    term_end: date
    avoid: tuple[Slot, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "period": self.period,
            "period_start": iso(self.period_start),
            "period_end": iso(self.period_end),
            "not_before": iso(self.not_before),
            "count": self.count,
            "answer_s": self.answer_s,
            "waking": [_hhmm(self.waking_start), _hhmm(self.waking_end)],
            "curfew": [_hhmm(self.curfew[0]), _hhmm(self.curfew[1])] if self.curfew else None,
            "term": [self.term_start.isoformat(), self.term_end.isoformat()],
            "avoid": [[iso(s.opens_at), iso(s.closes_at)] for s in self.avoid],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrawInputs:
        curfew = data["curfew"]
        return cls(
            timezone=data["timezone"],
            period=data["period"],
            period_start=_instant(data["period_start"]),
            period_end=_instant(data["period_end"]),
            not_before=_instant(data["not_before"]),
            count=int(data["count"]),
            answer_s=int(data["answer_s"]),
            waking_start=parse_hhmm(data["waking"][0]),
            waking_end=parse_hhmm(data["waking"][1]),
            curfew=(parse_hhmm(curfew[0]), parse_hhmm(curfew[1])) if curfew else None,
            term_start=date.fromisoformat(data["term"][0]),
            term_end=date.fromisoformat(data["term"][1]),
            avoid=tuple(Slot(_instant(a), _instant(b)) for a, b in data["avoid"]),
        )


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# Sets of whole epoch seconds as sorted, disjoint, inclusive (first, last) pairs.
Seconds = list[tuple[int, int]]


def _minus(have: Seconds, lo: int, hi: int) -> Seconds:
    """``have`` without the seconds ``lo`` .. ``hi`` (inclusive)."""
    out: Seconds = []
    for a, b in have:
        if b < lo or a > hi:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo - 1))
        if b > hi:
            out.append((hi + 1, b))
    return out


def _size(have: Seconds) -> int:
    return sum(b - a + 1 for a, b in have)


def _nth(have: Seconds, n: int) -> int:
    """The ``n``-th second of ``have`` (from 0), counting through its pairs in order."""
    for a, b in have:
        if n <= b - a:
            return a + n
        n -= b - a + 1
    raise IndexError(n)


def allowed_starts(inputs: DrawInputs) -> Seconds:
    """Whole epoch seconds a challenge of ``inputs`` may start at: within the period and the
    term, not before ``not_before``, with its whole answer time inside waking hours and
    outside the curfew (which may cross midnight)."""
    zone = ZoneInfo(inputs.timezone)
    lower = max(inputs.period_start, inputs.not_before)
    days = _local_days(inputs.period_start, inputs.period_end, zone)
    have: Seconds = []
    for day in days:
        if not inputs.term_start <= day <= inputs.term_end:
            continue
        waking = _span_of(day, inputs.waking_start, inputs.waking_end, zone)
        first = math.ceil(max(waking.opens_at, lower).timestamp())
        last = min(
            math.floor(waking.closes_at.timestamp()) - inputs.answer_s,
            math.ceil(inputs.period_end.timestamp()) - 1,
        )
        if first <= last:
            have.append((first, last))
    have = _merged(have)
    if inputs.curfew is not None:
        start, end = inputs.curfew
        for day in [days[0] - timedelta(days=1), *days]:
            curfew = _span_of(day, start, end, zone)
            # A challenge overlapping the curfew starts after (curfew start - answer time).
            lo = math.floor(curfew.opens_at.timestamp()) - inputs.answer_s + 1
            hi = math.ceil(curfew.closes_at.timestamp()) - 1
            have = _minus(have, lo, hi)
    return have


def _merged(have: Seconds) -> Seconds:
    out: Seconds = []
    for a, b in sorted(have):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _clear_of(have: Seconds, slot: Slot, answer_s: int) -> Seconds:
    """``have`` without the starts whose answer time would overlap ``slot``."""
    lo = math.floor(slot.opens_at.timestamp()) - answer_s + 1
    hi = math.ceil(slot.closes_at.timestamp()) - 1
    return _minus(have, lo, hi)


def draw_times(seed: str, inputs: DrawInputs) -> list[datetime]:
    """The challenges' opening times of one period, re-derivable from ``seed`` and
    ``inputs`` alone (algorithm :data:`ALGORITHM`):

    1. ``allowed``: the whole seconds a challenge may start at (:func:`allowed_starts`);
       ``preferred``: those of them whose answer time keeps clear of every window in
       ``inputs.avoid``.
    2. ``rng = random.Random(seed)`` (the seed's text as given).
    3. ``count`` times: the pool is ``preferred``, or ``allowed`` when ``preferred`` is
       empty (nothing to draw from: stop); ``k = rng.randrange(size of pool)``; the
       challenge opens at the pool's ``k``-th second, counting in time order from 0; the
       seconds whose answer time would overlap it are removed from both sets.
    4. The times, sorted.

    >>> inputs = DrawInputs("Asia/Shanghai", "day", datetime(2026, 3, 1, 16, tzinfo=UTC),
    ...     datetime(2026, 3, 2, 16, tzinfo=UTC), datetime(2026, 3, 1, 16, tzinfo=UTC), 1, 1800,
    ...     time(8), time(21), None, date(2026, 1, 1), date(2026, 12, 31))
    >>> draw_times("00" * 16, inputs) == draw_times("00" * 16, inputs)
    True
    """
    allowed = allowed_starts(inputs)
    preferred = allowed
    for slot in inputs.avoid:
        preferred = _clear_of(preferred, slot, inputs.answer_s)
    # Not a secret: the unpredictability is the seed's (secrets); Mersenne Twister makes the
    # draw re-derivable from it, as auditors need.
    rng = random.Random(seed)  # noqa: S311
    times: list[datetime] = []
    for _ in range(inputs.count):
        pool = preferred if preferred else allowed
        size = _size(pool)
        if size == 0:
            break
        second = _nth(pool, rng.randrange(size))
        times.append(datetime.fromtimestamp(second, UTC))
        taken = Slot(
            datetime.fromtimestamp(second, UTC),
            datetime.fromtimestamp(second + inputs.answer_s, UTC),
        )
        allowed = _clear_of(allowed, taken, inputs.answer_s)
        preferred = _clear_of(preferred, taken, inputs.answer_s)
    return sorted(times)


# ------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Face:
    """A face-verification result from the app's vendor SDK: match ``score`` 0..1, whether
    the liveness test passed."""

    score: float
    liveness: bool
    vendor: str | None = None


def decide(
    *,
    received_at: datetime,
    closes_at: datetime,
    mock: bool,
    outside_area: bool,
    replayed_media: bool,
    face: Face | None,
    photo: bool,
    face_score_min: float,
) -> tuple[CheckinStatus, tuple[Reason, ...]]:
    """An answer's outcome (CONTRACT.md): ``failed`` with ``late`` when received after
    ``closes_at`` (by the server's clock), ``mock_location`` when the phone says the fix is
    simulated, ``outside_area``, ``replayed_media``; else ``needs_review`` with
    ``face_score_low`` (score under ``face_score_min``), ``liveness_failed``, or
    ``photo_only`` (a photo and no face result); else ``passed``. Every reason that applies
    is listed, in that order, whatever the status.

    >>> t = datetime(2026, 3, 1, tzinfo=UTC)
    >>> decide(received_at=t, closes_at=t, mock=True, outside_area=False, replayed_media=False,
    ...        face=Face(0.5, True), photo=False, face_score_min=0.8)
    (<CheckinStatus.FAILED: 'failed'>, (<Reason.MOCK_LOCATION: 'mock_location'>, \
<Reason.FACE_SCORE_LOW: 'face_score_low'>))
    """
    reasons: list[Reason] = []
    if received_at > closes_at:
        reasons.append(Reason.LATE)
    if mock:
        reasons.append(Reason.MOCK_LOCATION)
    if outside_area:
        reasons.append(Reason.OUTSIDE_AREA)
    if replayed_media:
        reasons.append(Reason.REPLAYED_MEDIA)
    if face is not None:
        if face.score < face_score_min:
            reasons.append(Reason.FACE_SCORE_LOW)
        if not face.liveness:
            reasons.append(Reason.LIVENESS_FAILED)
    elif photo:
        reasons.append(Reason.PHOTO_ONLY)
    if any(r in FAILING for r in reasons):
        return CheckinStatus.FAILED, tuple(reasons)
    if reasons:
        return CheckinStatus.NEEDS_REVIEW, tuple(reasons)
    return CheckinStatus.PASSED, ()


def wholly_outside(activity: int | None, destinations: Sequence[int], outside: int) -> bool:
    """Whether a fix's disc is wholly outside the activity area and every approved leave
    destination running at its time, given their memberships (``outside``: the code of
    wholly outside; ``activity`` None: the subject has no activity area, so nothing is
    outside it).

    >>> wholly_outside(2, [2, 2], 2), wholly_outside(2, [0], 2), wholly_outside(None, [], 2)
    (True, False, False)
    """
    if activity is None or activity != outside:
        return False
    return all(d == outside for d in destinations)


def stationary(
    points: Sequence[tuple[datetime, float, float]],
    now: datetime,
    span_s: float,
    radius_m: float,
) -> dict[str, Any] | None:
    """Whether the phone has not moved for hours: the fixes (time, WGS-84 lon, lat) of the
    last ``span_s`` seconds before ``now`` number at least two, cover at least half that span
    from first to last, and all lie within ``radius_m`` of their mean position. The facts (no
    positions) when so, else None.

    >>> t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    >>> still = [(t - timedelta(hours=h), 116.3, 39.9) for h in (3, 2, 1)]
    >>> stationary(still, t, 14400, 50)["fixes"], stationary(still[:1], t, 14400, 50)
    (3, None)
    """
    recent = sorted(p for p in points if now - timedelta(seconds=span_s) <= p[0] <= now)
    if len(recent) < 2 or (recent[-1][0] - recent[0][0]).total_seconds() < span_s / 2:
        return None
    lon = np.array([p[1] for p in recent])
    lat = np.array([p[2] for p in recent])
    distances = geodesic_distance_m(lon, lat, float(lon.mean()), float(lat.mean()))
    farthest = float(np.max(distances))
    if farthest > radius_m:
        return None
    return {
        "fixes": len(recent),
        "fixes_from": iso(recent[0][0]),
        "fixes_to": iso(recent[-1][0]),
        "max_distance_m": round(farthest, 1),
        "stationary_s": span_s,
        "stationary_radius_m": radius_m,
    }
