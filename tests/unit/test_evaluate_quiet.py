"""``evaluate_quiet`` is a shortcut: whenever it answers, it answers what ``evaluate_subject``
would have, and it answers for the common case of fixes that change nothing."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from correction_monitor.domain.fix_arrays import SubjectFixes
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.ingest.evaluate import (
    SCALAR_CHAIN_MAX,
    _implausible_chain,
    evaluate_quiet,
    evaluate_subject,
    steepest_steps,
)
from geofences.classify import classify
from tests.unit.test_evaluate import IN, NOW, OUT, PROFILE, T0, fixes_of

pytestmark = pytest.mark.unit

NEAR_EDGE = (116.3999, 39.90)  # accuracy disc across the boundary: uncertain


def membership(fixes: SubjectFixes) -> Any:
    assert PROFILE.activity_area is not None
    return classify(PROFILE.activity_area, fixes.lon, fixes.lat, fixes.accuracy_m)


def run_both(state: dict[str, Any], fixes: SubjectFixes) -> tuple[Any, Any]:
    quick = evaluate_quiet(PROFILE, copy.deepcopy(state), fixes, membership(fixes))
    # As the committer calls it, with the steepest step computed for the whole group.
    steepest = steepest_steps(fixes, [0], [len(fixes)])[0]
    grouped = evaluate_quiet(PROFILE, copy.deepcopy(state), fixes, membership(fixes), steepest)
    assert (grouped is None) == (quick is None)
    if quick is not None and grouped is not None:
        assert grouped.state == quick.state
    full_fixes = fixes.select(np.arange(len(fixes)))
    full = evaluate_subject(
        PROFILE, copy.deepcopy(state), full_fixes, NOW, activity=membership(fixes)
    )
    return quick, full


def test_fixes_inside_while_inside_take_the_shortcut() -> None:
    first = evaluate_subject(PROFILE, {}, fixes_of([IN, IN]), NOW)
    more = fixes_of([IN, IN, IN], t0=T0 + 600)
    quick, full = run_both(first.state, more)
    assert quick is not None
    assert quick.state == full.state
    assert quick.alert_ops == full.alert_ops == []


def test_many_fixes_take_the_array_form_of_the_shortcut() -> None:
    first = evaluate_subject(PROFILE, {}, fixes_of([IN] * 3), NOW)
    more = fixes_of([IN, (116.3005, 39.9)] * 10, t0=T0 + 600, step=30.0)
    more.flags[::3] = FixFlag.MOCK
    quick, full = run_both(first.state, more)
    assert quick is not None
    assert quick.state == full.state
    breach = fixes_of([IN] * 11 + [OUT], t0=T0 + 600)
    assert evaluate_quiet(PROFILE, first.state, breach, membership(breach)) is None
    # The same breach by a mock fix cannot move the episode: still the shortcut.
    breach.flags[-1] = FixFlag.MOCK
    quick, full = run_both(first.state, breach)
    assert quick is not None
    assert quick.state == full.state


@pytest.mark.parametrize(
    ("history", "new", "why"),
    [
        ([IN], [OUT], "a fix towards a breach"),
        ([OUT, OUT, OUT, OUT], [IN], "a fix back in while in breach"),
        ([IN, IN], [IN, OUT, IN], "a jump and return (a spike suspect)"),
    ],
)
def test_anything_that_may_change_an_episode_takes_the_full_path(
    history: list[tuple[float, float]], new: list[tuple[float, float]], why: str
) -> None:
    first = evaluate_subject(PROFILE, {}, fixes_of(history, step=60.0), NOW)
    later = fixes_of(new, t0=T0 + 60.0 * len(history))
    assert evaluate_quiet(PROFILE, first.state, later, membership(later)) is None, why


def test_a_late_fix_takes_the_full_path() -> None:
    first = evaluate_subject(PROFILE, {}, fixes_of([IN, IN], t0=T0 + 600), NOW)
    late = fixes_of([IN], t0=T0)
    assert evaluate_quiet(PROFILE, first.state, late, membership(late)) is None


def test_zones_or_curfew_take_the_full_path() -> None:
    with_zone = dataclasses.replace(PROFILE, zones=(object(),))  # type: ignore[arg-type]
    fixes = fixes_of([IN])
    assert evaluate_quiet(with_zone, {}, fixes, membership(fixes)) is None


POINTS = st.sampled_from([IN, OUT, NEAR_EDGE, (116.39, 39.9), (117.5, 39.9)])


@settings(max_examples=250, deadline=None)
@given(
    history=st.lists(st.tuples(POINTS, st.floats(1.0, 900.0)), max_size=8),
    batch=st.lists(
        st.tuples(POINTS, st.floats(0.0, 900.0), st.sampled_from([0, FixFlag.MOCK, 0, 0])),
        min_size=1,
        max_size=14,
    ),
    acc=st.sampled_from([5.0, 30.0, 2000.0]),
)
def test_whenever_the_shortcut_answers_it_equals_the_full_evaluation(
    history: list[tuple[tuple[float, float], float]],
    batch: list[tuple[tuple[float, float], float, int]],
    acc: float,
) -> None:
    state: dict[str, Any] = {}
    t = T0
    for point, gap in history:
        t += gap
        step = evaluate_subject(PROFILE, state, fixes_of([point], t0=t, acc=acc), NOW)
        state = step.state
    times = np.cumsum([gap for _, gap, _ in batch]) + t - 300.0  # some may be late
    fixes = SubjectFixes(
        ts_us=np.round(times * 1e6).astype(np.int64),
        lon=np.array([p[0] for p, _, _ in batch]),
        lat=np.array([p[1] for p, _, _ in batch]),
        accuracy_m=np.full(len(batch), acc),
        flags=np.array([f for _, _, f in batch], dtype=np.int16),
        key=np.arange(len(batch), dtype=np.int32),
        device=np.ones(len(batch), dtype=np.int32),
        owner=np.zeros(len(batch), dtype=np.int32),
    )
    quick, full = run_both(state, fixes)
    event("shortcut" if quick is not None else "full path")
    if quick is not None:
        assert quick.state == full.state
        assert quick.alert_ops == full.alert_ops == []
        assert quick.spikes == full.spikes == []
        assert quick.late == full.late == 0


@settings(max_examples=300, deadline=None)
@given(
    runs=st.lists(
        st.tuples(
            st.tuples(st.floats(116.0, 116.8), st.floats(39.6, 40.2)),  # where the run starts
            st.lists(  # steps of a few hundred metres at most, some seconds to minutes apart
                st.tuples(
                    st.floats(-0.003, 0.003),
                    st.floats(-0.003, 0.003),
                    st.floats(0.0, 120.0),
                    st.sampled_from([0, 0, 0, FixFlag.MOCK]),
                ),
                min_size=1,
                max_size=9,
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    acc=st.sampled_from([5.0, 30.0, 200.0]),
    speed=st.sampled_from([1.0, 10.0, 80.0]),
)
def test_group_step_speeds_decide_as_each_subjects_own(
    runs: list[tuple[tuple[float, float], list[tuple[float, float, float, int]]]],
    acc: float,
    speed: float,
) -> None:
    """``steepest_steps`` over a whole group decides every run as ``_implausible_chain``
    decides it on that run alone, wherever it gives an answer (runs start far apart, so a
    step counted across two runs would show)."""
    lon = np.concatenate([start[0] + np.cumsum([s[0] for s in steps]) for start, steps in runs])
    lat = np.concatenate([start[1] + np.cumsum([s[1] for s in steps]) for start, steps in runs])
    times = np.concatenate([T0 + np.cumsum([s[2] for s in steps]) for _, steps in runs])
    flags = [s[3] for _, steps in runs for s in steps]
    whole = SubjectFixes(
        ts_us=np.round(times * 1e6).astype(np.int64),
        lon=lon,
        lat=lat,
        accuracy_m=np.full(len(flags), acc),
        flags=np.array(flags, dtype=np.int16),
        key=np.arange(len(flags), dtype=np.int32),
        device=np.ones(len(flags), dtype=np.int32),
        owner=np.zeros(len(flags), dtype=np.int32),
    )
    ends = np.cumsum([len(steps) for _, steps in runs]).tolist()
    starts = [0, *ends[:-1]]
    for (start, end), steepest in zip(
        zip(starts, ends, strict=True), steepest_steps(whole, starts, ends), strict=True
    ):
        fixes = whole.slice(start, end)
        every = (fixes.flags & FixFlag.NOT_DECIDING) == 0
        deciding = np.flatnonzero(every).tolist()
        if steepest is None:
            assert len(fixes) <= SCALAR_CHAIN_MAX or not every.all()
            continue
        own = _implausible_chain(None, fixes, deciding, speed)
        event("implausible" if own else "plausible")
        assert (steepest > speed) == own
        assert _implausible_chain(None, fixes, deciding, speed, steepest) == own


def test_the_group_form_also_sees_a_fix_towards_a_breach() -> None:
    first = evaluate_subject(PROFILE, {}, fixes_of([IN] * 3), NOW)
    breach = fixes_of([IN] * 11 + [OUT], t0=T0 + 600, step=600.0)
    steepest = steepest_steps(breach, [0], [len(breach)])[0]
    assert steepest is not None
    assert steepest < PROFILE.max_speed_mps  # plausible: only the step out can matter
    assert evaluate_quiet(PROFILE, first.state, breach, membership(breach), steepest) is None
    inside = fixes_of([IN] * 12, t0=T0 + 600, step=600.0)
    steepest = steepest_steps(inside, [0], [len(inside)])[0]
    assert evaluate_quiet(PROFILE, first.state, inside, membership(inside), steepest) is not None
