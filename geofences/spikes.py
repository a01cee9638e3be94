"""Spikes: single fixes that the track jumps to and leaves at once, at an implausible speed.

A GPS multipath jump or a bad first fix after a cold start puts one fix far from where the
subject is. Evaluated like any other, such a fix could cut a breach short or help confirm
one, so the rule below holds it back and lets the next fix decide.

Plausibility
------------
Moving from fix ``a`` to fix ``b`` needs :func:`required_speed`: the distance between them,
less both accuracy radii (the positions get the benefit of their discs), over the time
between them, at least one second (most phones stamp whole seconds, so equal stamps mean
"within a second"). The distance is equirectangular about the two fixes' mean latitude: well
under 1 % off at the distances that matter, and a fraction of a geodesic distance's cost.
A step is *implausible* when it needs more than the policy's ``max_speed_mps``.

The rule
--------
Fixes are screened one at a time, in time order (:class:`SpikeScreen`):

1. The *reference* is the last plausible fix that decides (a caller's fixes that never decide,
   such as mock-location or coarse ones, are never held and never become the reference).
2. A deciding fix that is implausible from the reference is held as a *suspect*, not
   released; every other fix is released at once.
3. The next fix, deciding or not, decides the suspect: when that fix is plausible from the
   reference but not from the suspect, the track went back, and the suspect was a spike;
   otherwise the suspect is released (it becomes the reference) before the next fix is
   screened.

Only suspects wait, and only for one fix. Two bad fixes that agree with each other are not
spikes, and neither is a jump after a long silence (a cold start), which is plausible from
the fix before the silence: the first fix after it is then taken as it is, and the fix that
brings the track back is held, then released, because the fix after it is no more plausible
from the jump than it was.
Either way a breach needs at least two fixes over the confirmation time (``geofences.episodes``),
which one wrong fix cannot give.

A track with no implausible step between consecutive deciding fixes holds nothing, so a
caller may check its steps on arrays first (:func:`step_speeds`, :func:`steepest_steps`) and
screen fix by fix only when one is implausible.
"""

from __future__ import annotations

import math
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["Located", "SpikeScreen", "required_speed", "steepest_steps", "step_speeds"]

