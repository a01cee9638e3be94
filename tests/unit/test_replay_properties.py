"""Replaying late fixes reaches the in-order outcome, whatever honest delivery brought them,
and contradicting accounts never change it (pure logic).

``Deliveries`` mirrors the commit (``ingest/commit.py``) on plain Python state: dedupe
against what is stored, flag late arrivals and set contradicting fixes aside
(``ingest/accounts.py``), choose the checkpoint to replay from (``replay.replay_start``),
evaluate, and reconcile alerts as ``alerts.reconcile_episodes`` does (restore, end, raise,
retract).

Honest deliveries are the ones phones make: fixes in time order, in requests of any size,
resent when an answer was lost, and offline buffers, sent after the live fix that follows
them, oldest page first. A fix for a span its device had already covered (its stored fixes
around it at most ``covered_gap_s`` apart) is a contradicting account: stored, never
evaluated.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from correction_monitor.domain.alerts import AlertEnd, AlertOpen
from correction_monitor.domain.fix_arrays import SubjectFixes
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.ingest.accounts import contradicting
from correction_monitor.ingest.evaluate import (
    REPLAY_WINDOW_S,
    evaluate_subject,
    replay_subject,
)
from correction_monitor.ingest.profiles import SubjectProfile
from correction_monitor.ingest.replay import replay_start
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
COVERED_GAP_S = POLICY.ingest.covered_gap_s
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
    """One subject's stored fixes, evaluation state and alerts, fed as the commit does."""

    def __init__(self, fixes: SubjectFixes) -> None:
        self.all = fixes
        self.state: dict[str, Any] = {}
        self.stored: dict[int, int] = {}  # fix index -> stored flags
        # episode key -> [ended_at or None, retracted]
        self.alerts: dict[str, list[Any]] = {}
        self.arrival: dict[int, int] = {}  # fix index -> BACKFILL / CONTRADICTING, as stored

    def send(self, indexes: list[int]) -> None:
        fresh = sorted({i for i in indexes if i not in self.stored}, key=self._order)
        if not fresh:
            return
        fresh = self._set_aside_contradictions(fresh)
        if not fresh:
            return
        part = self.all.select(np.array(fresh, dtype=np.intp))
        part.flags[:] = 0
        start = replay_start(self.state, part)
        if start is None:
            out = evaluate_subject(PROFILE, self.state, part, NOW)
            self._apply(out.alert_ops)
            rows = fresh
            flags = part.flags
        else:
            since = start["last_ts"]
            old = [
                i
                for i in self.stored
                if self.all.ts_us[i] / 1e6 > since and i not in self.contradicting()
            ]
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

    def _set_aside_contradictions(self, fresh: list[int]) -> list[int]:
        """Flag late arrivals; store the contradicting ones aside; return the others."""
        if not self.stored:
            return fresh
        newest = max(int(self.all.ts_us[i]) for i in self.stored)
        for i in fresh:
            if int(self.all.ts_us[i]) < newest:
                self.arrival[i] = FixFlag.BACKFILL
        kept = np.array(sorted(self.stored, key=self._order), dtype=np.intp)
        stored = self.all.select(kept)
        stored.flags[:] = [self.arrival.get(int(i), 0) for i in kept]
        part = self.all.select(np.array(fresh, dtype=np.intp))
        covered, _, _ = contradicting(part, stored, round(COVERED_GAP_S * 1e6))
        for i, told in zip(fresh, covered.tolist(), strict=True):
            if told:
                self.arrival[i] |= FixFlag.CONTRADICTING
                self.stored[i] = FixFlag.CONTRADICTING
        return [i for i, told in zip(fresh, covered.tolist(), strict=True) if not told]

    def contradicting(self) -> set[int]:
        return {i for i, f in self.arrival.items() if f & FixFlag.CONTRADICTING}

    def visible(self) -> dict[str, Any]:
        """The alerts standing (retracted ones stay listed, marked, but do not stand)."""
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


def honest_deliveries(times: list[float], rng: np.random.Generator) -> list[list[int]]:
    """Requests an honest phone makes for fixes at ``times`` (indexes into them).

    The fixes go out in time order, a few to a request, except offline stretches: runs of
    fixes after which the phone's live reports resume more than ``covered_gap_s`` after the
    last one sent before. A stretch's buffer goes out after the live fix that ends it, at
    some later moment, oldest page first; the pages of different stretches interleave with
    each other and with live requests. Some requests are sent twice (a lost answer), with an
    earlier fix already sent.
    """
    n = len(times)
    stretches: list[tuple[int, int]] = []
    i = 0
    while i < n - 1:
        if rng.random() < 0.3:
            j = min(i + int(rng.integers(0, 5)), n - 2)
            before = times[i - 1] if i > 0 else -np.inf
            if times[j + 1] - before > COVERED_GAP_S:
                stretches.append((i, j))
                i = j + 2  # a live fix between two stretches
                continue
        i += 1
    offline = {k for a, b in stretches for k in range(a, b + 1)}
    live = [k for k in range(n) if k not in offline]
    groups: list[list[int]] = []
    while live:
        size = int(rng.integers(1, 5))
        groups.append(live[:size])
        live = live[size:]
    buffers: list[list[list[int]]] = []  # per released stretch: its pages still to send
    requests: list[list[int]] = []
    sent: list[int] = []

    def deliver(request: list[int]) -> None:
        requests.append(request)
        if rng.random() < 0.3 and sent:  # the answer was lost: sent again, and an old fix
            requests.append([*request, sent[int(rng.integers(len(sent)))]])
        sent.extend(request)

    for group in groups:
        deliver(group)
        for a, b in stretches:
            if b + 1 in group:
                run = list(range(a, b + 1))
                cuts = sorted({int(c) for c in rng.integers(1, len(run) + 1, size=2)})
                edges = [0, *cuts, len(run)]
                buffers.append([run[x:y] for x, y in itertools.pairwise(edges) if x < y])
        for pages in buffers:
            while pages and rng.random() < 0.5:
                deliver(pages.pop(0))
    for pages in buffers:
        for page in pages:
            deliver(page)
    return requests


