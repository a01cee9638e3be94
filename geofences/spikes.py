"""Jump-and-return detection: single fixes that the track visits impossibly fast.

Two fixes are *consistent* when moving between them needs no more than ``max_speed_mps``,
after giving the positions the benefit of their accuracy: the distance is reduced by both
accuracy radii, and a time difference below one second counts as one second (most devices stamp
whole seconds, so equal stamps mean "within a second"). Fix ``i`` of a time-ordered track is a
*spike* when

1. it is inconsistent with both neighbours, ``i-1`` and ``i+1``, while ``i-1`` and ``i+1`` are
   consistent with each other (the track jumps out and straight back); or
2. it is inconsistent with ``i+1`` but its predecessor cannot tell which of ``i`` and ``i+1`` is
   wrong (there is none, or it is consistent with both, typically because it is hours older),
   and ``i`` is also inconsistent with ``i+2`` while ``i+1`` and ``i+2`` agree. This is the GPS
   cold start: the first fix after a long gap lands far from where the track then continues.

A fix without the neighbours a rule needs (the last one or two of a batch) is not a spike. Two
consecutive bad fixes that agree with each other are not caught here; the episode machine's
confirmation time protects against those.

:func:`detect_spikes` works on a batch; :class:`SpikeFilter` gives the same answers one fix at a
time with a small serialisable state: it holds the newest fix (two after an ambiguous jump)
until the fixes that decide it arrive, and :meth:`SpikeFilter.flush` releases the held fixes
undecided-as-clean when no more are coming (for instance when the phone has gone silent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from geofences.classify import geodesic_distance_m
from geofences.episodes import Evidence

__all__ = ["SpikeFilter", "SpikeState", "detect_spikes"]

_MIN_DT_S = 1.0

FloatArray = npt.NDArray[np.float64]


def _consistent(
    ts_a: FloatArray,
    lon_a: FloatArray,
    lat_a: FloatArray,
    acc_a: FloatArray,
    ts_b: FloatArray,
    lon_b: FloatArray,
    lat_b: FloatArray,
    acc_b: FloatArray,
    max_speed_mps: float,
) -> npt.NDArray[np.bool_]:
    """Whether moving between fix pairs needs at most ``max_speed_mps`` (pairwise arrays)."""
    d = geodesic_distance_m(lon_a, lat_a, lon_b, lat_b)
    reach = np.maximum(d - acc_a - acc_b, 0.0)
    dt = np.maximum(np.abs(ts_b - ts_a), _MIN_DT_S)
    return np.asarray(reach <= max_speed_mps * dt, dtype=np.bool_)


def detect_spikes(
    ts: npt.ArrayLike,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    accuracy_m: npt.ArrayLike,
    *,
    max_speed_mps: float = 70.0,
) -> npt.NDArray[np.bool_]:
    """Flag jump-and-return fixes in a time-ordered batch of one device.

    Parameters
    ----------
    ts : array_like of float
        Fix times, UTC epoch seconds, non-decreasing.
    lon, lat : array_like of float
        Degrees WGS-84.
    accuracy_m : array_like of float
        Accuracy radii, metres (>= 0; substitute a default for unknown ones).
    max_speed_mps : float
        Fastest plausible speed in metres per second (70 m/s = 252 km/h by default).

    Returns
    -------
    numpy.ndarray of bool
        True for spikes.

    Raises
    ------
    ValueError
        On mismatched lengths, NaN values, or times going backwards.

    Examples
    --------
    >>> ts = [0, 5, 10, 15]
    >>> lon = [116.30, 116.30, 116.32, 116.30]      # the third fix is 1.7 km away for 5 s
    >>> lat = [40.0, 40.0001, 40.0, 40.0002]
    >>> detect_spikes(ts, lon, lat, [10, 10, 10, 10]).tolist()
    [False, False, True, False]
    """
    t, x, y, acc = (
        np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (ts, lon, lat, accuracy_m)
    )
    n = len(t)
    if not (x.shape == y.shape == acc.shape == t.shape) or t.ndim != 1:
        raise ValueError("ts, lon, lat and accuracy_m must be 1-D arrays of one length")
    if np.isnan(t).any() or np.isnan(x).any() or np.isnan(y).any() or np.isnan(acc).any():
        raise ValueError("spike detection needs finite times, positions and accuracies")
    if np.any(acc < 0.0):
        raise ValueError("accuracy_m must be >= 0")
    if np.any(np.diff(t) < 0.0):
        raise ValueError("fixes must be in time order")
    if not max_speed_mps > 0.0:
        raise ValueError("max_speed_mps must be positive")
    spikes = np.zeros(n, dtype=np.bool_)
    if n < 2:
        return spikes

    def cons(i: slice, j: slice) -> npt.NDArray[np.bool_]:
        return _consistent(t[i], x[i], y[i], acc[i], t[j], x[j], y[j], acc[j], max_speed_mps)

    c1 = cons(slice(0, n - 1), slice(1, n))  # c1[i]: i ~ i+1
    c2 = cons(slice(0, n - 2), slice(2, n)) if n >= 3 else np.zeros(0, dtype=np.bool_)  # i ~ i+2
    if n >= 3:
        # Rule 1 for i in 1..n-2.
        spikes[1 : n - 1] |= ~c1[: n - 2] & ~c1[1 : n - 1] & c2[: n - 2]
        # Rule 2 for i in 0..n-3; fix 0 has no predecessor, which counts as ambiguous.
        ambiguous = np.ones(n - 2, dtype=np.bool_)
        ambiguous[1:] = c1[: n - 3] & c2[: n - 3]
        spikes[: n - 2] |= ambiguous & ~c1[: n - 2] & ~c2 & c1[1 : n - 1]
    return spikes


@dataclass(frozen=True, slots=True)
class SpikeState:
    """Streaming state: the last released fix and the fixes held back (at most two)."""

    prev: Evidence | None = None
    pending: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "prev": None if self.prev is None else self.prev.to_dict(),
            "pending": [e.to_dict() for e in self.pending],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpikeState:
        """Inverse of :meth:`to_dict`."""
        prev = data.get("prev")
        pending = data.get("pending", [])
        if not isinstance(pending, Sequence) or len(pending) > 2:
            raise ValueError("spike state holds at most two pending fixes")
        return cls(
            None if prev is None else Evidence.from_dict(prev),
            tuple(Evidence.from_dict(p) for p in pending),
        )


@dataclass(frozen=True, slots=True)
class SpikeFilter:
    """The rules of :func:`detect_spikes`, one fix at a time.

    Parameters
    ----------
    max_speed_mps : float
        Fastest plausible speed, metres per second.

    Examples
    --------
    >>> f = SpikeFilter()
    >>> state = SpikeState()
    >>> out = []
    >>> for t, lon in [(0, 116.30), (5, 116.30), (10, 116.32), (15, 116.30)]:
    ...     state, done = f.push(state, Evidence(t, lon, 40.0, 10.0))
    ...     out += [(e.ts, spike) for e, spike in done]
    >>> state, done = f.flush(state)
    >>> out + [(e.ts, spike) for e, spike in done]
    [(0, False), (5, False), (10, True), (15, False)]
    """

    max_speed_mps: float = 70.0

    def _cons(self, a: Evidence, b: Evidence) -> bool:
        return bool(
            _consistent(
                np.array([a.ts]),
                np.array([a.lon]),
                np.array([a.lat]),
                np.array([a.accuracy_m]),
                np.array([b.ts]),
                np.array([b.lon]),
                np.array([b.lat]),
                np.array([b.accuracy_m]),
                self.max_speed_mps,
            )[0]
        )

    def _decide(self, prev: Evidence | None, window: Sequence[Evidence]) -> bool | None:
        """Spike verdict for ``window[0]``, or None until more fixes arrive."""
        if len(window) < 2:
            return None
        a, b = window[0], window[1]
        if self._cons(a, b):
            return False
        if prev is not None and not self._cons(prev, a):
            return self._cons(prev, b)
        if prev is not None and not self._cons(prev, b):
            return False
        if len(window) < 3:
            return None
        c = window[2]
        return not self._cons(a, c) and self._cons(b, c)

    def push(
        self, state: SpikeState, fix: Evidence
    ) -> tuple[SpikeState, list[tuple[Evidence, bool]]]:
        """Add the next fix; release the fixes that can now be decided.

        Parameters
        ----------
        state : SpikeState
            State from the previous call (``SpikeState()`` at first).
        fix : Evidence
            The next fix of the device, not older than the previous one.

        Returns
        -------
        tuple
            The new state and ``(fix, is_spike)`` for each released fix, in order.

        Raises
        ------
        ValueError
            On a fix older than the last one, or with NaN fields or negative accuracy.
        """
        if any(math.isnan(v) for v in (fix.ts, fix.lon, fix.lat, fix.accuracy_m)):
            raise ValueError("spike detection needs finite times, positions and accuracies")
        if fix.accuracy_m < 0.0:
            raise ValueError("accuracy_m must be >= 0")
        newest = state.pending[-1] if state.pending else state.prev
        if newest is not None and fix.ts < newest.ts:
            raise ValueError("fixes must be pushed in time order")
        window = [*state.pending, fix]
        prev = state.prev
        released: list[tuple[Evidence, bool]] = []
        while window:
            verdict = self._decide(prev, window)
            if verdict is None:
                break
            released.append((window[0], verdict))
            prev = window.pop(0)
        return SpikeState(prev, tuple(window)), released

    def flush(self, state: SpikeState) -> tuple[SpikeState, list[tuple[Evidence, bool]]]:
        """Release held fixes as not spikes (no later fix will come to convict them).

        Returns
        -------
        tuple
            The new state and ``(fix, False)`` for each held fix.
        """
        if not state.pending:
            return state, []
        return SpikeState(state.pending[-1], ()), [(e, False) for e in state.pending]
