"""Tests for geofences.spikes: the spike rule the evaluator runs (a suspect is held until the
next fix decides it), its plausibility test and the array forms of that test."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofences.classify import geodesic_distance_m, metres_per_degree
from geofences.episodes import Evidence
from geofences.spikes import SpikeScreen, required_speed, steepest_steps, step_speeds

pytestmark = pytest.mark.unit

GEOLIFE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "geolife" / "Data"
HEADER_LINES = 6
MAX_SPEED = 70.0


@dataclass(frozen=True, slots=True)
class Fix:
    ts: float
    lon: float
    lat: float
    accuracy_m: float
    row: int


def screen_track(
    ts: npt.ArrayLike,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    accuracy_m: npt.ArrayLike,
    deciding: list[bool] | None = None,
) -> tuple[list[bool], list[int]]:
    """Every fix of a track through one screen: which were spikes, and the order fixes were
    released in (a suspect still held at the end is in neither)."""
    fixes = [
        Fix(float(t), float(x), float(y), float(a), i)
        for i, (t, x, y, a) in enumerate(
            zip(*(np.asarray(v, dtype=np.float64) for v in (ts, lon, lat, accuracy_m)), strict=True)
        )
    ]
    spikes = [False] * len(fixes)
    released: list[int] = []
    screen: SpikeScreen[Fix] = SpikeScreen(MAX_SPEED)
    for fix in fixes:
        decided, spike, held = screen.push(fix, True if deciding is None else deciding[fix.row])
        if decided is not None:
            if spike:
                spikes[decided.row] = True
            else:
                released.append(decided.row)
        if not held:
            released.append(fix.row)
    return spikes, released


def load_plt(path: Path) -> tuple[npt.NDArray[np.float64], ...]:
    """A GeoLife .plt file as (ts, lon, lat) arrays; times are UTC."""
    rows = [line.split(",") for line in path.read_text().splitlines()[HEADER_LINES:] if line]
    lat = np.array([float(r[0]) for r in rows])
    lon = np.array([float(r[1]) for r in rows])
    ts = np.array([dt.datetime.fromisoformat(f"{r[5]}T{r[6]}+00:00").timestamp() for r in rows])
    return ts, lon, lat


def track(
    *points: tuple[float, float],
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(seconds, metres east) pairs along one parallel near Beijing, 10 m accuracy."""
    east, _ = metres_per_degree(40.0)
    ts = [p[0] for p in points]
    lon = [116.3 + p[1] / east for p in points]
    return ts, lon, [40.0] * len(points), [10.0] * len(points)


def test_geolife_traces_have_almost_no_spikes() -> None:
    files = sorted(GEOLIFE.glob("00[0134]/Trajectory/*.plt"))
    if not files:
        pytest.skip(f"GeoLife sample data not found under {GEOLIFE}")
    flagged = total = 0
    for path in files:
        ts, lon, lat = load_plt(path)
        spikes, _ = screen_track(ts, lon, lat, np.full(len(ts), 10.0))
        flagged += sum(spikes)
        total += len(ts)
    assert total > 30_000
    assert flagged / total < 1e-3


def test_geolife_cold_start_after_a_silence_is_left_to_the_confirmation_time() -> None:
    """The first fix after 4.5 hours of silence lands 1.5 km from where the track goes on: a
    cold start. It is plausible from the fix before the silence, so it is taken as it is;
    the fix that brings the track back is held, and released because the next one agrees."""
    path = GEOLIFE / "001" / "Trajectory" / "20081023055305.plt"
    if not path.exists():
        pytest.skip(f"GeoLife sample data not found at {path}")
    ts, lon, lat = load_plt(path)
    # Line 155 of the file (1-based, after 6 header lines) is the fix at 10:32:53.
    jump = 155 - HEADER_LINES - 1
    assert dt.datetime.fromtimestamp(ts[jump], dt.UTC).strftime("%H:%M:%S") == "10:32:53"
    assert ts[jump] - ts[jump - 1] > 4 * 3600
    spikes, released = screen_track(ts, lon, lat, np.full(len(ts), 10.0))
    assert not any(spikes)
    at = released.index(jump)
    assert released[at : at + 3] == [jump, jump + 1, jump + 2]
    assert set(range(len(ts))) - set(released) <= {len(ts) - 1}  # at most the last is held


def test_jump_and_return_inside_a_track() -> None:
    ts, lon, lat, acc = track((0, 0), (5, 20), (10, 2_000), (15, 60), (20, 80))
    spikes, released = screen_track(ts, lon, lat, acc)
    assert spikes == [False, False, True, False, False]
    assert released == [0, 1, 3, 4]


def test_a_real_move_is_not_a_spike() -> None:
    # A car at 20 m/s, then a 1.5 km step over 60 s (25 m/s): all plausible.
    ts, lon, lat, acc = track((0, 0), (5, 100), (65, 1_600), (70, 1_700))
    assert screen_track(ts, lon, lat, acc) == ([False] * 4, [0, 1, 2, 3])
    # A jump the track goes on from: held, then released when the next fix agrees with it.
    ts, lon, lat, acc = track((0, 0), (5, 50), (10, 3_000), (15, 3_050), (20, 3_100))
    assert screen_track(ts, lon, lat, acc) == ([False] * 5, [0, 1, 2, 3, 4])


def test_accuracy_absorbs_apparent_speed() -> None:
    ts, lon, lat, _ = track((0, 0), (1, 400), (2, 0))
    assert screen_track(ts, lon, lat, [10, 10, 10])[0] == [False, True, False]
    # A coarse 360 m fix leaves only 30 m to explain in one second.
    assert screen_track(ts, lon, lat, [10, 360, 10])[0] == [False, False, False]


