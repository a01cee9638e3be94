"""Tests for geofences.spikes: jump-and-return detection, batch and streaming."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofences.classify import metres_per_degree
from geofences.episodes import Evidence
from geofences.spikes import SpikeFilter, SpikeState, detect_spikes

pytestmark = pytest.mark.unit

GEOLIFE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "geolife" / "Data"
HEADER_LINES = 6


def load_plt(path: Path) -> tuple[npt.NDArray[np.float64], ...]:
    """A GeoLife .plt file as (ts, lon, lat) arrays; times are UTC."""
    rows = [line.split(",") for line in path.read_text().splitlines()[HEADER_LINES:] if line]
    lat = np.array([float(r[0]) for r in rows])
    lon = np.array([float(r[1]) for r in rows])
    ts = np.array([dt.datetime.fromisoformat(f"{r[5]}T{r[6]}+00:00").timestamp() for r in rows])
    return ts, lon, lat


def test_geolife_cold_start_jump_is_detected() -> None:
    path = GEOLIFE / "001" / "Trajectory" / "20081023055305.plt"
    if not path.exists():
        pytest.skip(f"GeoLife sample data not found at {path}")
    ts, lon, lat = load_plt(path)
    flags = detect_spikes(ts, lon, lat, np.full(len(ts), 10.0))
    # Line 155 of the file (1-based, after 6 header lines) is the fix at 10:32:53.
    jump = 155 - HEADER_LINES - 1
    assert dt.datetime.fromtimestamp(ts[jump], dt.UTC).strftime("%H:%M:%S") == "10:32:53"
    assert flags[jump]
    assert int(flags.sum()) <= 3, np.flatnonzero(flags)


def test_geolife_false_positive_rate_is_low() -> None:
    files = sorted(GEOLIFE.glob("00[0134]/Trajectory/*.plt"))
    if not files:
        pytest.skip(f"GeoLife sample data not found under {GEOLIFE}")
    flagged = total = 0
    for path in files:
        ts, lon, lat = load_plt(path)
        flagged += int(detect_spikes(ts, lon, lat, np.full(len(ts), 10.0)).sum())
        total += len(ts)
    assert total > 30_000
    assert flagged / total < 1e-3


def track(
    *points: tuple[float, float],
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(seconds, metres east) pairs along one parallel near Beijing."""
    east, _ = metres_per_degree(40.0)
    ts = [p[0] for p in points]
    lon = [116.3 + p[1] / east for p in points]
    return ts, lon, [40.0] * len(points), [10.0] * len(points)


def test_jump_and_return_inside_a_track() -> None:
    ts, lon, lat, acc = track((0, 0), (5, 20), (10, 2_000), (15, 60), (20, 80))
    assert detect_spikes(ts, lon, lat, acc).tolist() == [False, False, True, False, False]


def test_a_real_move_is_not_a_spike() -> None:
    # A car at 20 m/s, then a 1.5 km step over 60 s (25 m/s): all plausible.
    ts, lon, lat, acc = track((0, 0), (5, 100), (65, 1_600), (70, 1_700))
    assert not detect_spikes(ts, lon, lat, acc).any()
    # A jump that does not return (the track continues from the new place) is not a spike.
    ts, lon, lat, acc = track((0, 0), (5, 50), (10, 3_000), (15, 3_050), (20, 3_100))
    assert not detect_spikes(ts, lon, lat, acc).any()


def test_accuracy_absorbs_apparent_speed() -> None:
    ts, lon, lat, _ = track((0, 0), (1, 400), (2, 0))
    assert detect_spikes(ts, lon, lat, [10, 10, 10]).tolist() == [False, True, False]
    # A coarse 360 m fix leaves only 30 m to explain in one second.
    assert not detect_spikes(ts, lon, lat, [10, 360, 10]).any()


def test_cold_start_after_gap_and_at_batch_start() -> None:
    # Hours of silence, then a fix 1.5 km off, then the track resumes near the old place.
    ts, lon, lat, acc = track((0, 0), (16_000, 1_500), (16_007, 30), (16_012, 40), (16_017, 50))
    assert detect_spikes(ts, lon, lat, acc).tolist() == [False, True, False, False, False]
    assert detect_spikes(ts[1:], lon[1:], lat[1:], acc[1:]).tolist() == [True, False, False, False]


def test_last_fixes_are_undecided_as_clean() -> None:
    ts, lon, lat, acc = track((0, 0), (5, 20), (10, 2_000))
    assert not detect_spikes(ts, lon, lat, acc).any()


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="time order"):
        detect_spikes([5, 0], [116, 116], [40, 40], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        detect_spikes([0, 5], [116, 116], [40, np.nan], [1, 1])
    with pytest.raises(ValueError, match="one length"):
        detect_spikes([0, 5], [116], [40, 40], [1, 1])
    with pytest.raises(ValueError, match="time order"):
        SpikeFilter().push(SpikeState(prev=Evidence(10, 116, 40, 1)), Evidence(5, 116, 40, 1))


fix_steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 5.0, 30.0, 20_000.0]),
        st.floats(-3_000.0, 3_000.0),
        st.sampled_from([0.0, 10.0, 300.0]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(fix_steps, st.lists(st.integers(1, 5), max_size=20))
def test_streaming_equals_batch(steps: list[tuple[float, float, float]], cuts: list[int]) -> None:
    east, _ = metres_per_degree(40.0)
    t, x = 0.0, 0.0
    fixes = []
    for dt_, jump, acc in steps:
        t += dt_
        # Mostly jitter, sometimes a jump that the next step may undo.
        x = jump if abs(jump) > 2_500 else x + jump / 100
        fixes.append(Evidence(t, 116.3 + x / east, 40.0, acc))
    expected = detect_spikes(
        [f.ts for f in fixes],
        [f.lon for f in fixes],
        [f.lat for f in fixes],
        [f.accuracy_m for f in fixes],
    ).tolist()
    f = SpikeFilter()
    state, out = SpikeState(), []
    for i, fix in enumerate(fixes):
        if i in cuts:  # a restart: the state survives as JSON
            state = SpikeState.from_dict(json.loads(json.dumps(state.to_dict())))
        state, done = f.push(state, fix)
        assert len(state.pending) <= 2
        out.extend(done)
    state, done = f.flush(state)
    out.extend(done)
    assert [e for e, _ in out] == fixes
    assert [s for _, s in out] == expected
