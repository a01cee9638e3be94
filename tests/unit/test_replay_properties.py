"""Replaying late fixes reaches the in-order outcome, whatever the delivery (pure logic).

``Deliveries`` mirrors the committer on plain Python state: dedupe against what is stored,
choose the checkpoint to replay from (``committer._replay_start``), evaluate, and reconcile
alerts as ``alerts.reconcile_episodes`` does (restore, end, raise, retract).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from correction_monitor.adapters.alerts import AlertEnd, AlertOpen
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.ingest.committer import _replay_start
from correction_monitor.ingest.evaluate import (
    REPLAY_WINDOW_S,
    SubjectFixes,
    evaluate_subject,
    replay_subject,
)
from correction_monitor.ingest.profiles import SubjectProfile
from correction_monitor.policy import load_policy
from geofences.classify import PreparedArea

pytestmark = pytest.mark.unit

POLICY = load_policy()
PROFILE = SubjectProfile(
    subject_id=1,
    org_unit_id=1,
    level="strict",
    level_policy=POLICY.level("strict"),  # confirm 120 s
    activity_fence_id=7,
    activity_area=PreparedArea(shapely.box(116.2, 39.8, 116.4, 40.0)),
    zones=(),
    home=None,
    curfew=None,
    timezone="Asia/Shanghai",
    max_speed_mps=POLICY.ingest.max_speed_mps,
)
NOW = datetime(2026, 11, 26, tzinfo=UTC)
T0 = 1_790_000_000.0
WHERE = {
    "in": (116.395, 39.90),  # ~430 m inside the east edge
    "out": (116.405, 39.90),  # ~430 m outside it
    "far": (116.60, 40.10),  # ~25 km away: a jump at any step here
    "edge": (116.40, 39.90),  # on the edge: the accuracy disc straddles it (uncertain)
}


def fixes_of(points: list[str], times: list[float]) -> SubjectFixes:
    n = len(points)
    return SubjectFixes(
        ts_us=np.array([round(t * 1e6) for t in times], dtype=np.int64),
        lon=np.array([WHERE[p][0] for p in points], dtype=np.float64),
        lat=np.array([WHERE[p][1] for p in points], dtype=np.float64),
        accuracy_m=np.full(n, 5.0),
        flags=np.zeros(n, dtype=np.int16),
        key=np.arange(n, dtype=np.int32),
        device=np.ones(n, dtype=np.int32),
        owner=np.zeros(n, dtype=np.int32),
    )


class Deliveries:
    """One subject's stored fixes, evaluation state and alerts, fed as the committer does."""

    def __init__(self, fixes: SubjectFixes) -> None:
        self.all = fixes
        self.state: dict[str, Any] = {}
        self.stored: dict[int, int] = {}  # fix index -> stored flags
        # episode key -> [ended_at or None, retracted]
        self.alerts: dict[str, list[Any]] = {}

    def send(self, indexes: list[int]) -> None:
        fresh = sorted({i for i in indexes if i not in self.stored}, key=self._order)
        if not fresh:
            return
        part = self.all.select(np.array(fresh, dtype=np.intp))
        part.flags[:] = 0
        start = _replay_start(self.state, part)
        if start is None:
            out = evaluate_subject(PROFILE, self.state, part, NOW)
            self._apply(out.alert_ops)
            rows = fresh
            flags = part.flags
        else:
            since = start["last_ts"]
            old = [i for i in self.stored if self.all.ts_us[i] / 1e6 > since]
            rows = sorted(old + fresh, key=self._order)
            merged = self.all.select(np.array(rows, dtype=np.intp))
            merged.flags[:] = 0
            resume_at = [c[0] for c in self.state["checkpoints"] if c[0] > since]
            out = replay_subject(PROFILE, start, merged, NOW, resume_at)
            self._reconcile(since, out.alert_ops)
            flags = merged.flags
        self.state = out.state
        self.stored.update((i, int(f)) for i, f in zip(rows, flags, strict=True))
        for _, ts_us, key in out.spikes:
            match = np.nonzero((self.all.ts_us == ts_us) & (self.all.key == key))[0]
            self.stored[int(match[0])] |= FixFlag.SPIKE

    def visible(self) -> dict[str, Any]:
        return {k: v[0] for k, v in self.alerts.items() if not v[1]}

    def spikes(self) -> set[int]:
        return {i for i, f in self.stored.items() if f & FixFlag.SPIKE}

    def _order(self, i: int) -> tuple[int, int]:
        return int(self.all.ts_us[i]), int(self.all.key[i])

    def _apply(self, ops: list[Any]) -> None:
        for op in ops:
            if isinstance(op, AlertOpen):
                alert = self.alerts.setdefault(op.episode_key, [None, False])
                if alert[1]:  # confirmed again after a retraction: restored, open
                    alert[:] = [None, False]
            elif isinstance(op, AlertEnd) and self.alerts[op.episode_key][0] is None:
                self.alerts[op.episode_key][0] = op.ended_at

    def _reconcile(self, since: float, ops: list[Any]) -> None:
        ends = {op.episode_key: op.ended_at for op in ops if isinstance(op, AlertEnd)}
        opened = {op.episode_key for op in ops if isinstance(op, AlertOpen)}
        for key, alert in self.alerts.items():
            if int(key.rsplit(":", 1)[1]) > since * 1000 and key not in opened:
                alert[1] = True
        for key in opened:
            self.alerts[key] = [ends.get(key), False]


def in_order(fixes: SubjectFixes) -> Deliveries:
    control = Deliveries(fixes)
    control.send(list(range(len(fixes))))
    return control


@settings(max_examples=120, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["in", "out", "out", "far", "edge"]), min_size=2, max_size=28),
    gaps=st.lists(st.sampled_from([0.0, 10.0, 30.0, 60.0, 60.0, 90.0]), min_size=28, max_size=28),
    seed=st.integers(min_value=0, max_value=10_000),
    parts=st.integers(min_value=1, max_value=6),
)
def test_any_delivery_with_repeats_gives_the_in_order_alerts_and_spikes(
    pattern: list[str], gaps: list[float], seed: int, parts: int
) -> None:
    times = list(np.cumsum([T0, *gaps[: len(pattern) - 1]]))
    fixes = fixes_of(pattern, times)
    expected = in_order(fixes)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(fixes))
    late = Deliveries(fixes)
    for group in np.array_split(order, parts):
        late.send(group.tolist())
        # A phone that missed the answer sends the group again, plus an earlier fix.
        late.send([*group.tolist(), int(rng.integers(len(fixes)))])
    assert late.visible() == expected.visible()
    assert late.spikes() == expected.spikes()
    assert set(late.stored) == set(range(len(fixes)))


def test_retracted_episode_confirmed_again_is_visible() -> None:
    """A late inside fix retracts an episode; a later arrival shows it was a jump: the same
    episode (same key) is confirmed again and must be visible again."""
    pattern = ["in", "in", "out", "out", "out", "out", "out", "out"]
    times = [T0 + 60 * n for n in range(len(pattern))]
    # The jump back inside at 3.33 min, then a fix at 3.17 min ~430 m further out.
    fixes = fixes_of([*pattern, "in", "out"], [*times, T0 + 200, T0 + 190])
    fixes.lon[4:8] = 116.44
    fixes.lon[9] = 116.41
    expected = in_order(fixes)
    assert len(expected.visible()) == 1
    late = Deliveries(fixes)
    late.send(list(range(8)))
    assert late.visible() == expected.visible()
    late.send([8])
    assert late.visible() != expected.visible()
    late.send([9])
    assert late.visible() == expected.visible()


def test_fixes_beyond_the_window_do_not_stop_replay_of_the_others() -> None:
    """A late batch holding one fix older than every checkpoint and others within the replay
    window: the window's fixes are still replayed (only the oldest is left unevaluated)."""
    day = REPLAY_WINDOW_S
    early = fixes_of(["in"] * 3, [T0 + 60 * n for n in range(3)])
    start = T0 + day + 7200
    walk = ["in", "in", "out", "out", "out", "out", "in", "in", "in"]
    times = [start + 60 * n for n in range(len(walk))]
    rest = fixes_of(walk, times)
    fixes = SubjectFixes.concat([early, rest])
    fixes.key = np.arange(len(fixes), dtype=np.int32)
    expected = in_order(fixes)
    assert len(expected.visible()) == 1
    late = Deliveries(fixes)
    late.send([0, 1])
    late.send([3, 4])  # a day later: the genesis checkpoint is pruned, one taken at fix 4
    late.send([5, 9, 10, 11])  # the outside stretch lacks three fixes: no alert yet
    assert late.visible() == {}
    late.send([2, 6, 7, 8])  # fix 2 is older than every checkpoint; 6 to 8 are not
    assert late.visible() == expected.visible()
    assert late.stored[2] & FixFlag.LATE


def test_replay_keeps_the_checkpoints_it_passes() -> None:
    """A replay must leave checkpoints along the fixes it re-evaluates, as live evaluation
    did; otherwise, once the checkpoint it started from ages out of the window, a later late
    fix finds none and is never evaluated."""
    hour = 3600.0
    points: list[str] = []
    times: list[float] = []
    for h in range(0, 28, 3):  # two fixes every 3 h, one batch each: a checkpoint each
        points += ["in", "in"]
        times += [T0 + h * hour, T0 + h * hour + 60]
    first_late = len(points)
    points.append("in")
    times.append(T0 + 4 * hour)
    points += ["in", "in"]
    times += [T0 + 28 * hour, T0 + 28 * hour + 60]  # ages the 3 h checkpoint out
    outside = list(range(len(points), len(points) + 4))
    points += ["out"] * 4
    times += [T0 + 20 * hour + 60 * n for n in range(1, 5)]
    fixes = fixes_of(points, times)
    expected = in_order(fixes)
    assert len(expected.visible()) == 1
    late = Deliveries(fixes)
    for n in range(0, first_late, 2):
        late.send([n, n + 1])
    late.send([first_late])
    late.send([first_late + 1, first_late + 2])
    late.send(outside)
    assert late.visible() == expected.visible()
    assert not any(late.stored[i] & FixFlag.LATE for i in outside)
