"""Fixes as parallel arrays: one subject's fixes as the commit stores and evaluates them.

Times are integer microseconds since the Unix epoch (UTC), as stored: :func:`to_us` and
:func:`to_datetime` convert them from and to aware datetimes without floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000


def to_datetime(ts_us: int) -> datetime:
    """An instant in microseconds since the epoch as an aware UTC datetime.

    >>> to_datetime(1_790_000_000_250_000).isoformat()
    '2026-09-21T14:13:20.250000+00:00'
    """
    return EPOCH + timedelta(microseconds=ts_us)


def to_us(moment: datetime) -> int:
    """An aware datetime as microseconds since the epoch (exact).

    >>> to_us(to_datetime(1_790_000_000_250_000))
    1790000000250000
    """
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(slots=True)
class SubjectFixes:
    """One subject's fixes as parallel arrays (see ``ingest.batch.FixBatch``), plus the
    enrolled device and the position of the originating request in its commit group
    (``owner``; -1 for a fix read back from storage)."""

    ts_us: npt.NDArray[np.int64]
    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    accuracy_m: npt.NDArray[np.float64]
    flags: npt.NDArray[np.int16]
    key: npt.NDArray[np.int32]
    device: npt.NDArray[np.int32]
    owner: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.ts_us)

    @classmethod
    def from_arrays(
        cls,
        ts: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        lat: npt.NDArray[np.float64],
        accuracy_m: npt.NDArray[np.float64],
        flags: npt.NDArray[np.int16],
        key: npt.NDArray[np.int32],
        device: npt.NDArray[np.int32],
        owner: npt.NDArray[np.int32],
    ) -> SubjectFixes:
        """From a batch's units (epoch seconds, degrees, metres) to those stored."""
        return cls(
            np.round(ts * 1e6).astype(np.int64),
            # Evaluate exactly what is stored (1e-7 degrees, whole metres), so a re-evaluation
            # from the database can never decide differently.
            np.round(lon * 1e7) / 1e7,
            np.round(lat * 1e7) / 1e7,
            np.ceil(accuracy_m),
            flags,
            key,
            device,
            owner,
        )

    @classmethod
    def concat(cls, parts: list[SubjectFixes]) -> SubjectFixes:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__slots__))

    def select(self, index: npt.NDArray[Any]) -> SubjectFixes:
        return SubjectFixes(*(getattr(self, f)[index] for f in self.__slots__))

    def slice(self, start: int, stop: int) -> SubjectFixes:
        """Rows ``start:stop`` as views (no copy)."""
        return SubjectFixes(*(getattr(self, f)[start:stop] for f in self.__slots__))
