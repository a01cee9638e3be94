"""Location fixes as they arrive from phones, before and after normalisation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class RawFix:
    """One position report as decoded from a phone protocol, not yet normalised.

    Coordinates are in ``crs`` ("wgs84", "gcj02" or "bd09"); ``ts`` is timezone-aware.
    Units: metres, metres per second, degrees, battery in percent (0..100).
    """

    ts: datetime
    lat: float
    lon: float
    accuracy_m: float | None = None
    crs: str = "wgs84"
    client_id: str | None = None
    speed_mps: float | None = None
    bearing: float | None = None
    altitude_m: float | None = None
    battery_pct: float | None = None
    provider: str | None = None
    mock: bool = False


@dataclass(slots=True)
class Rejection:
    """A fix refused at decode/validate time: its index in the request and a reason slug."""

    index: int
    reason: str
