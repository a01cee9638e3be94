"""Night patrols (夜间巡查): who is due, who matters more, and tonight's seeded draw, as pure
rules (RULES.md §3; docs/patrols.md).

* **Due.** A subject is visited at least once every ``patrol_every_days`` of its level,
  counted from its *anchor*: its last visit (a stop with any outcome but ``no_answer``), or
  its term start when it was never visited. The due date is ``anchor + every``; a subject not
  visited by then is *overdue* from the next night on.
* **Window.** The night of the visit is drawn within the last half of the interval, the
  nights ``anchor + every - ⌈every/2⌉ + 1 … anchor + every`` (strict 14: the 8th to the 14th
  night; normal 30: the 16th to the 30th; lenient 90: the 46th to the 90th). Half an interval
  is wide enough that a subject cannot tell its night, and short enough that a visit never
  comes absurdly early.
* **Draw.** On each night of its window a subject not yet visited is drawn with probability
  ``weight / nights left in the window`` (``weight`` = 1 plus a share of its risk, see
  :func:`draw_probability`): without risk this is the sequential form of a uniform draw over
  the window, so every night of it is equally likely; risk moves the visit earlier. The
  window's last night and any overdue night make the visit *required*. The uniform number is
  ``random.Random(f"{seed}:{night}:{subject_id}").random()``: the same seed and state give
  the same plan, and an auditor re-derives every draw from the plan's logged seed.
* **Excluded.** Subjects without a home, outside their term (not started, or ended), not
  active, or on an approved leave overlapping the night's working window are never planned.
* **Priority** is urgency (overdue nights count most, then how far into the window) plus the
  risk weights of the policy; every part of it is a :class:`Reason` kept with the stop.
* **Capacity.** When more are drawn than the teams can visit, required subjects go first,
  then by priority; the others stay in their window and are drawn again. Tonight's stops are
  split between teams so that the team that made the fewest visits lately gets the next one
  (:func:`split_capacity`), which keeps team loads level over a month.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from correction_monitor.domain.routing import RoutingProblem, RoutingResult, Stop, Team
from correction_monitor.policy import PatrolPolicy

# Reasons (slugs) a subject is chosen tonight, or left out.
OVERDUE = "overdue"
LAST_NIGHT = "last_night_of_window"
DRAWN = "drawn"
OPEN_ALERT = "open_alert"
RECENT_ALERT = "recent_alert"
CURFEW_ANOMALY = "curfew_anomaly"
NEW_INTAKE = "new_intake"
RECENT_SANCTION = "recent_sanction"
LOST_CONTACT = "lost_contact"
DEVICE_INTEGRITY = "device_integrity"
ADDED = "added_by_supervisor"
SWAPPED_IN = "swapped_in_by_supervisor"

# Why a due subject is not on tonight's plan.
ON_LEAVE = "on_leave"
OVER_CAPACITY = "capacity"
REMOVED = "removed_by_supervisor"

# Why a subject is not a candidate at all.
NO_HOME = "no_home"
TERM_NOT_STARTED = "term_not_started"
TERM_ENDED = "term_ended"
INACTIVE = "inactive"

# Urgency: a required visit outranks any risk; each overdue night adds more.
REQUIRED_URGENCY = 100.0
OVERDUE_URGENCY_PER_NIGHT = 10.0
# Risk points that double a subject's chance of being drawn tonight (see draw_probability).
RISK_DOUBLING = 5.0
# The most a subject's chance is multiplied by its risk.
RISK_MAX_FACTOR = 3.0


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a subject is on the plan: a slug, a detail for people, and what it weighed."""

    code: str
    detail: str
    weight: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "detail": self.detail, "weight": round(self.weight, 3)}


@dataclass(frozen=True, slots=True)
class RiskFacts:
    """What raises a subject's priority, as counted over the policy's look-back."""

    open_alerts: int = 0
    recent_alerts: int = 0
    curfew_anomalies: int = 0
    lost_contact: int = 0
    device_integrity: int = 0
    # The latest approved 训诫 (reprimand) or 警告 (warning) within the policy's days, if any.
    sanction: str | None = None
    sanction_on: date | None = None


@dataclass(frozen=True, slots=True)
class PatrolSubject:
    """A subject as the patrol rules see it."""

    subject_id: int
    every_days: int
    term_start: date
    term_end: date
    home: tuple[float, float] | None  # (lon, lat), WGS-84
    last_visit: date | None = None
    active: bool = True
    leaves: tuple[tuple[datetime, datetime], ...] = ()
    risk: RiskFacts = field(default_factory=RiskFacts)


@dataclass(frozen=True, slots=True)
class DueWindow:
    """A subject's interval: its anchor, the first night of its window, and its due date."""

    anchor: date
    first: date
    due: date

    def nights_left(self, night: date) -> int:
        """Nights of the window from ``night`` to the due date, both counted (≥ 1 in it)."""
        return (self.due - night).days + 1


@dataclass(frozen=True, slots=True)
class Candidate:
    """A subject chosen for tonight (before capacity): where, how much it matters, whether
    it must be visited, and why."""

    subject_id: int
    lon: float
    lat: float
    priority: float
    required: bool
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class Selection:
    """Tonight's draw: who goes (within capacity), and who is left out and why."""

    chosen: tuple[Candidate, ...]
    left_out: tuple[tuple[int, str], ...]


def window_nights(every_days: int) -> int:
    """How many nights the draw spans: the last half of the interval (at least one)."""
    return max(1, math.ceil(every_days / 2))


def anchor_of(subject: PatrolSubject) -> date:
    """The last visit, or the term start for a subject never visited."""
    if subject.last_visit is None:
        return subject.term_start
    return max(subject.last_visit, subject.term_start)


def due_window(subject: PatrolSubject) -> DueWindow:
    anchor = anchor_of(subject)
    due = anchor + timedelta(days=subject.every_days)
    first = due - timedelta(days=window_nights(subject.every_days) - 1)
    return DueWindow(anchor, first, due)


def is_overdue(subject: PatrolSubject, night: date) -> bool:
    """Whether ``night`` is past the subject's due date with no visit since its anchor."""
    return night > due_window(subject).due


def night_span(
    night: date, timezone: str, windows: Iterable[tuple[time, time]]
) -> tuple[datetime, datetime]:
    """The instants the teams' working windows cover on ``night`` (an end not after its
    start is the next day); 18:00–06:00 local when there are no teams."""
    tz = ZoneInfo(timezone)
    starts, ends = [], []
    for start_s, end_s in (window_seconds(w) for w in windows):
        starts.append(start_s)
        ends.append(end_s)
    if not starts:
        starts, ends = [18 * 3600], [30 * 3600]
    midnight = reference_instant(night, tz)
    return midnight + timedelta(seconds=min(starts)), midnight + timedelta(seconds=max(ends))


def reference_instant(night: date, tz: ZoneInfo) -> datetime:
    """The instant routes count seconds from: local midnight starting the night's date."""
    return datetime.combine(night, time(0), tz)


def window_seconds(window: tuple[time, time]) -> tuple[int, int]:
    """A working window as seconds from the night's local midnight; an end not after the
    start is on the next day (20:00–02:00 → 72000, 93600)."""
    start, end = window
    start_s = start.hour * 3600 + start.minute * 60 + start.second
    end_s = end.hour * 3600 + end.minute * 60 + end.second
    if end_s <= start_s:
        end_s += 86400
    return start_s, end_s


def exclusion(subject: PatrolSubject, night: date, span: tuple[datetime, datetime]) -> str | None:
    """Why ``subject`` cannot be planned on ``night`` at all, or None."""
    if subject.home is None:
        return NO_HOME
    if not subject.active:
        return INACTIVE
    if night < subject.term_start:
        return TERM_NOT_STARTED
    if night > subject.term_end:
        return TERM_ENDED
    start, end = span
    if any(leave_start <= end and start <= leave_end for leave_start, leave_end in subject.leaves):
        return ON_LEAVE
    return None


def risk_reasons(subject: PatrolSubject, night: date, policy: PatrolPolicy) -> list[Reason]:
    """What raises ``subject``'s priority tonight, with the policy's weights."""
    risk = subject.risk
    days = policy.risk_lookback_days
    reasons: list[Reason] = []
    if risk.open_alerts:
        reasons.append(
            Reason(OPEN_ALERT, f"{risk.open_alerts} open alert(s)", policy.risk_open_alert)
        )
    if risk.recent_alerts:
        reasons.append(
            Reason(
                RECENT_ALERT,
                f"{risk.recent_alerts} alert(s) in the last {days} days",
                policy.risk_recent_alert,
            )
        )
    if risk.curfew_anomalies:
        reasons.append(
            Reason(
                CURFEW_ANOMALY,
                f"{risk.curfew_anomalies} curfew violation(s) in the last {days} days",
                policy.risk_curfew_anomaly,
            )
        )
    since_intake = (night - subject.term_start).days
    if 0 <= since_intake < policy.risk_new_intake_days:
        reasons.append(
            Reason(
                NEW_INTAKE,
                f"term started {subject.term_start.isoformat()} ({since_intake} days ago)",
                policy.risk_new_intake,
            )
        )
    if risk.sanction is not None:
        on = f" on {risk.sanction_on.isoformat()}" if risk.sanction_on else ""
        reasons.append(
            Reason(
                RECENT_SANCTION,
                f"{risk.sanction} approved{on}",
                policy.risk_recent_sanction,
            )
        )
    if risk.lost_contact:
        reasons.append(
            Reason(
                LOST_CONTACT,
                f"{risk.lost_contact} lost-contact episode(s) in the last {days} days",
                policy.risk_lost_contact,
            )
        )
    if risk.device_integrity:
        reasons.append(
            Reason(
                DEVICE_INTEGRITY,
                f"{risk.device_integrity} device-integrity signal(s) in the last {days} days",
                policy.risk_device_integrity,
            )
        )
    return reasons


def draw_probability(nights_left: int, risk: float) -> float:
    """The chance a subject with ``nights_left`` nights in its window is drawn tonight:
    ``1 / nights_left`` without risk (a uniform night over the window), up to
    ``RISK_MAX_FACTOR`` times that with risk (``RISK_DOUBLING`` points double it); always 1
    on the window's last night."""
    factor = min(RISK_MAX_FACTOR, 1.0 + max(0.0, risk) / RISK_DOUBLING)
    return min(1.0, factor / max(1, nights_left))


def draw_number(seed: int, night: date, subject_id: int) -> float:
    """The subject's uniform number for ``night`` under ``seed`` (re-derivable by anyone)."""
    # Reproducible by design; the secret is the seed, drawn with ``secrets`` when not given.
    generator = random.Random(f"{seed}:{night.isoformat()}:{subject_id}")  # noqa: S311
    return generator.random()


def consider(
    subject: PatrolSubject, night: date, seed: int, policy: PatrolPolicy
) -> Candidate | None:
    """Whether the draw chooses ``subject`` on ``night`` (which it may be planned on), with
    its priority and reasons; None when it is not due or not drawn."""
    window = due_window(subject)
    if night < window.first:
        return None
    assert subject.home is not None
    risks = risk_reasons(subject, night, policy)
    risk = sum(r.weight for r in risks)
    if night > window.due:
        late = (night - window.due).days
        urgency = REQUIRED_URGENCY + OVERDUE_URGENCY_PER_NIGHT * late
        lead = Reason(
            OVERDUE,
            f"due {window.due.isoformat()}, {late} night(s) overdue "
            f"(every {subject.every_days} days since {window.anchor.isoformat()})",
            urgency,
        )
        required = True
    elif night == window.due:
        urgency = REQUIRED_URGENCY
        lead = Reason(
            LAST_NIGHT,
            f"due {window.due.isoformat()} (every {subject.every_days} days since "
            f"{window.anchor.isoformat()})",
            urgency,
        )
        required = True
    else:
        left = window.nights_left(night)
        chance = draw_probability(left, risk)
        number = draw_number(seed, night, subject.subject_id)
        if number >= chance:
            return None
        span = window_nights(subject.every_days)
        urgency = 1.0 + (span - left) / span
        lead = Reason(
            DRAWN,
            f"drawn {number:.6f} < {chance:.6f} with {left} night(s) left before "
            f"{window.due.isoformat()} (window from {window.first.isoformat()})",
            urgency,
        )
        required = False
    lon, lat = subject.home
    return Candidate(subject.subject_id, lon, lat, urgency + risk, required, (lead, *risks))


def select(
    subjects: Iterable[PatrolSubject],
    night: date,
    seed: int,
    policy: PatrolPolicy,
    span: tuple[datetime, datetime],
    capacity: int,
) -> Selection:
    """Tonight's draw for ``subjects`` within ``capacity`` visits (see the module docstring).

    ``left_out`` lists due subjects on leave and those the capacity leaves out."""
    drawn: list[Candidate] = []
    left_out: list[tuple[int, str]] = []
    for subject in sorted(subjects, key=lambda s: s.subject_id):
        why = exclusion(subject, night, span)
        if why is not None:
            if why == ON_LEAVE and night >= due_window(subject).first:
                left_out.append((subject.subject_id, ON_LEAVE))
            continue
        candidate = consider(subject, night, seed, policy)
        if candidate is not None:
            drawn.append(candidate)
    drawn.sort(key=lambda c: (not c.required, -c.priority, c.subject_id))
    chosen = drawn[: max(0, capacity)]
    left_out.extend((c.subject_id, OVER_CAPACITY) for c in drawn[max(0, capacity) :])
    return Selection(tuple(chosen), tuple(sorted(left_out)))


def split_capacity(
    stops: int, capacities: Mapping[int, int], recent_loads: Mapping[int, int]
) -> dict[int, int]:
    """How many of tonight's ``stops`` each team takes: one at a time to the team with the
    fewest visits (``recent_loads`` plus those given tonight) that has room, ties to the
    lowest id, so loads stay level over time. Teams may not take more than their capacity."""
    given = {team: 0 for team in capacities}
    for _ in range(stops):
        room = [t for t in capacities if given[t] < capacities[t]]
        if not room:
            break
        team = min(room, key=lambda t: (recent_loads.get(t, 0) + given[t], t))
        given[team] += 1
    return given


def visited(
    subjects: Sequence[PatrolSubject], ids: Iterable[int], night: date
) -> list[PatrolSubject]:
    """``subjects`` with those in ``ids`` visited on ``night`` (a forecast's assumption)."""
    seen = set(ids)
    return [replace(s, last_visit=night) if s.subject_id in seen else s for s in subjects]


def balance(loads: Mapping[int, int]) -> float:
    """The largest relative deviation of a team's load from the teams' mean (0: level)."""
    if not loads:
        return 0.0
    mean = sum(loads.values()) / len(loads)
    if mean == 0:
        return 0.0
    return max(abs(v - mean) for v in loads.values()) / mean


# -- teams and plans ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatrolTeam:
    """A patrol team of a unit: where it starts and ends (WGS-84), how many visits a night,
    its working window (local time; an end not after the start is the next day), its speed
    and the minutes each visit takes."""

    id: int
    org_unit_id: int
    name: str
    lon: float
    lat: float
    crs: str
    capacity: int
    window_start: time
    window_end: time
    speed_kmh: float
    stop_minutes: float
    active: bool = True

    @property
    def window(self) -> tuple[time, time]:
        return self.window_start, self.window_end


@dataclass(frozen=True, slots=True)
class NewPatrolTeam:
    org_unit_id: int
    name: str
    lon: float
    lat: float
    crs: str
    capacity: int
    window_start: time
    window_end: time
    speed_kmh: float
    stop_minutes: float
    created_by: int | None


@dataclass(frozen=True, slots=True)
class PlanStop:
    subject_id: int
    seq: int
    eta: datetime
    reasons: tuple[dict[str, object], ...]


@dataclass(frozen=True, slots=True)
class PlanRoute:
    team_id: int
    stops: tuple[PlanStop, ...]
    distance_m: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class Plan:
    """A unit's plan for one night (``id`` None: a forecast's, never stored)."""

    id: int | None
    org_unit_id: int
    night: date
    seed: int
    status: str
    routes: tuple[PlanRoute, ...]
    unassigned: tuple[tuple[int, str], ...]
    solver: dict[str, object] = field(default_factory=dict)

    def subject_ids(self) -> set[int]:
        return {stop.subject_id for route in self.routes for stop in route.stops}

    def route_of(self, subject_id: int) -> PlanRoute | None:
        return next(
            (r for r in self.routes if any(s.subject_id == subject_id for s in r.stops)), None
        )


def routing_team(team: PatrolTeam, capacity: int) -> Team:
    start_s, end_s = window_seconds(team.window)
    return Team(
        key=team.id,
        lon=team.lon,
        lat=team.lat,
        capacity=capacity,
        window_start_s=start_s,
        window_end_s=end_s,
        speed_mps=team.speed_kmh / 3.6,
        stop_s=team.stop_minutes * 60.0,
    )


def routing_problem(
    chosen: Sequence[Candidate],
    teams: Sequence[PatrolTeam],
    shares: Mapping[int, int],
    policy: PatrolPolicy,
    seed: int,
    time_limit_s: float,
) -> RoutingProblem:
    """The routing problem of tonight's chosen subjects for teams given their ``shares``."""
    return RoutingProblem(
        stops=tuple(
            Stop(key=c.subject_id, lon=c.lon, lat=c.lat, prize=c.priority, required=c.required)
            for c in chosen
        ),
        teams=tuple(routing_team(t, shares[t.id]) for t in teams if shares.get(t.id, 0) > 0),
        detour_factor=policy.detour_factor,
        time_limit_s=time_limit_s,
        seed=seed % 2**31,
    )


def assemble(
    result: RoutingResult,
    reasons: Mapping[int, Sequence[Reason]],
    reference: datetime,
    left_out: Iterable[tuple[int, str]] = (),
) -> tuple[tuple[PlanRoute, ...], tuple[tuple[int, str], ...]]:
    """The routes and the unassigned of a plan from the solver's result; ETAs are instants
    counted from ``reference`` (the night's local midnight)."""
    routes = tuple(
        PlanRoute(
            team_id=int(route.team_key),
            stops=tuple(
                PlanStop(
                    subject_id=int(stop.key),
                    seq=int(stop.seq),
                    eta=reference + timedelta(seconds=float(stop.eta_s)),
                    reasons=tuple(r.to_json() for r in reasons.get(int(stop.key), ())),
                )
                for stop in sorted(route.stops, key=lambda s: s.seq)
            ),
            distance_m=float(route.distance_m),
            duration_s=float(route.duration_s),
        )
        for route in result.routes
        if route.stops
    )
    unassigned = sorted(
        {*left_out, *((int(key), str(reason)) for key, reason in result.unassigned)}
    )
    return routes, tuple(unassigned)
