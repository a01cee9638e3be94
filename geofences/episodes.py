"""The breach episode state machine: pure, deterministic, driven by fix time.

One state machine runs per (subject, fence). Each fix is first reduced by the caller to a
:class:`Condition`: for an activity area ``OUTSIDE → BREACH`` and ``INSIDE → OK``; for an
exclusion zone ``INSIDE → BREACH`` and ``OUTSIDE → OK``; ``UNCERTAIN`` membership, and any fix
flagged as a spike or a mock location, is ``UNKNOWN``.

Rules
-----
* A breach **opens** when ``BREACH`` fixes persist: the streak's last fix is at least
  ``confirm_s`` seconds after its first, the streak has at least ``min_fixes`` fixes, and no
  ``OK`` fix came in between. :class:`BreachOpened` carries the first fix's time as
  ``started_at`` (the true start, however late the batch was uploaded) and the confirming fix's
  time as ``confirmed_at``. ``min_fixes`` is at least 2, so a lone outlying fix never opens.
* A breach **closes** symmetrically after ``OK`` fixes persist as long; ``ended_at`` is the
  first ``OK`` fix of the closing streak.
* A fix of the opposite condition resets the candidate streak (an ``OK`` fix while a breach is
  being confirmed, a ``BREACH`` fix while its end is).
* ``UNKNOWN`` neither opens, closes nor resets a streak: an uncertain or suspect fix says
  nothing about where the subject is, so it must not let a single bad reading cut a genuine
  breach short, nor help confirm one. It still advances the evaluated time.
* **Late fixes**: a fix older than the last evaluated one (``ts < last_ts``) does not change the
  state; it is returned as a :class:`LateFix` event so the caller can store it as evidence (or,
  when it keeps checkpoints, replay the merged history from an earlier state with :func:`run`).
  Fixes with equal timestamps are processed in arrival order.

Because :func:`run` is a fold of :func:`advance` and the state is a plain serialisable value,
a batch gives exactly the events that the same fixes give one by one, across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

__all__ = [
    "BreachClosed",
    "BreachOpened",
    "Condition",
    "EpisodeConfig",
    "EpisodeState",
    "Event",
    "Evidence",
    "LateFix",
    "advance",
    "run",
]


class Condition(IntEnum):
    """What one fix says about one fence."""

    OK = 0
    BREACH = 1
    UNKNOWN = 2


@dataclass(frozen=True, slots=True)
class Evidence:
    """The fix behind a decision: UTC epoch seconds, degrees WGS-84, metres."""

    ts: float
    lon: float
    lat: float
    accuracy_m: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-safe form (NaN accuracy becomes ``None``)."""
        return {
            "ts": self.ts,
            "lon": self.lon,
            "lat": self.lat,
            "accuracy_m": None if math.isnan(self.accuracy_m) else self.accuracy_m,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Inverse of :meth:`to_dict`."""
        acc = data["accuracy_m"]
        return cls(
            float(data["ts"]),
            float(data["lon"]),
            float(data["lat"]),
            math.nan if acc is None else float(acc),
        )


@dataclass(frozen=True, slots=True)
class EpisodeConfig:
    """Confirmation policy (per supervision level).

    Parameters
    ----------
    confirm_s : float
        Seconds a condition must persist, first to last fix of the streak (>= 0).
    min_fixes : int
        Fixes the streak needs (>= 2, so one fix alone never decides).
    """

    confirm_s: float
    min_fixes: int = 2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.confirm_s) and self.confirm_s >= 0):
            raise ValueError(f"confirm_s must be a finite number >= 0, got {self.confirm_s!r}")
        if isinstance(self.min_fixes, bool) or not isinstance(self.min_fixes, int):
            raise ValueError("min_fixes must be an int")
        if self.min_fixes < 2:
            raise ValueError("min_fixes must be at least 2: a lone fix must never decide")


@dataclass(frozen=True, slots=True)
class BreachOpened:
    """A breach was confirmed.

    ``started_at`` is the time of the streak's first ``BREACH`` fix, ``confirmed_at`` that of
    the fix that confirmed it (UTC epoch seconds).
    """

    started_at: float
    confirmed_at: float
    first: Evidence
    last: Evidence
    fixes: int


@dataclass(frozen=True, slots=True)
class BreachClosed:
    """A breach ended; ``ended_at`` is the first ``OK`` fix of the closing streak."""

    ended_at: float
    confirmed_at: float
    first: Evidence
    last: Evidence


@dataclass(frozen=True, slots=True)
class LateFix:
    """A fix older than the last evaluated one; it did not change the state."""

    ts: float
    condition: Condition
    evidence: Evidence


Event = BreachOpened | BreachClosed | LateFix


@dataclass(frozen=True, slots=True)
class EpisodeState:
    """Where one (subject, fence) episode stands; a small serialisable value.

    Attributes
    ----------
    in_breach : bool
        Whether a breach is open.
    first, last : Evidence or None
        First and last fix of the candidate streak (``BREACH`` fixes towards opening when not
        in breach, ``OK`` fixes towards closing when in breach); ``None`` when there is none.
    count : int
        Fixes in the candidate streak.
    last_ts : float or None
        Time of the last evaluated fix (UTC epoch seconds).
    """

    in_breach: bool = False
    first: Evidence | None = None
    last: Evidence | None = None
    count: int = 0
    last_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "in_breach": self.in_breach,
            "first": None if self.first is None else self.first.to_dict(),
            "last": None if self.last is None else self.last.to_dict(),
            "count": self.count,
            "last_ts": self.last_ts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpisodeState:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If the streak fields are inconsistent.
        """
        first = None if data.get("first") is None else Evidence.from_dict(data["first"])
        last = None if data.get("last") is None else Evidence.from_dict(data["last"])
        count = int(data.get("count", 0))
        if (first is None) != (last is None) or (first is None) != (count == 0):
            raise ValueError("episode state streak needs first, last and count together")
        last_ts = data.get("last_ts")
        return cls(
            in_breach=bool(data["in_breach"]),
            first=first,
            last=last,
            count=count,
            last_ts=None if last_ts is None else float(last_ts),
        )


def advance(
    state: EpisodeState,
    ts: float,
    condition: Condition,
    evidence: Evidence,
    config: EpisodeConfig,
) -> tuple[EpisodeState, list[Event]]:
    """Feed one fix to the state machine.

    Parameters
    ----------
    state : EpisodeState
        Current state.
    ts : float
        Fix time, UTC epoch seconds.
    condition : Condition
        What the fix says about the fence.
    evidence : Evidence
        The fix, kept in events.
    config : EpisodeConfig
        Confirmation policy.

    Returns
    -------
    tuple
        The new state and the events (at most one) it produced.

    Examples
    --------
    >>> cfg = EpisodeConfig(confirm_s=60)
    >>> s = EpisodeState()
    >>> s, ev = advance(s, 0.0, Condition.BREACH, Evidence(0.0, 117.2, 39.1, 10.0), cfg)
    >>> s, ev = advance(s, 61.0, Condition.BREACH, Evidence(61.0, 117.2, 39.1, 10.0), cfg)
    >>> [(e.started_at, e.confirmed_at, e.fixes) for e in ev]
    [(0.0, 61.0, 2)]
    """
    if not math.isfinite(ts):
        raise ValueError("fix time must be finite UTC epoch seconds")
    if evidence.ts != ts:
        raise ValueError("evidence.ts must be the fix time ts")
    condition = Condition(condition)
    if state.last_ts is not None and ts < state.last_ts:
        return state, [LateFix(ts, condition, evidence)]
    state = replace(state, last_ts=ts)
    if condition is Condition.UNKNOWN:
        return state, []
    towards = Condition.OK if state.in_breach else Condition.BREACH
    if condition is not towards:
        return (replace(state, first=None, last=None, count=0) if state.count else state), []
    first = evidence if state.first is None else state.first
    count = state.count + 1
    if count >= config.min_fixes and ts - first.ts >= config.confirm_s:
        event: Event
        if state.in_breach:
            event = BreachClosed(first.ts, ts, first, evidence)
        else:
            event = BreachOpened(first.ts, ts, first, evidence, count)
        return EpisodeState(in_breach=not state.in_breach, last_ts=ts), [event]
    return replace(state, first=first, last=evidence, count=count), []


def run(
    state: EpisodeState,
    items: Iterable[tuple[float, Condition, Evidence]],
    config: EpisodeConfig,
) -> tuple[EpisodeState, list[Event]]:
    """Feed fixes in arrival order; identical to calling :func:`advance` one by one.

    Parameters
    ----------
    state : EpisodeState
        Starting state.
    items : iterable of (ts, condition, evidence)
        Fixes in arrival order (normally time order).
    config : EpisodeConfig
        Confirmation policy.

    Returns
    -------
    tuple
        The final state and all events in order.
    """
    events: list[Event] = []
    for ts, condition, evidence in items:
        state, new = advance(state, ts, condition, evidence, config)
        events.extend(new)
    return state, events
