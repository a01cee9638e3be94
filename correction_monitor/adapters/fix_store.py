"""The ingest path's storage of fixes: COPY in, the reads of dedupe and replay, flag updates.

Fixes are written by binary ``COPY`` in one payload per commit group, built with numpy in
one pass; the reads return :class:`SubjectFixes`. Every function runs on the connection of
the caller's transaction, except :class:`Partitions`, which runs before it.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import asyncpg
import numpy as np

from correction_monitor.domain.fix_arrays import DAY_US, EPOCH, SubjectFixes, to_us
from correction_monitor.domain.fixes import FixFlag

ENSURE_PARTITION = "SELECT cm_ensure_fix_partition($1::date)"
# The stored fixes of several subjects, each within its own time range (dedupe and the
# contradicting-accounts check read them together).
STORED_NEAR = """
SELECT f.subject_id, f.device_id, f.ts, f.client_key, f.lon_e7, f.lat_e7, f.accuracy_m, f.flags
FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r(subject_id, lo, hi)
JOIN fixes f ON f.subject_id = r.subject_id AND f.ts BETWEEN r.lo AND r.hi
"""
# Contradicting fixes are another account, never evaluated: not replayed either.
STORED_SINCE = """
SELECT ts, device_id, lon_e7, lat_e7, client_key, accuracy_m, flags FROM fixes
WHERE subject_id = $1 AND ts > $2 AND flags & $3 = 0 ORDER BY ts
"""
MARK_SPIKE = """
UPDATE fixes SET flags = flags | $5
WHERE subject_id = $1 AND device_id = $2 AND ts = $3 AND client_key = $4
"""
SET_FLAGS = """
UPDATE fixes SET flags = $5 WHERE subject_id = $1 AND device_id = $2 AND ts = $3
    AND client_key = $4
"""
FIX_COLUMNS = (
    "ts",
    "subject_id",
    "device_id",
    "lon_e7",
    "lat_e7",
    "client_key",
    "accuracy_m",
    "flags",
)

FixKey = tuple[int, int, datetime, int]
"""A stored fix's identity: (subject, device, time, client key)."""


class Partitions:
    """Creates the daily partitions of ``fixes`` that a commit is about to write into.

    The days known to exist are remembered for the life of the process, so a commit into
    known days costs nothing.
    """

    def __init__(self) -> None:
        self._known: set[date] = set()

    async def ensure(self, conn: asyncpg.Connection, fixes: Iterable[SubjectFixes]) -> None:
        """Create the missing partitions for the days of ``fixes``, each in its own short
        transaction (before the group's, so its locks are not held while the group
        commits)."""
        days = {
            (EPOCH + timedelta(days=d)).date()
            for d in np.unique(
                np.concatenate([f.ts_us for f in fixes] or [np.empty(0, np.int64)]) // DAY_US
            ).tolist()
        }
        missing = days - self._known
        if not missing:
            return
        for day in sorted(missing):
            await conn.execute(ENSURE_PARTITION, day)
        self._known |= missing


def _fixes(records: list[asyncpg.Record]) -> SubjectFixes:
    n = len(records)
    return SubjectFixes(
        ts_us=np.fromiter((to_us(r["ts"]) for r in records), np.int64, n),
        lon=np.fromiter((r["lon_e7"] for r in records), np.float64, n) / 1e7,
        lat=np.fromiter((r["lat_e7"] for r in records), np.float64, n) / 1e7,
        accuracy_m=np.fromiter((r["accuracy_m"] for r in records), np.float64, n),
        flags=np.fromiter((r["flags"] for r in records), np.int16, n),
        key=np.fromiter((r["client_key"] for r in records), np.int32, n),
        device=np.fromiter((r["device_id"] for r in records), np.int32, n),
        owner=np.full(n, -1, dtype=np.int32),
    )