def test_cold_start_at_the_first_fix() -> None:
    # The first fix is 1.5 km off and the track starts somewhere else: with no fix before
    # it, nothing can show it wrong. The next fix is held, and the one after clears it.
    ts, lon, lat, acc = track((0, 1_500), (7, 30), (12, 40), (17, 50))
    assert screen_track(ts, lon, lat, acc) == ([False] * 4, [0, 1, 2, 3])


def test_the_last_suspect_waits_for_the_next_fix() -> None:
    ts, lon, lat, acc = track((0, 0), (5, 20), (10, 2_000))
    spikes, released = screen_track(ts, lon, lat, acc)
    assert spikes == [False, False, False]
    assert released == [0, 1]  # the jump is still held


def test_fixes_that_do_not_decide_are_never_held_but_decide_a_suspect() -> None:
    deciding = [True, True, True, False, True]
    # A mock fix back home after the jump shows the jump was a spike.
    spikes, released = screen_track(
        *track((0, 0), (5, 20), (10, 2_000), (15, 30), (20, 40)), deciding
    )
    assert spikes == [False, False, True, False, False]
    assert released == [0, 1, 3, 4]
    # A mock fix 5 km away is released at once, never held however far it is, and decides
    # the suspect before it: not plausible from the reference either, so the suspect is
    # cleared (and becomes the reference).
    spikes, released = screen_track(
        *track((0, 0), (5, 20), (10, 2_000), (15, 5_000), (20, 2_050)), deciding
    )
    assert spikes == [False] * 5
    assert released == [0, 1, 2, 3, 4]


def test_required_speed_is_symmetric_and_close_to_geodesic() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        lon, lat = rng.uniform(73.0, 135.0), rng.uniform(18.0, 53.0)
        a = Evidence(0.0, lon, lat, 0.0)
        b = Evidence(1.0, lon + rng.uniform(-0.5, 0.5), lat + rng.uniform(-0.5, 0.5), 0.0)
        distance = float(geodesic_distance_m(a.lon, a.lat, b.lon, b.lat))
        assert required_speed(a, b) == required_speed(b, a)
        assert abs(required_speed(a, b) - distance) <= 0.006 * distance


def test_a_gap_under_a_second_counts_as_a_second() -> None:
    a, b = Evidence(10.0, 116.3, 40.0, 0.0), Evidence(10.0, 116.3001, 40.0, 0.0)
    assert required_speed(a, b) == pytest.approx(8.52, abs=0.01)


steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 5.0, 30.0, 20_000.0]),  # seconds since the previous fix
        st.floats(-3_000.0, 3_000.0),  # metres: mostly jitter, sometimes a jump
        st.sampled_from([0.0, 10.0, 300.0]),  # accuracy
        st.booleans(),  # deciding
    ),
    min_size=2,
    max_size=40,
)


def fixes_of(generated: list[tuple[float, float, float, bool]]) -> list[Fix]:
    east, _ = metres_per_degree(40.0)
    t, x, out = 0.0, 0.0, []
    for i, (gap, jump, acc, _) in enumerate(generated):
        t += gap
        x = jump if abs(jump) > 2_500 else x + jump / 100
        out.append(Fix(t, 116.3 + x / east, 40.0, acc, i))
    return out


@settings(max_examples=200, deadline=None)
@given(steps, st.lists(st.integers(1, 39), max_size=8))
def test_a_screen_rebuilt_from_its_reference_and_suspect_goes_on_unchanged(
    generated: list[tuple[float, float, float, bool]], cuts: list[int]
) -> None:
    """The state is the two fixes: a caller that keeps them between commits screens as if
    all fixes came in one."""
    fixes = fixes_of(generated)
    deciding = [d for *_, d in generated]

    def run(restarts: set[int]) -> list[tuple[int | None, bool, bool]]:
        screen: SpikeScreen[Fix] = SpikeScreen(MAX_SPEED)
        out = []
        for fix in fixes:
            if fix.row in restarts:
                screen = SpikeScreen(MAX_SPEED, screen.ref, screen.suspect)
            decided, spike, held = screen.push(fix, deciding[fix.row])
            out.append((None if decided is None else decided.row, spike, held))
            assert screen.suspect is (fix if held else None)
        return out

    assert run(set(cuts)) == run(set())


@settings(max_examples=200, deadline=None)
@given(steps, st.lists(st.integers(1, 39), max_size=8))
def test_the_array_forms_agree_with_the_scalar_test(
    generated: list[tuple[float, float, float, bool]], cuts: list[int]
) -> None:
    fixes = fixes_of(generated)
    ts, lon, lat, acc = (np.array([getattr(f, k) for f in fixes]) for k in Fix.__slots__[:4])
    speeds = step_speeds(ts, lon, lat, acc)
    expected = [required_speed(a, b) for a, b in itertools.pairwise(fixes)]
    assert speeds.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-9)
    # Runs cut anywhere: each run's steepest step is its own, the steps between runs left out.
    starts = [0, *sorted(c for c in set(cuts) if c < len(fixes))]
    bounds = [*starts, len(fixes)]
    for i, steepest in enumerate(steepest_steps(ts, lon, lat, acc, starts).tolist()):
        run = speeds[bounds[i] : bounds[i + 1] - 1]
        assert steepest == (run.max() if len(run) else 0.0)


def test_no_implausible_step_means_nothing_is_held() -> None:
    """Why a caller may check a track's steps on arrays and skip the screen."""
    ts, lon, lat, acc = track((0, 0), (5, 20), (65, 1_600), (70, 1_650), (75, 1_700))
    assert (step_speeds(*(np.array(v, dtype=np.float64) for v in (ts, lon, lat, acc))) <= 70).all()
    assert screen_track(ts, lon, lat, acc) == ([False] * 5, [0, 1, 2, 3, 4])