@settings(max_examples=150, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["in", "out", "out", "far", "edge"]), min_size=2, max_size=28),
    gaps=st.lists(
        st.sampled_from([0.0, 10.0, 30.0, 60.0, 60.0, 90.0, 150.0]), min_size=28, max_size=28
    ),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_honest_deliveries_give_the_in_order_alerts_and_spikes(
    pattern: list[str], gaps: list[float], seed: int
) -> None:
    times = list(np.cumsum([T0, *gaps[: len(pattern) - 1]]))
    fixes = fixes_of(pattern, times)
    expected = in_order(fixes)
    late = Deliveries(fixes)
    for request in honest_deliveries(times, np.random.default_rng(seed)):
        late.send(request)
    assert late.visible() == expected.visible()
    assert late.spikes() == expected.spikes()
    assert set(late.stored) == set(range(len(fixes)))
    assert late.contradicting() == set()


@settings(max_examples=150, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["in", "out", "out", "far", "edge"]), min_size=2, max_size=24),
    gaps=st.lists(st.sampled_from([0.0, 10.0, 30.0, 60.0, 90.0, 150.0]), min_size=24, max_size=24),
    fakes=st.lists(
        st.tuples(
            st.sampled_from(["in", "out", "far", "edge"]),
            st.integers(min_value=0, max_value=23),
            st.floats(min_value=0.01, max_value=0.99),
        ),
        min_size=1,
        max_size=12,
    ),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_contradicting_accounts_never_change_the_in_order_alerts(
    pattern: list[str],
    gaps: list[float],
    fakes: list[tuple[str, int, float]],
    seed: int,
) -> None:
    """The phone reports in order; someone also sends fixes, anywhere, for moments between
    two of its fixes at most ``covered_gap_s`` apart, after both were stored, alone or along
    with live fixes. The alerts and spikes stay the in-order ones; every such fix is stored
    and flagged contradicting."""
    times = list(np.cumsum([T0, *gaps[: len(pattern) - 1]]))
    spans = [k for k in range(len(times) - 1) if 0 < times[k + 1] - times[k] <= COVERED_GAP_S]
    assume(spans)
    fake_points, fake_times, closes = [], [], []
    for point, span, fraction in fakes:
        k = spans[span % len(spans)]
        fake_points.append(point)
        fake_times.append(round(times[k] + fraction * (times[k + 1] - times[k]), 3))
        closes.append(k + 1)  # the stored fix after it
    n = len(pattern)
    fixes = fixes_of([*pattern, *fake_points], [*times, *fake_times])
    expected = in_order(fixes.select(np.arange(n)))
    rng = np.random.default_rng(seed)
    late = Deliveries(fixes)
    waiting = list(range(len(fakes)))
    done = 0
    while done < n:
        group = list(range(done, min(n, done + int(rng.integers(1, 5)))))
        ready = [f for f in waiting if closes[f] < done and rng.random() < 0.5]
        waiting = [f for f in waiting if f not in ready]
        late.send(group + [n + f for f in ready])
        done = group[-1] + 1
    for part in np.array_split(rng.permutation(waiting), 2):
        late.send([n + int(f) for f in part])
    assert late.visible() == expected.visible()
    assert late.spikes() == expected.spikes()
    assert set(late.stored) == set(range(len(fixes)))
    assert late.contradicting() == set(range(n, len(fixes)))


def test_retracted_episode_confirmed_again_is_visible() -> None:
    """The buffer of a 2-minute gap comes in pages after the live fixes: the first page's
    jump back inside retracts the episode; the next page shows it was a spike, so the same
    episode (same key) is confirmed again and must stand again."""
    pattern = ["in", "in", "out", "out", "out", "out", "out", "out", "out", "in", "out"]
    times = [T0 + 60 * n for n in range(4)] + [T0 + 300 + 60 * n for n in range(5)]
    fixes = fixes_of(pattern, [*times, T0 + 200, T0 + 210])
    fixes.lon[4:9] = 116.44  # ~3 km east
    fixes.lon[9] = 116.385  # inside, 1.7 km from the 3-min fix 20 s before
    fixes.lon[10] = 116.41  # plausible from the 3-min fix, 2.1 km from the jump
    expected = in_order(fixes)
    assert len(expected.visible()) == 1
    late = Deliveries(fixes)
    late.send(list(range(9)))
    assert late.visible() == expected.visible()
    late.send([9])
    assert late.visible() != expected.visible()
    late.send([10])
    assert late.visible() == expected.visible()
    assert late.spikes() == expected.spikes() == {9}
    assert late.contradicting() == set()


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
