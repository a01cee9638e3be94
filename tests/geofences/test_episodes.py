"""Tests for geofences.episodes: opening, closing, UNKNOWN, late fixes, batch equals stream."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofences.episodes import (
    BreachClosed,
    BreachOpened,
    Condition,
    EpisodeConfig,
    EpisodeState,
    Event,
    Evidence,
    LateFix,
    advance,
    run,
)

pytestmark = pytest.mark.unit

OK, BREACH, UNKNOWN = Condition.OK, Condition.BREACH, Condition.UNKNOWN
CFG = EpisodeConfig(confirm_s=300.0, min_fixes=2)


def fixes(*items: tuple[float, Condition]) -> list[tuple[float, Condition, Evidence]]:
    return [(t, c, Evidence(t, 117.2 + t * 1e-6, 39.1, 15.0)) for t, c in items]


def test_opens_after_confirmation_time_with_true_start() -> None:
    state, events = run(
        EpisodeState(), fixes((0, OK), (60, BREACH), (200, BREACH), (360, BREACH)), CFG
    )
    assert len(events) == 1
    opened = events[0]
    assert isinstance(opened, BreachOpened)
    assert (opened.started_at, opened.confirmed_at, opened.fixes) == (60, 360, 3)
    assert opened.first.ts == 60
    assert opened.last.ts == 360
    assert state.in_breach
    assert state.count == 0


def test_needs_min_fixes_even_after_long_time() -> None:
    cfg = EpisodeConfig(confirm_s=60.0, min_fixes=3)
    _, events = run(EpisodeState(), fixes((0, BREACH), (1000, BREACH)), cfg)
    assert events == []
    _, events = run(EpisodeState(), fixes((0, BREACH), (1000, BREACH), (1001, BREACH)), cfg)
    assert [type(e) for e in events] == [BreachOpened]


def test_lone_outlier_never_opens() -> None:
    _, events = run(EpisodeState(), fixes((0, OK), (10, BREACH), (20, OK), (4000, OK)), CFG)
    assert events == []
    with pytest.raises(ValueError, match="at least 2"):
        EpisodeConfig(confirm_s=0.0, min_fixes=1)


def test_ok_in_between_resets_the_streak() -> None:
    _, events = run(
        EpisodeState(), fixes((0, BREACH), (200, OK), (250, BREACH), (400, BREACH)), CFG
    )
    assert events == []
    _, events = run(
        EpisodeState(),
        fixes((0, BREACH), (200, OK), (250, BREACH), (400, BREACH), (560, BREACH)),
        CFG,
    )
    assert [(e.started_at, e.confirmed_at) for e in events if isinstance(e, BreachOpened)] == [
        (250, 560)
    ]


def test_unknown_neither_opens_closes_nor_resets() -> None:
    state, events = run(
        EpisodeState(), fixes((0, BREACH), (100, UNKNOWN), (200, UNKNOWN), (300, BREACH)), CFG
    )
    assert [type(e) for e in events] == [BreachOpened]
    assert state.last_ts == 300
    # While in breach, UNKNOWN does not close and does not interrupt a closing streak.
    state, events = run(state, fixes((400, OK), (500, UNKNOWN), (700, OK)), CFG)
    assert len(events) == 1
    closed = events[0]
    assert isinstance(closed, BreachClosed)
    assert (closed.ended_at, closed.confirmed_at) == (400, 700)
    assert not state.in_breach
    # UNKNOWN alone never does anything.
    state, events = run(EpisodeState(), fixes(*[(t, UNKNOWN) for t in range(0, 5000, 100)]), CFG)
    assert events == []
    assert state == EpisodeState(last_ts=4900)


def test_breach_during_closing_resets_the_close() -> None:
    state, _ = run(EpisodeState(), fixes((0, BREACH), (300, BREACH)), CFG)
    state, events = run(state, fixes((400, OK), (600, BREACH), (650, OK), (900, OK)), CFG)
    assert events == []
    assert state.in_breach
    state, events = run(state, fixes((950, OK)), CFG)
    assert [(type(e), e.ended_at) for e in events if isinstance(e, BreachClosed)] == [
        (BreachClosed, 650)
    ]


def test_late_fix_is_reported_and_ignored() -> None:
    state, _ = run(EpisodeState(), fixes((0, BREACH), (100, BREACH)), CFG)
    late = fixes((50, OK))[0]
    new_state, events = advance(state, *late, CFG)
    assert new_state == state
    assert events == [LateFix(50, OK, late[2])]


def test_equal_timestamps_in_arrival_order() -> None:
    cfg = EpisodeConfig(confirm_s=0.0)
    _, events = run(EpisodeState(), fixes((10, BREACH), (10, BREACH)), cfg)
    assert [type(e) for e in events] == [BreachOpened]
    # An OK at the same instant between them resets the streak: arrival order decides.
    _, events = run(EpisodeState(), fixes((10, BREACH), (10, OK), (10, BREACH)), cfg)
    assert events == []


def test_rejects_mismatched_evidence_and_bad_config() -> None:
    with pytest.raises(ValueError, match=r"evidence\.ts"):
        advance(EpisodeState(), 5.0, BREACH, Evidence(6.0, 0, 0, 1), CFG)
    with pytest.raises(ValueError, match="confirm_s"):
        EpisodeConfig(confirm_s=-1.0)


def test_state_round_trips_through_json() -> None:
    state, _ = run(EpisodeState(), fixes((0, BREACH), (100, BREACH)), CFG)
    nan_evidence = Evidence(5.0, 1.0, 2.0, float("nan"))
    state2, _ = advance(EpisodeState(), 5.0, BREACH, nan_evidence, CFG)
    for s in (EpisodeState(), state, state2):
        back = EpisodeState.from_dict(json.loads(json.dumps(s.to_dict(), allow_nan=False)))
        assert back.to_dict() == s.to_dict()
    with pytest.raises(ValueError, match="together"):
        EpisodeState.from_dict({"in_breach": False, "first": None, "last": None, "count": 3})


condition_items = st.lists(
    st.tuples(st.integers(-30, 400), st.sampled_from([OK, BREACH, UNKNOWN])), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(
    condition_items,
    st.lists(st.integers(1, 10), max_size=30),
    st.floats(0.0, 600.0),
    st.integers(2, 4),
)
def test_batch_equals_one_by_one_across_restarts(
    steps: list[tuple[int, Condition]], cuts: list[int], confirm: float, min_fixes: int
) -> None:
    cfg = EpisodeConfig(confirm_s=confirm, min_fixes=min_fixes)
    # Times drift forward with occasional steps back, so late fixes occur too.
    t = 0.0
    items = []
    for dt_, cond in steps:
        t += dt_
        items.append((t, cond, Evidence(t, 117.0, 39.0, 10.0)))
    batch_state, batch_events = run(EpisodeState(), items, cfg)

    state = EpisodeState()
    streamed: list[Event] = []
    for ts, cond, ev in items:
        state, new = advance(state, ts, cond, ev, cfg)
        streamed.extend(new)
    assert streamed == batch_events
    assert state == batch_state

    # Chunks separated by a JSON round trip of the state (a service restart) change nothing.
    state, chunked, pos = EpisodeState(), [], 0
    for size in [*cuts, len(items)]:
        state = EpisodeState.from_dict(json.loads(json.dumps(state.to_dict())))
        state, new = run(state, items[pos : pos + size], cfg)
        chunked.extend(new)
        pos += size
    assert chunked == batch_events

    # Opened and closed events alternate, and each opening is confirmed as the rules say.
    kinds = [type(e) for e in batch_events if not isinstance(e, LateFix)]
    assert kinds == [BreachOpened, BreachClosed] * (len(kinds) // 2) + [BreachOpened] * (
        len(kinds) % 2
    )
    for e in batch_events:
        if isinstance(e, BreachOpened):
            assert e.fixes >= min_fixes
            assert e.confirmed_at - e.started_at >= confirm