async def stored_near(
    conn: asyncpg.Connection, subject_ids: list[int], lows: list[datetime], highs: list[datetime]
) -> dict[int, SubjectFixes]:
    """Each subject's stored fixes from ``lows[i]`` to ``highs[i]`` (inclusive), any device,
    in no particular order; every subject asked for is in the answer. One round trip."""
    found: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for r in await conn.fetch(STORED_NEAR, subject_ids, lows, highs):
        found[r["subject_id"]].append(r)
    return {sid: _fixes(found[sid]) for sid in subject_ids}


async def stored_since(conn: asyncpg.Connection, subject_id: int, since: datetime) -> SubjectFixes:
    """A subject's stored fixes after ``since``, in time order, without contradicting ones;
    flags as stored."""
    rows = await conn.fetch(STORED_SINCE, subject_id, since, FixFlag.CONTRADICTING)
    return _fixes(rows)


async def mark_spikes(conn: asyncpg.Connection, fixes: list[FixKey]) -> None:
    """Flag stored fixes as spikes (a suspect held from an earlier commit, convicted now)."""
    for fix in fixes:
        await conn.execute(MARK_SPIKE, *fix, FixFlag.SPIKE)


async def set_flags(
    conn: asyncpg.Connection, changes: list[tuple[int, int, datetime, int, int]]
) -> None:
    """Set stored fixes' flags: (subject, device, time, client key, flags) each."""
    await conn.executemany(SET_FLAGS, changes)


async def copy_fixes(conn: asyncpg.Connection, batches: list[tuple[int, SubjectFixes]]) -> None:
    """Write each (subject, fixes) of ``batches`` into ``fixes``, in one ``COPY``."""
    await conn.copy_to_table(
        "fixes",
        # A memoryview: asyncpg sends a buffer as it is (bytes would be taken for a file
        # path, a file goes through a thread pool).
        source=memoryview(copy_payload(batches)),
        columns=FIX_COLUMNS,
        format="binary",
    )


# PostgreSQL's binary COPY format for the fixes row, built with numpy in one pass instead of
# one Python tuple (and one datetime) per fix.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_COPY_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l_ts", ">i4"),
        ("ts", ">i8"),
        ("l_subject", ">i4"),
        ("subject", ">i4"),
        ("l_device", ">i4"),
        ("device", ">i4"),
        ("l_lon", ">i4"),
        ("lon", ">i4"),
        ("l_lat", ">i4"),
        ("lat", ">i4"),
        ("l_key", ">i4"),
        ("key", ">i4"),
        ("l_acc", ">i4"),
        ("acc", ">i2"),
        ("l_flags", ">i4"),
        ("flags", ">i2"),
    ]
)


def copy_payload(batches: list[tuple[int, SubjectFixes]]) -> bytes:
    """Binary COPY data for ``fixes`` (columns in the order of ``FIX_COLUMNS``)."""
    total = sum(len(f) for _, f in batches)
    rows = np.empty(total, dtype=_COPY_ROW)
    rows["n"] = len(FIX_COLUMNS)
    for name, size in (
        ("l_ts", 8),
        ("l_subject", 4),
        ("l_device", 4),
        ("l_lon", 4),
        ("l_lat", 4),
        ("l_key", 4),
        ("l_acc", 2),
        ("l_flags", 2),
    ):
        rows[name] = size
    parts = [fixes for _, fixes in batches]
    rows["ts"] = np.concatenate([f.ts_us for f in parts]) - _PG_EPOCH_US
    rows["subject"] = np.repeat([sid for sid, _ in batches], [len(f) for f in parts])
    rows["device"] = np.concatenate([f.device for f in parts])
    rows["lon"] = np.round(np.concatenate([f.lon for f in parts]) * 1e7)
    rows["lat"] = np.round(np.concatenate([f.lat for f in parts]) * 1e7)
    rows["key"] = np.concatenate([f.key for f in parts])
    rows["acc"] = np.ceil(np.concatenate([f.accuracy_m for f in parts]))
    rows["flags"] = np.concatenate([f.flags for f in parts])
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER
