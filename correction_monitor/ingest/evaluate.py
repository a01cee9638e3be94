"""Evaluation: one subject's new fixes, in event-time order, against their rules.

Per fix and per rule a ``Condition`` is derived — activity area (must stay inside), each
exclusion zone while its schedule applies (must stay outside), the home circle during curfew —
and fed to that rule's episode state machine (geofences.episodes). Opened and closed episodes
become alert openings and endings. The whole evaluation state of a subject is one small JSON
value, stored in the same transaction as the fixes it consumed.

Rules applied on top of the episode machines:

* **Spikes**: the kernel's rule (``geofences.spikes``, policy ``max_speed_mps``): a fix
  needing an implausible speed from the last plausible fix is held as a suspect, not
  evaluated, until the next fix decides it; a spike is flagged in storage and never
  evaluated, a suspect cleared is evaluated before that next fix. Ordinary fixes are
  evaluated at once, on arrays, after one check that none of their steps is implausible.
* **Quality**: mock-location and coarse fixes are stored as evidence but say ``UNKNOWN``.
* **Late fixes**: a fix older than the subject's newest evaluated fix does not fit the
  forward-running episode machines. The state keeps *checkpoints*: moments when nothing was
  pending (no breach open or being confirmed, no suspect held), at most one per
  ``CHECKPOINT_EVERY_S``, for ``REPLAY_WINDOW_S``. The commit replays the subject
  (``ingest/replay.py``) from the newest checkpoint before the late fix (``replay_state``)
  over the stored and new fixes in time order, and reconciles its alerts with the replay's:
  the outcome is what the fixes would have given had they arrived in order. A fix older than
  every checkpoint is stored flagged ``late`` and kept as evidence, but not evaluated. Late
  fixes that re-tell a span their device had already reported never get here
  (``ingest/accounts.py``).
* **Leave** (外出, docs/leave.md): while an approved leave runs (its start ≤ the fix's event
  time ≤ its end), a fix wholly inside its destination counts as inside the activity area.
  After a leave's end, while the subject has not been seen back (no deciding fix wholly
  inside the activity area since that end; the state's ``back`` keeps the latest such
  time), a fix outside decides nothing for the level's ``leave_overdue_grace_s``. An
  activity-area episode starting later than a leave's end plus that grace, with no leave
  running at its start and the subject not back since the most recent leave that ended
  before it, raises ``leave_overdue`` instead of ``left_activity_area`` (the state's
  ``open_type`` remembers which, to end the right alert). Subjects without a leave that
  could matter take none of this path.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from correction_monitor.domain.alerts import (
    SEVERITY,
    AlertEnd,
    AlertOp,
    AlertOpen,
    AlertType,
    episode_key,
)
from correction_monitor.domain.fix_arrays import SubjectFixes
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.ingest.profiles import LeaveArea, SubjectProfile
from geofences import spikes
from geofences.classify import PreparedArea, classify, distance_outside_m
from geofences.episodes import (
    BreachClosed,
    BreachOpened,
    Condition,
    EpisodeConfig,
    EpisodeState,
    Evidence,
    advance,
)
from geofences.model import Membership
from geofences.schedule import Schedule
from geofences.spikes import SpikeScreen, required_speed, step_speeds

# Checkpoints are rewritten with the state on every commit: few, and compact.
CHECKPOINT_EVERY_S = 7200.0
REPLAY_WINDOW_S = 86_400.0

# Rule keys name a subject's episodes in its stored evaluation state and in episode keys.
AREA = "area"
CURFEW = "curfew"


def zone_key(fence_id: int) -> str:
    """The rule key of an exclusion zone."""
    return f"zone:{fence_id}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a subject's profile: the alert its episodes raise, the fence it watches
    (None for the curfew's home circle), and how a fix's membership of ``area`` becomes a
    condition, while ``schedule`` applies (None: always)."""

    type: AlertType
    fence_id: int | None
    area: PreparedArea
    breach_when: Membership
    schedule: Schedule | None


