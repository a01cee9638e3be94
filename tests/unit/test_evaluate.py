"""Evaluation is a pure function of (profile, state, fixes): no database needed."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import event, given, settings
from hypothesis import strategies as st

from correction_monitor.domain.alerts import AlertEnd, AlertOpen
from correction_monitor.domain.fix_arrays import SubjectFixes
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.ingest.evaluate import (
    evaluate_subject,
    newest_evaluated,
    replay_state,
)
from correction_monitor.ingest.profiles import SubjectProfile
from correction_monitor.policy import load_policy
from geofences.classify import PreparedArea
from geofences.episodes import Evidence
from geofences.spikes import SpikeScreen

pytestmark = pytest.mark.unit

POLICY = load_policy()
AREA = PreparedArea(shapely.box(116.2, 39.8, 116.4, 40.0))
PROFILE = SubjectProfile(
    subject_id=1,
    org_unit_id=1,
    level="strict",
    level_policy=POLICY.level("strict"),  # confirm 120 s
    activity_fence_id=7,
    activity_area=AREA,
    zones=(),
    home=None,
    curfew=None,
    timezone="Asia/Shanghai",
    max_speed_mps=POLICY.ingest.max_speed_mps,
)
IN = (116.30, 39.90)
OUT = (116.60, 39.90)
T0 = 1_790_000_000.0
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def fixes_of(
    points: list[tuple[float, float]], t0: float = T0, step: float = 60.0, acc: float = 10.0
) -> SubjectFixes:
    n = len(points)
    return SubjectFixes(
        ts_us=np.array([round((t0 + i * step) * 1e6) for i in range(n)], dtype=np.int64),
        lon=np.array([p[0] for p in points], dtype=np.float64),
        lat=np.array([p[1] for p in points], dtype=np.float64),
        accuracy_m=np.full(n, acc),
        flags=np.zeros(n, dtype=np.int16),
        key=np.arange(n, dtype=np.int32),
        device=np.ones(n, dtype=np.int32),
        owner=np.zeros(n, dtype=np.int32),
    )


def summary(ops: list[Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for op in ops:
        if isinstance(op, AlertOpen):
            out.append(("open", op.type, op.started_at.isoformat()))
        elif isinstance(op, AlertEnd):
            out.append(("end", op.type, op.ended_at.isoformat()))
    return out


def in_chunks(all_fixes: SubjectFixes, cuts: list[int]) -> list[tuple[str, str, str]]:
    state: dict[str, Any] = {}
    ops: list[Any] = []
    n = len(all_fixes)
    bounds = [0, *sorted({c for c in cuts if 0 < c < n}), n]
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        out = evaluate_subject(PROFILE, state, all_fixes.select(np.arange(a, b)), NOW)
        state, ops = out.state, ops + out.alert_ops
    return summary(ops)


def test_out_and_back_opens_and_ends_one_episode_at_event_times() -> None:
    fixes = fixes_of([IN] * 3 + [OUT] * 4 + [IN] * 4)
    out = evaluate_subject(PROFILE, {}, fixes, NOW)
    assert summary(out.alert_ops) == [
        ("open", "left_activity_area", datetime.fromtimestamp(T0 + 180, UTC).isoformat()),
        ("end", "left_activity_area", datetime.fromtimestamp(T0 + 420, UTC).isoformat()),
    ]
    opened = out.alert_ops[0]
    assert isinstance(opened, AlertOpen)
    assert opened.evidence["fence_id"] == 7
    assert opened.evidence["policy"]["confirm_s"] == 120
    assert opened.evidence["distance_outside_m"] > 15_000


def test_lone_spike_is_flagged_and_never_alerts() -> None:
    fixes = fixes_of([IN] * 4 + [OUT] + [IN] * 4, step=10.0)
    out = evaluate_subject(PROFILE, {}, fixes, NOW)
    assert out.alert_ops == []
    assert fixes.flags[4] & FixFlag.SPIKE
    assert not any(f & FixFlag.SPIKE for i, f in enumerate(fixes.flags) if i != 4)


def test_spike_at_the_end_of_a_batch_is_decided_by_the_next_batch() -> None:
    first = evaluate_subject(PROFILE, {}, fixes_of([IN] * 4 + [OUT], step=10.0), NOW)
    assert first.state["suspect"] is not None
    second = evaluate_subject(PROFILE, first.state, fixes_of([IN] * 3, t0=T0 + 50, step=10.0), NOW)
    assert second.spikes
    assert second.spikes[0][1] == round((T0 + 40) * 1e6)
    assert second.alert_ops == []


def test_late_fix_is_flagged_and_not_evaluated() -> None:
    first = evaluate_subject(PROFILE, {}, fixes_of([IN] * 3, t0=T0 + 600), NOW)
    late = fixes_of([OUT] * 5, t0=T0)
    out = evaluate_subject(PROFILE, first.state, late, NOW)
    assert out.late == 5
    assert all(f & FixFlag.LATE for f in late.flags)
    assert out.alert_ops == []


def test_mock_and_coarse_fixes_never_decide() -> None:
    fixes = fixes_of([IN] * 2 + [OUT] * 6)
    fixes.flags[2:5] |= FixFlag.MOCK
    fixes.flags[5:] |= FixFlag.COARSE
    assert evaluate_subject(PROFILE, {}, fixes, NOW).alert_ops == []


@settings(max_examples=60, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["in", "out", "far", "edge"]), min_size=2, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
)
def test_batches_and_single_fixes_give_identical_alerts(
    pattern: list[str], cuts: list[int]
) -> None:
    where = {"in": IN, "out": OUT, "far": (118.0, 39.9), "edge": (116.4, 39.9)}
    fixes = fixes_of([where[p] for p in pattern], step=45.0)
    whole = in_chunks(fixes, [])
    assert in_chunks(fixes, cuts) == whole
    assert in_chunks(fixes, list(range(1, len(fixes)))) == whole


def _apply(alerts: dict[str, str | None], ops: list[Any]) -> None:
    for op in ops:
        if isinstance(op, AlertOpen):
            alerts.setdefault(op.episode_key, None)
        elif isinstance(op, AlertEnd):
            alerts[op.episode_key] = op.ended_at.isoformat()


def _arrive(all_fixes: SubjectFixes, order: list[list[int]]) -> dict[str, str | None]:
    """Deliver the fixes in the given groups (any order), replaying from checkpoints for late
    ones as the committer does; returns episode key -> end of the surviving alerts."""
    state: dict[str, Any] = {}
    alerts: dict[str, str | None] = {}
    stored: list[int] = []
    for part in order:
        newest = newest_evaluated(state)
        idx = np.array(sorted(part, key=lambda i: all_fixes.ts_us[i]), dtype=np.intp)
        part_ts = all_fixes.ts_us[idx] / 1e6
        start = replay_state(state, float(part_ts.min())) if newest is not None else None
        if newest is not None and part_ts.min() < newest and start is not None:
            since = start["last_ts"]
            rows = sorted(
                [i for i in stored if all_fixes.ts_us[i] / 1e6 > since] + list(idx),
                key=lambda i: all_fixes.ts_us[i],
            )
            out = evaluate_subject(PROFILE, start, all_fixes.select(np.array(rows)), NOW)
            kept = {k: v for k, v in alerts.items() if int(k.rsplit(":", 1)[1]) <= since * 1000}
            _apply(kept, out.alert_ops)
            alerts = kept
        else:
            out = evaluate_subject(PROFILE, state, all_fixes.select(idx), NOW)
            _apply(alerts, out.alert_ops)
        state = out.state
        stored.extend(int(i) for i in idx)
    return alerts


@settings(max_examples=60, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["in", "out", "edge"]), min_size=2, max_size=30),
    seed=st.integers(min_value=0, max_value=10_000),
    parts=st.integers(min_value=1, max_value=6),
)
def test_late_fixes_are_replayed_to_the_in_order_outcome(
    pattern: list[str], seed: int, parts: int
) -> None:
    where = {"in": IN, "out": OUT, "edge": (116.4, 39.9)}
    fixes = fixes_of([where[p] for p in pattern], step=45.0)
    in_order = _arrive(fixes, [list(range(len(fixes)))])
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(fixes)).tolist()
    groups = [g.tolist() for g in np.array_split(np.array(shuffled), parts) if len(g)]
    assert _arrive(fixes, groups) == in_order


def test_the_policy_speed_limit_decides_what_is_a_spike() -> None:
    jump = [IN] * 4 + [OUT] + [IN] * 4  # ~25 km away and back, 10 s apart: ~2.5 km/s
    strict_limit = fixes_of(jump, step=10.0)
    evaluate_subject(PROFILE, {}, strict_limit, NOW)
    assert strict_limit.flags[4] & FixFlag.SPIKE
    lax = dataclasses.replace(PROFILE, max_speed_mps=5000.0)
    lax_limit = fixes_of(jump, step=10.0)
    evaluate_subject(lax, {}, lax_limit, NOW)
    assert not lax_limit.flags[4] & FixFlag.SPIKE


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([1.0, 5.0, 10.0, 60.0]),  # seconds since the previous fix
            st.sampled_from(["near", "near", "near", "jump", "edge"]),
            st.sampled_from([0, 0, 0, FixFlag.MOCK]),
        ),
        min_size=1,
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=29), max_size=6),
)
def test_the_evaluator_flags_the_spikes_the_kernel_rule_finds(
    steps: list[tuple[float, str, int]], cuts: list[int]
) -> None:
    """Whichever path a commit takes (the array form when no step is implausible, the screen
    otherwise, a suspect held across commits), the spikes flagged are those of
    ``geofences.spikes.SpikeScreen`` over the whole track."""
    where = {"near": IN, "jump": (116.33, 39.90), "edge": (116.4, 39.9)}
    times = list(itertools.accumulate([gap for gap, _, _ in steps], initial=T0))[1:]
    fixes = SubjectFixes(
        ts_us=np.array([round(t * 1e6) for t in times], dtype=np.int64),
        lon=np.array([where[w][0] for _, w, _ in steps]),
        lat=np.array([where[w][1] for _, w, _ in steps]),
        accuracy_m=np.full(len(steps), 10.0),
        flags=np.array([f for _, _, f in steps], dtype=np.int16),
        key=np.arange(len(steps), dtype=np.int32),
        device=np.ones(len(steps), dtype=np.int32),
        owner=np.zeros(len(steps), dtype=np.int32),
    )
    screen: SpikeScreen[Evidence] = SpikeScreen(PROFILE.max_speed_mps)
    track = [
        Evidence(t, float(x), float(y), 10.0)
        for t, x, y in zip(times, fixes.lon, fixes.lat, strict=True)
    ]
    expected: set[int] = set()
    row = {id(fix): i for i, fix in enumerate(track)}
    for i, fix in enumerate(track):
        decided, spike, _ = screen.push(fix, not steps[i][2])
        if spike:
            assert decided is not None
            expected.add(row[id(decided)])

    found: set[int] = set()
    state: dict[str, Any] = {}
    bounds = [0, *sorted({c for c in cuts if c < len(steps)}), len(steps)]
    for a, b in itertools.pairwise(bounds):
        part = fixes.select(np.arange(a, b))
        out = evaluate_subject(PROFILE, state, part, NOW)
        found |= {a + i for i in np.flatnonzero(part.flags & FixFlag.SPIKE).tolist()}
        found |= {int(key) for _, _, key in out.spikes}  # a suspect held from a commit before
        state = out.state
    event("spikes" if expected else "no spike")
    assert found == expected
