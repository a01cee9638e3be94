"""Location fixes as they arrive from phones, before and after normalisation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, NamedTuple


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


class TrackPoint(NamedTuple):
    """A stored fix as a subject's track shows it: ``ts`` aware UTC, WGS-84 coordinates in
    units of 1e-7 degree (as stored, so exports write them digit for digit), the accuracy
    stored in metres, :class:`FixFlag` bits, the reporting device.

    A tuple, not a dataclass: a track read returns up to 100 000 of them.
    """

    ts: datetime
    lon_e7: int
    lat_e7: int
    accuracy_m: int
    flags: int
    device_id: int


@dataclass(slots=True)
class Rejection:
    """A fix refused at decode/validate time: its index in the request and a reason slug."""

    index: int
    reason: str


class FixFlag:
    """Quality bits stored with each fix (``fixes.flags``, a smallint)."""

    SPIKE = 1  # jump-and-return outlier: kept as evidence, never decides a breach
    MOCK = 2  # the phone reported a mock (simulated) location
    COARSE = 4  # accuracy disc wider than the policy's decision limit
    LATE = 8  # older than fixes already evaluated for the subject
    SENT_GCJ02 = 16  # the phone sent GCJ-02 (stored converted to WGS-84)
    SENT_BD09 = 32  # the phone sent BD-09 (stored converted to WGS-84)
    NO_ACCURACY = 64  # the phone sent no accuracy; the policy default was used
    # Re-tells a span its device had already covered (see ingest/accounts.py): stored as
    # evidence, never evaluated.
    CONTRADICTING = 128
    # Arrived after a newer fix of the subject was stored (an offline buffer, a retry): it
    # filled a gap after the fact, so it does not vouch for the span after it.
    BACKFILL = 256

    NOT_DECIDING = SPIKE | MOCK | COARSE

    NAMES: ClassVar[dict[int, str]] = {
        SPIKE: "spike",
        MOCK: "mock",
        COARSE: "coarse",
        LATE: "late",
        SENT_GCJ02: "sent_gcj02",
        SENT_BD09: "sent_bd09",
        NO_ACCURACY: "no_accuracy",
        CONTRADICTING: "contradicting",
        BACKFILL: "backfill",
    }

    @classmethod
    def names(cls, flags: int) -> list[str]:
        return [name for bit, name in cls.NAMES.items() if flags & bit]
