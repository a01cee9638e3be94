"""The ingest pipeline's front stages, on numpy arrays: normalize → validate → dedupe → quality.

Each stage is a small function over a ``FixBatch`` that either enriches the fixes or removes
some with a reason slug; ``normalize`` builds the batch (or a decoder does, as arrays) and
``prepare_normalized`` runs the others in order. Persisting and evaluating happen in
the group committer (``committer.py``), which sees many requests at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from correction_monitor.domain.fixes import FixFlag, RawFix, Rejection
from correction_monitor.policy import IngestPolicy
from geofences.crs import CRS, to_wgs84

# Reason slugs of the validate stage (the decoders have their own, see protocols.errors).
FUTURE_TIMESTAMP = "future_timestamp"
TOO_OLD = "too_old"
BAD_ACCURACY = "bad_accuracy"
BAD_CRS = "bad_crs"

_CRS_FLAGS = {CRS.WGS84: 0, CRS.GCJ02: FixFlag.SENT_GCJ02, CRS.BD09: FixFlag.SENT_BD09}
_MAX_STORED_ACCURACY_M = 32_767  # smallint column; wider discs are clipped (and flagged coarse)


@dataclass(slots=True)
class FixBatch:
    """Fixes of one request as parallel arrays. Coordinates WGS-84 degrees once normalised;
    ``ts`` epoch seconds UTC; ``accuracy_m`` metres (NaN = not sent); ``key`` a 32-bit hash of
    the phone's own fix id (0 when it sent none); ``index`` the fix's position in the request."""

    index: npt.NDArray[np.int32]
    ts: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    accuracy_m: npt.NDArray[np.float64]
    flags: npt.NDArray[np.int16]
    key: npt.NDArray[np.int32]
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    # Set by the dedupe stage: the fixes are in strictly increasing time (to the microsecond).
    increasing: bool = False

    def __len__(self) -> int:
        return len(self.ts)

    def keep(self, mask: npt.NDArray[np.bool_]) -> None:
        self.index = self.index[mask]
        self.ts = self.ts[mask]
        self.lon = self.lon[mask]
        self.lat = self.lat[mask]
        self.accuracy_m = self.accuracy_m[mask]
        self.flags = self.flags[mask]
        self.key = self.key[mask]

    def reject(self, mask: npt.NDArray[np.bool_], reason: str) -> None:
        """Remove the fixes under ``mask``, recording ``reason`` for each."""
        if mask.any():
            self.rejected.extend(Rejection(int(i), reason) for i in self.index[mask])
            self.keep(~mask)


def client_key(client_id: str | None) -> int:
    """32-bit signed hash of the phone's fix id; 0 stands for "no id"."""
    if not client_id:
        return 0
    value = zlib.crc32(client_id.encode()) or 1
    return value - (1 << 32) if value >= (1 << 31) else value


def normalize(fixes: Sequence[RawFix], indexes: Sequence[int]) -> FixBatch:
    """Stage 1: arrays, UTC epoch seconds, WGS-84 (the CRS sent is kept as a flag)."""
    n = len(fixes)
    ts = np.fromiter((f.ts.timestamp() for f in fixes), np.float64, n)
    lon = np.fromiter((f.lon for f in fixes), np.float64, n)
    lat = np.fromiter((f.lat for f in fixes), np.float64, n)
    acc = np.fromiter(
        (np.nan if f.accuracy_m is None else f.accuracy_m for f in fixes), np.float64, n
    )
    flags = np.fromiter((FixFlag.MOCK if f.mock else 0 for f in fixes), np.int16, n)
    key = np.fromiter((client_key(f.client_id) for f in fixes), np.int32, n)
    batch = FixBatch(np.asarray(indexes, dtype=np.int32), ts, lon, lat, acc, flags, key)
    crs_names = [f.crs for f in fixes]
    unknown = np.fromiter((c not in _CRS_FLAGS for c in crs_names), np.bool_, n)
    for crs in (CRS.GCJ02, CRS.BD09):
        sel = np.fromiter((c == crs for c in crs_names), np.bool_, n)
        if sel.any():
            batch.lon[sel], batch.lat[sel] = to_wgs84(batch.lon[sel], batch.lat[sel], crs)
            batch.flags[sel] |= _CRS_FLAGS[crs]
    batch.reject(unknown, BAD_CRS)
    return batch


def _low_high(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Smallest and largest value; plain Python for the few values of most requests, where
    it is several times cheaper than two numpy reductions."""
    if len(values) <= 16:
        items = values.tolist()
        return min(items), max(items)
    return float(values.min()), float(values.max())


def validate(batch: FixBatch, now: float, policy: IngestPolicy) -> None:
    """Stage 2: refuse fixes from the future (beyond the clock skew allowed) or too old."""
    if len(batch) == 0:
        return
    # One pass for the common case (all in range); masks only when some fix is not.
    newest, oldest = now + policy.max_future_skew_s, now - policy.max_age_s
    low, high = _low_high(batch.ts)
    if high > newest or low < oldest:
        batch.reject(batch.ts > newest, FUTURE_TIMESTAMP)
        batch.reject(batch.ts < oldest, TOO_OLD)
    # NaN (not sent) compares False: only a negative (or -inf) accuracy is refused here.
    batch.reject(batch.accuracy_m < 0, BAD_ACCURACY)


def dedupe_in_request(batch: FixBatch) -> None:
    """Stage 3a: a fix repeated inside one request counts once (the first is kept)."""
    if len(batch) < 2:
        batch.increasing = True
        return
    ts_us = np.round(batch.ts * 1e6).astype(np.int64)
    if (ts_us[1:] > ts_us[:-1]).all():
        batch.increasing = True
        return  # in strictly increasing time, as phones send them: no repeat possible
    order = np.lexsort((batch.key, ts_us))
    same = (np.diff(ts_us[order]) == 0) & (np.diff(batch.key[order]) == 0)
    if same.any():
        drop = np.zeros(len(batch), dtype=np.bool_)
        drop[order[1:][same]] = True
        batch.duplicates += int(drop.sum())
        batch.keep(~drop)


def quality(batch: FixBatch, policy: IngestPolicy) -> None:
    """Stage 4: fill missing accuracy with the policy default; mark coarse fixes."""
    if len(batch) == 0:
        return
    acc, flags = batch.accuracy_m, batch.flags
    missing = np.isnan(acc)
    if missing.any():
        acc[missing] = policy.default_accuracy_m
        flags[missing] |= FixFlag.NO_ACCURACY
    widest = _low_high(acc)[1]
    if widest > policy.max_decision_accuracy_m:
        flags[acc > policy.max_decision_accuracy_m] |= FixFlag.COARSE
    if widest > _MAX_STORED_ACCURACY_M:
        np.minimum(acc, _MAX_STORED_ACCURACY_M, out=acc)


def prepare_normalized(batch: FixBatch, now: float, policy: IngestPolicy) -> None:
    """The stages after normalize, for a batch a decoder built as arrays already."""
    validate(batch, now, policy)
    dedupe_in_request(batch)
    quality(batch, policy)