def rules_of(profile: SubjectProfile) -> dict[str, Rule]:
    """The subject's rules by rule key: the activity area, each exclusion zone, the curfew."""
    rules = {}
    if profile.activity_area is not None:
        rules[AREA] = Rule(
            AlertType.LEFT_ACTIVITY_AREA,
            profile.activity_fence_id,
            profile.activity_area,
            Membership.OUTSIDE,
            None,
        )
    for zone in profile.zones:
        rules[zone_key(zone.fence_id)] = Rule(
            AlertType.ENTERED_EXCLUSION_ZONE,
            zone.fence_id,
            zone.area,
            Membership.INSIDE,
            zone.schedule,
        )
    if profile.home is not None and profile.curfew is not None:
        rules[CURFEW] = Rule(
            AlertType.CURFEW_VIOLATION, None, profile.home, Membership.OUTSIDE, profile.curfew
        )
    return rules


@dataclass(slots=True)
class EvalOutcome:
    state: dict[str, Any]
    alert_ops: list[AlertOp]
    spikes: list[tuple[int, int, int]]  # (device, ts_us, client key) of fixes found to be spikes
    late: int


@dataclass(slots=True)
class _Fix:
    ts: float
    lon: float
    lat: float
    accuracy_m: float
    flags: int
    device: int
    ts_us: int
    key: int
    row: int  # index into this call's arrays; -1 for a suspect held from an earlier commit

    def to_json(self) -> list[Any]:
        return [
            self.ts,
            self.lon,
            self.lat,
            self.accuracy_m,
            self.flags,
            self.device,
            self.ts_us,
            self.key,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> _Fix:
        ts, lon, lat, accuracy_m, flags, device, ts_us, key = data
        return cls(ts, lon, lat, accuracy_m, flags, device, ts_us, key, -1)

    def evidence(self) -> Evidence:
        return Evidence(self.ts, self.lon, self.lat, self.accuracy_m)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class _Evaluator:
    def __init__(self, profile: SubjectProfile, state: dict[str, Any]) -> None:
        self.profile = profile
        # Latest event time of a deciding fix wholly inside the activity area (kept while
        # the subject has leaves), and the alert type of open episodes raised as another
        # type than their rule's (leave_overdue).
        self.back: float | None = state.get("back")
        self.open_type: dict[str, str] = dict(state.get("open_type", {}))
        # Times of this evaluation's fixes wholly inside the activity area (leave path).
        self.inside_ts: npt.NDArray[np.float64] | None = None
        self.rules = rules_of(profile)
        self.config = EpisodeConfig(confirm_s=profile.level_policy.confirm_s)
        self.episodes = {
            key: EpisodeState.from_dict(value) for key, value in state.get("episodes", {}).items()
        }
        self.open: dict[str, str] = dict(state.get("open", {}))
        self.last_ts: float | None = state.get("last_ts")
        ref = state.get("ref")
        self.ref = _Fix.from_json(ref) if ref else None
        suspect = state.get("suspect")
        self.suspect = _Fix.from_json(suspect) if suspect else None
        self.checkpoints: list[list[Any]] = [list(c) for c in state.get("checkpoints", [])]
        self.ops: list[AlertOp] = []
        self.spikes: list[tuple[int, int, int]] = []

    def state(self) -> dict[str, Any]:
        episodes = {}
        for key, ep in self.episodes.items():
            if ep.in_breach or ep.count:
                episodes[key] = ep.to_dict()
        if self.inside_ts is not None and len(self.inside_ts):
            latest = float(self.inside_ts[-1])
            self.back = latest if self.back is None else max(self.back, latest)
        return _state_json(
            episodes,
            self.open,
            self.last_ts,
            self.ref.to_json() if self.ref else None,
            self.suspect.to_json() if self.suspect else None,
            self.checkpoints,
            self.back,
            self.open_type,
        )

    # -- conditions ------------------------------------------------------------------------

    def conditions(self, fixes: list[_Fix]) -> dict[str, list[Condition]]:
        """The condition of every fix for every rule (list form, for the spike path)."""
        n = len(fixes)
        arrays = self._conditions(
            np.fromiter((f.ts for f in fixes), np.float64, n),
            np.fromiter((f.lon for f in fixes), np.float64, n),
            np.fromiter((f.lat for f in fixes), np.float64, n),
            np.fromiter((f.accuracy_m for f in fixes), np.float64, n),
            np.fromiter(((f.flags & FixFlag.NOT_DECIDING) != 0 for f in fixes), np.bool_, n),
        )
        return {key: [Condition(int(v)) for v in c] for key, c in arrays.items()}

    def conditions_arrays(
        self,
        fixes: SubjectFixes,
        rows: npt.NDArray[np.intp],
        activity: npt.NDArray[np.int8] | None = None,
    ) -> dict[str, npt.NDArray[np.int8]]:
        return self._conditions(
            fixes.ts_us[rows] / 1e6,
            fixes.lon[rows],
            fixes.lat[rows],
            fixes.accuracy_m[rows],
            (fixes.flags[rows] & FixFlag.NOT_DECIDING) != 0,
            activity[rows] if activity is not None else None,
        )

    def _conditions(
        self,
        ts: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        lat: npt.NDArray[np.float64],
        acc: npt.NDArray[np.float64],
        undecidable: npt.NDArray[np.bool_],
        activity: npt.NDArray[np.int8] | None = None,
    ) -> dict[str, npt.NDArray[np.int8]]:
        """Condition codes of every fix for every rule, on arrays. ``activity`` is the
        activity-area membership when the caller classified many subjects at once."""
        out: dict[str, npt.NDArray[np.int8]] = {}
        unknown = np.int8(Condition.UNKNOWN)
        for key, rule in self.rules.items():
            if key == AREA and activity is not None:
                m = activity
            else:
                m = classify(rule.area, lon, lat, acc)
            if key == AREA and self.profile.leaves:
                c = self._area_with_leaves(ts, lon, lat, acc, m, undecidable)
            else:
                c = _conditions(m, breach_when=rule.breach_when)
            if rule.schedule is not None:
                c[~rule.schedule.active_at(ts)] = Condition.OK
            out[key] = c
        for c in out.values():
            c[undecidable] = unknown
        return out

    def _area_with_leaves(
        self,
        ts: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        lat: npt.NDArray[np.float64],
        acc: npt.NDArray[np.float64],
        m: npt.NDArray[np.int8],
        undecidable: npt.NDArray[np.bool_],
    ) -> npt.NDArray[np.int8]:
        """The activity area's conditions for a subject with leaves (fixes in time order):
        inside a running leave's destination counts as inside; after a leave's end, while
        the subject has not been back inside the area since, outside decides nothing for
        the grace."""
        inside_ts = ts[(m == Membership.INSIDE) & ~undecidable]
        self.inside_ts = inside_ts
        union = m.copy()
        for leave in self.profile.leaves:
            running = (ts >= leave.start_ts) & (ts <= leave.end_ts)
            if not running.any():
                continue
            there = classify(leave.area, lon[running], lat[running], acc[running])
            part = union[running]
            part[there == Membership.INSIDE] = Membership.INSIDE
            part[(there == Membership.UNCERTAIN) & (part == Membership.OUTSIDE)] = (
                Membership.UNCERTAIN
            )
            union[running] = part
        c = _conditions(union, breach_when=Membership.OUTSIDE)
        grace = self.profile.level_policy.leave_overdue_grace_s
        back = self._back_before_each(ts, inside_ts)
        for leave in self.profile.leaves:
            waiting = (ts > leave.end_ts) & (ts <= leave.end_ts + grace) & (back < leave.end_ts)
            c[waiting & (c == Condition.BREACH)] = Condition.UNKNOWN
        return c

    def _back_before_each(
        self, ts: npt.NDArray[np.float64], inside_ts: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """For each time of ``ts``: when the subject was last seen wholly inside the
        activity area before it (-inf: never)."""
        prior = -np.inf if self.back is None else self.back
        if len(inside_ts) == 0:
            return np.full(len(ts), prior)
        n = np.searchsorted(inside_ts, ts, side="left")
        seen = np.where(n > 0, inside_ts[np.maximum(n - 1, 0)], -np.inf)
        return np.maximum(seen, prior)

    def _back_before(self, at: float) -> float | None:
        """When the subject was last seen wholly inside the activity area before ``at``."""
        seen = self.back
        if self.inside_ts is not None:
            n = int(np.searchsorted(self.inside_ts, at, side="left"))
            if n:
                latest = float(self.inside_ts[n - 1])
                seen = latest if seen is None else max(seen, latest)
        return seen

    def overdue_leave(self, started_at: float) -> LeaveArea | None:
        """The leave an activity-area episode starting at ``started_at`` is overdue from:
        the approved leave that ended most recently before it, when the episode starts
        later than that end plus the grace, no leave runs at its start, and the subject
        has not been seen inside the area since that end. None: an ordinary departure."""
        leaves = self.profile.leaves
        if any(leave.start_ts <= started_at <= leave.end_ts for leave in leaves):
            return None
        ended = [leave for leave in leaves if leave.end_ts < started_at]
        if not ended:
            return None
        last = max(ended, key=lambda leave: leave.end_ts)
        if started_at <= last.end_ts + self.profile.level_policy.leave_overdue_grace_s:
            return None
        back = self._back_before(started_at)
        if back is not None and back >= last.end_ts:
            return None
        return last

    def run_rule(
        self,
        key: str,
        c: npt.NDArray[np.int8],
        fixes: SubjectFixes,
        rows: npt.NDArray[np.intp],
    ) -> None:
        """Feed one rule's episode machine with its conditions, skipping fixes that cannot
        change it (UNKNOWN ones, and agreeing ones while no streak is being confirmed)."""
        ep = self.episodes.get(key) or EpisodeState()
        towards = Condition.OK if ep.in_breach else Condition.BREACH
        if ep.count == 0 and not (c == towards).any():
            return
        for j in np.nonzero(c != Condition.UNKNOWN)[0]:
            condition = Condition(int(c[j]))
            towards = Condition.OK if ep.in_breach else Condition.BREACH
            if ep.count == 0 and condition is not towards:
                continue
            fix = _fix_at(fixes, int(rows[j]))
            ep, events = advance(ep, fix.ts, condition, fix.evidence(), self.config)
            for event in events:
                if isinstance(event, BreachOpened):
                    self.opened(key, event)
                elif isinstance(event, BreachClosed):
                    self.closed(key, event)
        self.episodes[key] = ep

    # -- episodes --------------------------------------------------------------------------

    def feed(self, fix: _Fix, conditions: dict[str, Condition]) -> None:
        evidence: Evidence | None = None
        for key, condition in conditions.items():
            ep = self.episodes.get(key)
            if ep is None:
                ep = EpisodeState()
            # Fast path: nothing to confirm and the fix agrees with the current status.
            if (
                ep.count == 0
                and condition is not Condition.UNKNOWN
                and ((condition is Condition.OK) != ep.in_breach)
            ):
                continue
            if evidence is None:
                evidence = fix.evidence()
            ep, events = advance(ep, fix.ts, condition, evidence, self.config)
            self.episodes[key] = ep
            for event in events:
                if isinstance(event, BreachOpened):
                    self.opened(key, event)
                elif isinstance(event, BreachClosed):
                    self.closed(key, event)

    def opened(self, key: str, event: BreachOpened) -> None:
        rule = self.rules[key]
        episode = episode_key(key, event.started_at)
        self.open[key] = episode
        alert_type = rule.type
        overdue = (
            self.overdue_leave(event.started_at) if key == AREA and self.profile.leaves else None
        )
        if overdue is not None:
            alert_type = AlertType.LEAVE_OVERDUE
            self.open_type[key] = alert_type.value
        evidence: dict[str, Any] = {
            "rule": key,
            "fence_id": rule.fence_id,
            "first_fix": event.first.to_dict() | {"at": _iso(event.first.ts)},
            "last_fix": event.last.to_dict() | {"at": _iso(event.last.ts)},
            "confirmed_at": _iso(event.confirmed_at),
            "fixes": event.fixes,
            "policy": self.profile.policy_snapshot(),
        }
        if overdue is not None:
            back = self._back_before(event.started_at)
            evidence["leave"] = {
                "leave_id": overdue.leave_id,
                "ended_at": _iso(overdue.end_ts),
                "grace_s": self.profile.level_policy.leave_overdue_grace_s,
                "last_inside_at": _iso(back) if back is not None else None,
            }
        # How far outside: for the rules that say where the subject must stay.
        if rule.breach_when is Membership.OUTSIDE:
            if rule.type is AlertType.CURFEW_VIOLATION:
                circle = rule.area.circle
                evidence["home_radius_m"] = circle.radius_m if circle else None
            evidence["distance_outside_m"] = round(
                float(distance_outside_m(rule.area, [event.last.lon], [event.last.lat])[0]), 1
            )
        self.ops.append(
            AlertOpen(
                subject_id=self.profile.subject_id,
                org_unit_id=self.profile.org_unit_id,
                type=alert_type,
                severity=SEVERITY[alert_type],
                fence_id=rule.fence_id,
                episode_key=episode,
                started_at=_at(event.started_at),
                evidence=evidence,
            )
        )

    def closed(self, key: str, event: BreachClosed) -> None:
        episode = self.open.pop(key, None)
        if episode is None:
            return
        raised_as = self.open_type.pop(key, None)
        self.ops.append(
            AlertEnd(
                subject_id=self.profile.subject_id,
                org_unit_id=self.profile.org_unit_id,
                type=AlertType(raised_as) if raised_as else self.rules[key].type,
                episode_key=episode,
                ended_at=_at(event.ended_at),
                evidence={
                    "back_fix": event.first.to_dict() | {"at": _iso(event.first.ts)},
                    "back_confirmed_at": _iso(event.confirmed_at),
                },
            )
        )


def _state_json(
    episodes: dict[str, Any],
    open_episodes: dict[str, str],
    last_ts: float | None,
    ref: list[Any] | None,
    suspect: list[Any] | None,
    checkpoints: list[list[Any]],
    back: float | None = None,
    open_type: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A subject's evaluation state as stored, adding a checkpoint when one is due.

    ``back`` (when the subject was last seen inside the activity area, kept for subjects
    with leaves) is stored with the state and with each checkpoint, as its fourth element
    (the third dates it, like the first), so a replay knows it; ``open_type`` is kept only
    while not empty: a subject without leave has the state it always had."""
    quiet = not episodes and not open_episodes and suspect is None
    if (
        quiet  # nothing pending: a point the subject can be replayed from
        and last_ts is not None
        and (not checkpoints or checkpoints[-1][0] <= last_ts - CHECKPOINT_EVERY_S)
    ):
        # Replay needs only where the last plausible fix was (ts, lon, lat, accuracy).
        if back is None:
            checkpoints.append([last_ts, ref[:4] if ref else None])
        else:
            checkpoints.append([last_ts, ref[:4] if ref else None, last_ts, back])
    if last_ts is not None:
        horizon = last_ts - REPLAY_WINDOW_S
        # The genesis checkpoint (the empty state before the subject's first fix) is
        # dated by that first fix (its third element) for pruning.
        checkpoints = [c for c in checkpoints if c[2 if len(c) > 2 else 0] >= horizon]
    state = {
        "episodes": episodes,
        "open": open_episodes,
        "last_ts": last_ts,
        "ref": ref,
        "suspect": suspect,
        "checkpoints": checkpoints,
    }
    if back is not None:
        state["back"] = back
    if open_type:
        state["open_type"] = open_type
    return state


def _conditions(membership: npt.NDArray[np.int8], breach_when: Membership) -> npt.NDArray[np.int8]:
    ok_when = Membership.INSIDE if breach_when is Membership.OUTSIDE else Membership.OUTSIDE
    c = np.full(len(membership), Condition.UNKNOWN, dtype=np.int8)
    c[membership == breach_when] = Condition.BREACH
    c[membership == ok_when] = Condition.OK
    return c


SCALAR_CHAIN_MAX = 4
"""Chains of at most this many deciding fixes are checked in scalars (numpy costs more)."""


def _implausible_chain(
    ref: _Fix | None,
    fixes: SubjectFixes,
    deciding: npt.NDArray[np.intp] | list[int],
    max_speed_mps: float,
    steepest: float | None = None,
) -> bool:
    """Whether any step between consecutive deciding fixes (rows ``deciding`` of ``fixes``,
    in time order, from ``ref``) is implausible. ``steepest``, when given, is the highest
    step speed among ``fixes`` already computed (:func:`steepest_steps`), valid when every
    fix decides."""
    if len(deciding) == 0:
        return False
    if len(deciding) <= SCALAR_CHAIN_MAX:
        chain = [ref] if ref is not None else []
        chain.extend(_fix_at(fixes, int(i)) for i in deciding)
        return any(required_speed(a, b) > max_speed_mps for a, b in itertools.pairwise(chain))
    if ref is not None and required_speed(ref, _fix_at(fixes, int(deciding[0]))) > max_speed_mps:
        return True
    every = len(deciding) == len(fixes)
    if every and steepest is not None:
        return steepest > max_speed_mps
    if every:  # every fix decides (the rule): no copies
        ts = fixes.ts_us / 1e6
        lon, lat, acc = fixes.lon, fixes.lat, fixes.accuracy_m
    else:
        ts = fixes.ts_us[deciding] / 1e6
        lon, lat, acc = fixes.lon[deciding], fixes.lat[deciding], fixes.accuracy_m[deciding]
    return bool((step_speeds(ts, lon, lat, acc) > max_speed_mps).any())


def steepest_steps(whole: SubjectFixes, starts: list[int], ends: list[int]) -> list[float | None]:
    """For each run ``whole[start:end]`` (one subject's fixes, in time order; the runs follow
    one another from the first row to the last): the highest speed between its consecutive
    fixes, as :func:`_implausible_chain` would compute it, or None where that function would
    not use it (a run of few fixes, or one holding a fix that does not decide). One pass over
    a commit group's arrays instead of one per subject (``geofences.spikes.steepest_steps``).
    """
    if len(whole) < 2:
        return [None] * len(starts)
    highest = spikes.steepest_steps(
        whole.ts_us / 1e6, whole.lon, whole.lat, whole.accuracy_m, starts
    ).tolist()
    index = np.asarray(starts, dtype=np.intp)
    undecided = np.logical_or.reduceat((whole.flags & FixFlag.NOT_DECIDING) != 0, index).tolist()
    return [
        value if end - start > SCALAR_CHAIN_MAX and not skip else None
        for value, skip, start, end in zip(highest, undecided, starts, ends, strict=True)
    ]


def _fix_at(fixes: SubjectFixes, i: int) -> _Fix:
    return _Fix(
        int(fixes.ts_us[i]) / 1e6,
        float(fixes.lon[i]),
        float(fixes.lat[i]),
        float(fixes.accuracy_m[i]),
        int(fixes.flags[i]),
        int(fixes.device[i]),
        int(fixes.ts_us[i]),
        int(fixes.key[i]),
        i,
    )


def evaluate_subject(
    profile: SubjectProfile,
    state: dict[str, Any],
    fixes: SubjectFixes,
    now: datetime,
    *,
    activity: npt.NDArray[np.int8] | None = None,
) -> EvalOutcome:
    """Evaluate a subject's new fixes (sorted by time) from ``state``; flags late fixes in
    ``fixes.flags``. ``now`` is the server time of the commit; the rules run on event time.
    ``activity`` optionally gives every fix's activity-area membership, computed by the
    caller for many subjects sharing one area in a single vectorised call."""
    ev = _Evaluator(profile, state or {})
    max_speed_mps = profile.max_speed_mps
    ts_s = fixes.ts_us / 1e6
    if ev.last_ts is None and ev.suspect is None and not ev.checkpoints and len(fixes):
        # A subject's first fixes: the empty state before anything is the first checkpoint
        # (time 0 = before every fix; the first fix's time dates it for pruning).
        ev.checkpoints.append([0.0, None, float(ts_s.min())])
    newest = ev.suspect.ts if ev.suspect is not None else ev.last_ts
    late_mask = ts_s < newest if newest is not None else np.zeros(len(fixes), dtype=np.bool_)
    late = int(late_mask.sum())
    if late:
        fixes.flags[late_mask] |= FixFlag.LATE
    rows = np.nonzero(~late_mask)[0]
    if len(rows) == 0:
        return EvalOutcome(ev.state(), [], [], late)

    deciding_rows = rows[(fixes.flags[rows] & FixFlag.NOT_DECIDING) == 0]
    if ev.suspect is None and not _implausible_chain(ev.ref, fixes, deciding_rows, max_speed_mps):
        # Common case, vectorised: no spike to hold, so every fix is evaluated in order and a
        # rule whose fixes cannot move its episode is skipped without a Python loop.
        conds = ev.conditions_arrays(fixes, rows, activity)
        for key, c in conds.items():
            ev.run_rule(key, c, fixes, rows)
        ev.last_ts = float(ts_s[rows[-1]])
        if len(deciding_rows):
            ev.ref = _fix_at(fixes, int(deciding_rows[-1]))
        return EvalOutcome(ev.state(), ev.ops, ev.spikes, late)

    candidates = [_fix_at(fixes, int(i)) for i in rows]
    # Conditions for the held suspect (if any) and all candidates, in one vectorised pass.
    pool = ([ev.suspect] if ev.suspect is not None else []) + candidates
    conds_list = ev.conditions(pool)
    cond_of = {id(f): {k: v[j] for k, v in conds_list.items()} for j, f in enumerate(pool)}

    def evaluate(fix: _Fix) -> None:
        ev.feed(fix, cond_of[id(fix)])
        ev.last_ts = fix.ts

    screen = SpikeScreen(max_speed_mps, ev.ref, ev.suspect)
    for fix in candidates:
        decided, spike, held = screen.push(fix, (fix.flags & FixFlag.NOT_DECIDING) == 0)
        if decided is not None:
            if spike:
                _mark_spike(ev, fixes, decided)
            else:
                evaluate(decided)
        if not held:
            evaluate(fix)
    ev.ref, ev.suspect = screen.ref, screen.suspect
    return EvalOutcome(ev.state(), ev.ops, ev.spikes, late)


def evaluate_quiet(
    profile: SubjectProfile,
    state: dict[str, Any] | None,
    fixes: SubjectFixes,
    activity: npt.NDArray[np.int8] | None,
    steepest: float | None = None,
) -> EvalOutcome | None:
    """:func:`evaluate_subject`'s outcome for the commonest case, without its machinery.

    Most commits bring a subject one or a few fixes that change nothing: no late fix, no
    implausible step, and no fix that could move an episode (inside the area when not in
    breach, outside it while in breach). Then evaluation only moves the subject's time and
    reference fix forward, which takes a few scalar operations instead of a few dozen
    array ones. Returns None whenever anything else could happen (the caller then runs
    :func:`evaluate_subject`): a held suspect, a late fix, a rule other than the activity
    area (zones and curfew are evaluated per subject), a fix towards a breach or back.
    ``activity`` is the activity-area membership of ``fixes``, as for evaluate_subject;
    ``fixes`` are sorted by time, as the group's merge leaves them; ``steepest`` is the
    highest step speed among them when the merge computed it (:func:`steepest_steps`).
    """
    n = len(fixes)
    if n == 0 or profile.zones or (profile.home is not None and profile.curfew is not None):
        return None
    state = state or {}
    if state.get("suspect"):
        return None
    first_s, last_s = int(fixes.ts_us[0]) / 1e6, int(fixes.ts_us[-1]) / 1e6
    if profile.leaves and not _leaves_settled(profile, state.get("back"), last_s):
        return None
    last_ts: float | None = state.get("last_ts")
    if last_ts is not None and first_s < last_ts:
        return None
    # Scalars for a few fixes (a numpy call costs more than the loop), arrays for many.
    small = n <= 8
    every = steepest is not None  # the group computes it only where every fix decides
    if small:
        flags = fixes.flags.tolist()
        deciding = [i for i in range(n) if not flags[i] & FixFlag.NOT_DECIDING]
    elif every:
        deciding = list(range(n))
    else:
        can_decide = (fixes.flags & FixFlag.NOT_DECIDING) == 0
        deciding = np.flatnonzero(can_decide).tolist()
    stored_ref = state.get("ref")
    ref = _Fix.from_json(stored_ref) if stored_ref else None
    if _implausible_chain(ref, fixes, deciding, profile.max_speed_mps, steepest):
        return None
    episodes = state.get("episodes", {})
    if profile.activity_area is not None:
        if activity is None:
            return None
        area = episodes.get(AREA)
        if area is not None and area["count"]:
            return None
        # The membership that would turn this rule's condition towards a change.
        towards = (
            Membership.INSIDE if area is not None and area["in_breach"] else Membership.OUTSIDE
        )
        if small:
            moving = any(
                m == towards and not f & FixFlag.NOT_DECIDING
                for m, f in zip(activity.tolist(), flags, strict=True)
            )
        elif every:
            moving = bool((activity == towards).any())
        else:
            moving = bool(((activity == towards) & can_decide).any())
        if moving:
            return None
    checkpoints = [list(c) for c in state.get("checkpoints", [])]
    if last_ts is None and not checkpoints:
        checkpoints.append([0.0, None, first_s])
    kept = {}
    for key, value in episodes.items():
        ep = EpisodeState.from_dict(value)
        if ep.in_breach or ep.count:
            kept[key] = ep.to_dict()
    new_ref = _fix_at(fixes, deciding[-1]).to_json() if deciding else stored_ref
    new_state = _state_json(
        kept,
        dict(state.get("open", {})),
        last_s,
        new_ref,
        None,
        checkpoints,
        state.get("back"),
        dict(state.get("open_type", {})),
    )
    return EvalOutcome(new_state, [], [], 0)


def _leaves_settled(profile: SubjectProfile, back: float | None, last_s: float) -> bool:
    """Whether no leave of the subject can matter for fixes up to ``last_s``: each starts
    after them, or ended before the subject was last seen back inside the area."""
    return all(
        leave.start_ts > last_s or (back is not None and back >= leave.end_ts)
        for leave in profile.leaves
    )


def replay_subject(
    profile: SubjectProfile,
    start: dict[str, Any],
    fixes: SubjectFixes,
    now: datetime,
    resume_at: list[float],
) -> EvalOutcome:
    """Re-evaluate a subject's fixes (sorted by time) from the checkpoint state ``start``.

    The fixes are evaluated in segments cut at ``resume_at`` (epoch seconds UTC: the times of
    the checkpoints the subject had after ``start``), so the replay leaves checkpoints where
    evaluating them as they arrived did. Otherwise a replay would keep only the checkpoint it
    started from, and once that one left the replay window a later late fix would find none.
    Evaluation does not depend on how fixes are batched, so the segments change nothing
    else. Spikes are flagged in ``fixes.flags`` (the outcome's ``spikes`` is empty).
    """
    cuts = np.searchsorted(fixes.ts_us, [round(t * 1e6) for t in sorted(resume_at)], "right")
    state, ops, late = start, [], 0
    for a, b in itertools.pairwise([0, *cuts.tolist(), len(fixes)]):
        if a >= b:
            continue
        part = fixes.select(np.arange(a, b))
        out = evaluate_subject(profile, state, part, now)
        fixes.flags[a:b] = part.flags
        for device, ts_us, key in out.spikes:  # a suspect held over from an earlier segment
            held = (
                (fixes.device[:a] == device) & (fixes.ts_us[:a] == ts_us) & (fixes.key[:a] == key)
            )
            fixes.flags[:a][held] |= FixFlag.SPIKE
        state, late = out.state, late + out.late
        ops.extend(out.alert_ops)
    return EvalOutcome(state, ops, [], late)


def newest_evaluated(state: dict[str, Any] | None) -> float | None:
    """Time of the newest fix the state has seen (evaluated or held as a suspect)."""
    if not state:
        return None
    suspect = state.get("suspect")
    if suspect:
        return float(suspect[0])
    last = state.get("last_ts")
    return None if last is None else float(last)


def replay_state(state: dict[str, Any] | None, before_ts: float) -> dict[str, Any] | None:
    """The state to replay from for fixes from ``before_ts`` on: the newest checkpoint strictly
    before it, or None when the late fix is older than every checkpoint kept."""
    if not state:
        return None
    usable = [c for c in state.get("checkpoints", []) if c[0] < before_ts]
    if not usable:
        return None
    ts, where = usable[-1][:2]
    # A full reference fix; device, flags and client key play no part in speed checks.
    ref = [*where, 0, 0, round(where[0] * 1e6), 0] if where else None
    start = {
        "episodes": {},
        "open": {},
        "last_ts": ts,
        "ref": ref,
        "suspect": None,
        "checkpoints": usable,
    }
    if len(usable[-1]) > 3:
        start["back"] = usable[-1][3]
    return start


def _mark_spike(ev: _Evaluator, fixes: SubjectFixes, suspect: _Fix) -> None:
    if suspect.row >= 0:
        fixes.flags[suspect.row] |= FixFlag.SPIKE
    else:
        ev.spikes.append((suspect.device, suspect.ts_us, suspect.key))
