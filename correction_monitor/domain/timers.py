"""Durable timers: deadlines that must fire once even across crashes and restarts.

A timer is set in the transaction of the change that needs it (a check-in window opened,
a task created with its SLA), stored in PostgreSQL, and fired by whichever process finds it
due first; the handler's effects and the timer's firing commit together. ``(kind, key)``
names one deadline: setting it again moves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Timer:
    """A deadline: at ``due_at`` (UTC) the handler registered for ``kind`` runs with it."""

    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A timer found due, with how many times firing it has failed before."""

    id: int
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int


def retry_delay_s(attempts: int) -> float:
    """Seconds before firing again after ``attempts`` failures: 5 s doubling, at most 1 h.

    >>> [retry_delay_s(n) for n in (1, 2, 3, 20)]
    [5.0, 10.0, 20.0, 3600.0]
    """
    return float(min(3600.0, 5.0 * 2 ** max(0, attempts - 1)))