FloatArray = npt.NDArray[np.float64]

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), metres."""
MIN_GAP_S = 1.0
"""Shortest time between two fixes that a speed is computed over, seconds."""


class Located(Protocol):
    """A fix as the rule sees it: UTC epoch seconds, degrees WGS-84, accuracy radius in metres."""

    @property
    def ts(self) -> float: ...

    @property
    def lon(self) -> float: ...

    @property
    def lat(self) -> float: ...

    @property
    def accuracy_m(self) -> float: ...


F = TypeVar("F", bound=Located)


def required_speed(a: Located, b: Located) -> float:
    """Slowest speed that explains moving from ``a`` to ``b``, given both accuracy discs.

    Parameters
    ----------
    a, b : Located
        Two fixes, in either time order.

    Returns
    -------
    float
        Metres per second (0 when the discs overlap).

    Examples
    --------
    >>> from geofences.episodes import Evidence
    >>> a = Evidence(0.0, 116.30, 40.0, 10.0)
    >>> b = Evidence(10.0, 116.31, 40.0, 10.0)  # 852 m east, 10 s later
    >>> round(required_speed(a, b), 1)
    83.2
    >>> required_speed(a, Evidence(10.0, 116.3001, 40.0, 10.0))  # 8.5 m: within the discs
    0.0
    """
    mean_lat = math.radians((a.lat + b.lat) / 2.0)
    dx = math.radians(b.lon - a.lon) * math.cos(mean_lat)
    dy = math.radians(b.lat - a.lat)
    distance = EARTH_RADIUS_M * math.hypot(dx, dy)
    gap = max(abs(b.ts - a.ts), MIN_GAP_S)
    return max(0.0, distance - a.accuracy_m - b.accuracy_m) / gap


def step_speeds(
    ts: FloatArray, lon: FloatArray, lat: FloatArray, accuracy_m: FloatArray
) -> FloatArray:
    """:func:`required_speed` of each step between consecutive fixes of a track, on arrays.

    Parameters
    ----------
    ts : numpy.ndarray of float
        Fix times, UTC epoch seconds.
    lon, lat : numpy.ndarray of float
        Degrees WGS-84.
    accuracy_m : numpy.ndarray of float
        Accuracy radii, metres.

    Returns
    -------
    numpy.ndarray of float
        Metres per second, one shorter than the inputs: element ``i`` is the step from fix
        ``i`` to fix ``i + 1``.

    Examples
    --------
    >>> speeds = step_speeds(
    ...     np.array([0.0, 10.0, 20.0]),
    ...     np.array([116.30, 116.31, 116.30]),
    ...     np.array([40.0, 40.0, 40.0]),
    ...     np.array([10.0, 10.0, 10.0]),
    ... )
    >>> speeds.round(1).tolist()
    [83.2, 83.2]
    """
    mean_lat = np.radians((lat[1:] + lat[:-1]) / 2.0)
    dx = np.radians(np.diff(lon)) * np.cos(mean_lat)
    dy = np.radians(np.diff(lat))
    distance = EARTH_RADIUS_M * np.hypot(dx, dy)
    gap = np.maximum(np.abs(np.diff(ts)), MIN_GAP_S)
    speeds: FloatArray = np.maximum(0.0, distance - accuracy_m[1:] - accuracy_m[:-1]) / gap
    return speeds


def steepest_steps(
    ts: FloatArray,
    lon: FloatArray,
    lat: FloatArray,
    accuracy_m: FloatArray,
    starts: npt.ArrayLike,
) -> FloatArray:
    """The highest :func:`required_speed` between consecutive fixes of each run of a track.

    The arrays hold several tracks one after the other (runs, e.g. many subjects' fixes of
    one commit), so every run's steepest step costs one pass over all of them.

    Parameters
    ----------
    ts, lon, lat, accuracy_m : numpy.ndarray of float
        As for :func:`step_speeds`; at least two fixes.
    starts : array_like of int
        Where each run begins, increasing, the first 0: run ``i`` is fixes ``starts[i]`` up
        to ``starts[i + 1]``, the last one up to the end.

    Returns
    -------
    numpy.ndarray of float
        Metres per second, one per run (0 for a run of one fix); the step from one run into
        the next belongs to neither.

    Examples
    --------
    >>> steepest_steps(
    ...     np.array([0.0, 10.0, 20.0, 30.0]),
    ...     np.array([116.30, 116.31, 116.50, 116.50]),  # a jump between the two runs
    ...     np.array([40.0, 40.0, 40.0, 40.0]),
    ...     np.array([10.0, 10.0, 10.0, 10.0]),
    ...     [0, 2],
    ... ).round(1).tolist()
    [83.2, 0.0]
    """
    index = np.asarray(starts, dtype=np.intp)
    speeds = np.append(step_speeds(ts, lon, lat, accuracy_m), 0.0)
    # The step out of each run ends in the next one: 0 is neutral for a maximum (speeds ≥ 0).
    speeds[index[1:] - 1] = 0.0
    steepest: FloatArray = np.maximum.reduceat(speeds, index)
    return steepest


class SpikeScreen(Generic[F]):
    """The rule, one fix at a time: holds a suspect until the next fix decides it.

    The state is the reference and the suspect: a caller that stores them (as the fixes
    themselves) and builds a screen from them again later screens on as if it never stopped.

    Parameters
    ----------
    max_speed_mps : float
        Fastest plausible speed, metres per second.
    ref : Located, optional
        The reference: the last plausible deciding fix.
    suspect : Located, optional
        A fix held, still to be decided by the next one.

    Examples
    --------
    >>> from geofences.episodes import Evidence
    >>> screen = SpikeScreen(70.0)
    >>> track = [(0, 116.300), (10, 116.301), (20, 116.330), (30, 116.302)]  # 2.5 km and back
    >>> for t, lon in track:
    ...     released, spike, held = screen.push(Evidence(t, lon, 40.0, 10.0))
    ...     if released is not None:
    ...         print(f"fix at {released.ts} s: {'spike' if spike else 'released'}")
    ...     print(f"fix at {t} s: {'held' if held else 'released'}")
    fix at 0 s: released
    fix at 10 s: released
    fix at 20 s: held
    fix at 20 s: spike
    fix at 30 s: released
    """

    __slots__ = ("max_speed_mps", "ref", "suspect")

    def __init__(
        self, max_speed_mps: float, ref: F | None = None, suspect: F | None = None
    ) -> None:
        self.max_speed_mps = max_speed_mps
        self.ref = ref
        self.suspect = suspect

    def push(self, fix: F, deciding: bool = True) -> tuple[F | None, bool, bool]:
        """Screen the next fix.

        Parameters
        ----------
        fix : Located
            The next fix, not older than the previous one.
        deciding : bool
            Whether the fix may decide anything (False for fixes the caller never trusts,
            e.g. mock or coarse ones: never held, never the reference).

        Returns
        -------
        tuple
            ``(decided, spike, held)``: the suspect this fix decided (None when none was
            held), whether that suspect was a spike, and whether ``fix`` is now held. A
            decided suspect that is not a spike comes before ``fix``, in time order.
        """
        limit = self.max_speed_mps
        decided, spike = self.suspect, False
        if decided is not None:
            self.suspect = None
            ref = self.ref
            spike = (
                ref is not None
                and required_speed(ref, fix) <= limit
                and required_speed(decided, fix) > limit
            )
            if not spike:
                self.ref = decided
        if deciding:
            if self.ref is not None and required_speed(self.ref, fix) > limit:
                self.suspect = fix
                return decided, spike, True
            self.ref = fix
        return decided, spike, False
