"""Evaluation with approved leaves: the destination counts as inside while a leave runs, the
grace after its end decides nothing while the subject is away, and a stay beyond it raises
leave_overdue; batching never changes the outcome."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import pytest
import shapely

from correction_monitor.domain.alerts import AlertOpen
from correction_monitor.domain.fix_arrays import SubjectFixes
from correction_monitor.ingest.evaluate import evaluate_quiet, evaluate_subject, replay_state
from correction_monitor.ingest.profiles import LeaveArea
from geofences.classify import PreparedArea, classify
from tests.unit.test_evaluate import IN, NOW, OUT, PROFILE, T0, summary

pytestmark = pytest.mark.unit

ELSEWHERE = (116.30, 39.50)  # outside the area and the destination
DESTINATION = PreparedArea(shapely.box(116.5, 39.8, 116.7, 40.0))  # holds OUT
GRACE = PROFILE.level_policy.leave_overdue_grace_s
LEAVE_START, LEAVE_END = T0 + 3600.0, T0 + 7200.0
WITH_LEAVE = dataclasses.replace(
    PROFILE, leaves=(LeaveArea(41, LEAVE_START, LEAVE_END, DESTINATION),)
)


def at(points: list[tuple[float, tuple[float, float]]]) -> SubjectFixes:
    """Fixes at (time, position) pairs, in time order."""
    n = len(points)
    return SubjectFixes(
        ts_us=np.array([round(t * 1e6) for t, _ in points], dtype=np.int64),
        lon=np.array([p[0] for _, p in points]),
        lat=np.array([p[1] for _, p in points]),
        accuracy_m=np.full(n, 10.0),
        flags=np.zeros(n, dtype=np.int16),
        key=np.arange(n, dtype=np.int32),
        device=np.ones(n, dtype=np.int32),
        owner=np.zeros(n, dtype=np.int32),
    )


def run(t0: float, n: int, where: tuple[float, float]) -> list[tuple[float, tuple[float, float]]]:
    return [(t0 + 60.0 * i, where) for i in range(n)]


def evaluate(points: list[tuple[float, tuple[float, float]]], profile: Any = WITH_LEAVE) -> Any:
    return evaluate_subject(profile, {}, at(points), NOW)


def test_fixes_at_the_destination_while_the_leave_runs_are_inside() -> None:
    points = run(T0, 3, IN) + run(LEAVE_START, 30, OUT)
    assert evaluate(points).alert_ops == []
    # Without the leave the same fixes are a departure.
    assert [op.type for op in evaluate(points, PROFILE).alert_ops] == ["left_activity_area"]


def test_elsewhere_during_the_leave_is_an_ordinary_departure() -> None:
    points = run(T0, 3, IN) + run(LEAVE_START, 5, OUT) + run(LEAVE_START + 600, 5, ELSEWHERE)
    assert [op.type for op in evaluate(points).alert_ops] == ["left_activity_area"]


def test_at_the_destination_before_the_leave_starts_is_a_departure_ended_by_its_start() -> None:
    points = run(LEAVE_START - 600, 20, OUT)
    ops = summary(evaluate(points).alert_ops)
    assert [(kind, type_) for kind, type_, _ in ops] == [
        ("open", "left_activity_area"),
        ("end", "left_activity_area"),
    ]


def test_still_away_after_the_end_and_the_grace_is_leave_overdue() -> None:
    points = (
        run(LEAVE_START, 3, OUT)
        + run(LEAVE_END - 120, 4, OUT)  # across the end
        + run(LEAVE_END + 600, 5, OUT)  # within the grace: decides nothing
        + run(LEAVE_END + GRACE + 60, 5, OUT)
        + run(LEAVE_END + GRACE + 3600, 4, IN)
    )
    out = evaluate(points)
    assert [(k, t) for k, t, _ in summary(out.alert_ops)] == [
        ("open", "leave_overdue"),
        ("end", "leave_overdue"),
    ]
    opened = out.alert_ops[0]
    assert isinstance(opened, AlertOpen)
    assert opened.started_at.timestamp() == LEAVE_END + GRACE + 60
    assert opened.evidence["leave"]["leave_id"] == 41
    assert opened.evidence["leave"]["last_inside_at"] is None


def test_back_after_the_leave_then_away_again_is_an_ordinary_departure() -> None:
    points = (
        run(LEAVE_START, 3, OUT)
        + run(LEAVE_END + 60, 2, IN)  # back home within the grace
        + run(LEAVE_END + 300, 10, ELSEWHERE)  # and off again, still within it
    )
    out = evaluate(points)
    assert [op.type for op in out.alert_ops] == ["left_activity_area"]
    assert out.alert_ops[0].started_at.timestamp() == LEAVE_END + 300
    assert out.state["back"] == LEAVE_END + 120


def test_any_batching_gives_the_same_alerts() -> None:
    points = (
        run(T0, 3, IN)
        + run(LEAVE_START - 600, 20, OUT)
        + run(LEAVE_END - 120, 10, OUT)
        + run(LEAVE_END + GRACE + 60, 5, OUT)
        + run(LEAVE_END + GRACE + 1800, 4, IN)
    )
    whole = summary(evaluate(points).alert_ops)
    assert [t for _, t, _ in whole] == [
        "left_activity_area",
        "left_activity_area",
        "leave_overdue",
        "leave_overdue",
    ]
    fixes = at(points)
    for cuts in itertools.combinations(range(1, len(points)), 2):
        state: dict[str, Any] = {}
        ops: list[Any] = []
        for a, b in itertools.pairwise([0, *cuts, len(points)]):
            out = evaluate_subject(WITH_LEAVE, state, fixes.select(np.arange(a, b)), NOW)
            state, ops = out.state, ops + out.alert_ops
        assert summary(ops) == whole, cuts


def test_a_replay_from_a_checkpoint_in_the_grace_remembers_the_subject_came_back() -> None:
    home_again = run(LEAVE_START, 3, OUT) + run(LEAVE_END + 60, 2, IN)
    state = evaluate(home_again).state
    checkpoint = state["checkpoints"][-1]
    assert checkpoint[0] == LEAVE_END + 120
    assert checkpoint[3] == LEAVE_END + 120
    start = replay_state(state, LEAVE_END + 3000.0)
    assert start is not None
    assert start["back"] == LEAVE_END + 120
    later = at(run(LEAVE_END + GRACE + 60, 5, ELSEWHERE))
    out = evaluate_subject(WITH_LEAVE, start, later, NOW)
    # Back since the end: leaving again is an ordinary departure, not an overdue return.
    assert [op.type for op in out.alert_ops] == ["left_activity_area"]
    start["back"] = None
    out = evaluate_subject(WITH_LEAVE, start, later, NOW)
    assert [op.type for op in out.alert_ops] == ["leave_overdue"]


def test_the_quiet_path_is_left_only_while_a_leave_can_matter() -> None:
    home = at(run(T0, 3, IN))
    activity = classify(PROFILE.activity_area, home.lon, home.lat, home.accuracy_m)  # type: ignore[arg-type]
    # A leave yet to start changes nothing for earlier fixes.
    assert evaluate_quiet(WITH_LEAVE, {}, home, activity) is not None
    # After its end, until the subject is seen back, the full evaluation runs.
    back = at(run(LEAVE_END + 60, 3, IN))
    m = classify(PROFILE.activity_area, back.lon, back.lat, back.accuracy_m)  # type: ignore[arg-type]
    assert evaluate_quiet(WITH_LEAVE, {"last_ts": LEAVE_END}, back, m) is None
    out = evaluate_subject(WITH_LEAVE, {}, back, NOW)
    assert out.state["back"] == LEAVE_END + 180
    later = at(run(LEAVE_END + 600, 3, IN))
    m = classify(PROFILE.activity_area, later.lon, later.lat, later.accuracy_m)  # type: ignore[arg-type]
    quiet = evaluate_quiet(WITH_LEAVE, out.state, later, m)
    assert quiet is not None
    assert quiet.state["back"] == LEAVE_END + 180


def test_a_subject_without_leave_keeps_the_state_it_always_had() -> None:
    out = evaluate(run(T0, 3, IN), PROFILE)
    assert "back" not in out.state
    assert "open_type" not in out.state
    assert all(len(c) <= 3 for c in out.state["checkpoints"])
