"""``merge_group``: a commit group's fixes per subject in (time, device, key) order, each
once, repeats counted against the request that sent them — whichever way it gets there
(the plain concatenation for the common group, the full sort otherwise)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.ingest.batch import FixBatch, dedupe_in_request
from correction_monitor.ingest.committer import QueuedBatch
from correction_monitor.ingest.merge import merge_group

pytestmark = pytest.mark.unit

T0 = 1_790_000_000.0


def job(loop: asyncio.AbstractEventLoop, subject: int, device: int, ts: list[float]) -> QueuedBatch:
    n = len(ts)
    batch = FixBatch(
        np.arange(n, dtype=np.int32),
        np.array(ts),
        116.3 + np.arange(n, dtype=np.float64) * 1e-4,
        np.full(n, 39.9),
        np.full(n, 10.0),
        np.zeros(n, dtype=np.int16),
        (np.arange(n, dtype=np.int32) % 2),
    )
    dedupe_in_request(batch)  # the stage before the committer, which sets ``increasing``
    identity = DeviceIdentity(device, subject, f"d{device}", 1)
    return QueuedBatch(identity, batch, "native", loop.create_future(), duplicates=batch.duplicates)


def reference(group: list[QueuedBatch]) -> tuple[dict[int, list[tuple[Any, ...]]], list[int]]:
    """The same result the slow, obvious way."""
    rows = []
    for owner, j in enumerate(group):
        b = j.batch
        for i in range(len(b)):
            ts_us = round(b.ts[i] * 1e6)
            rows.append((j.device.subject_id, ts_us, j.device.device_id, int(b.key[i]), owner))
    rows.sort(key=lambda r: r[:4])  # stable: the first sent of equal fixes comes first
    kept: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    duplicates = [j.duplicates for j in group]
    previous = None
    for row in rows:
        if row[:4] == previous:
            duplicates[row[4]] += 1
            continue
        previous = row[:4]
        kept[row[0]].append(row[1:])
    return dict(kept), duplicates


@settings(max_examples=300, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.integers(1, 4),  # subject (device = subject + 100)
            st.lists(st.integers(0, 12), min_size=1, max_size=6),  # ts steps (0: a repeat)
            st.integers(0, 40),  # where the request's fixes start
        ),
        min_size=1,
        max_size=8,
    ),
    unique_subjects=st.booleans(),
)
def test_merge_equals_the_obvious_way(
    requests: list[tuple[int, list[int], int]], unique_subjects: bool
) -> None:
    loop = asyncio.new_event_loop()
    try:
        group = []
        for n, (subject, steps, start) in enumerate(requests):
            sid = 1000 + n if unique_subjects else subject
            ts = (T0 + start + np.cumsum(steps)).tolist()
            group.append(job(loop, sid, sid + 100, ts))
        expected, duplicates = reference(group)
        event("plain" if unique_subjects and all(j.batch.increasing for j in group) else "sorted")
        merged = merge_group(group)
        got = {
            sid: list(
                zip(
                    f.ts_us.tolist(),
                    f.device.tolist(),
                    f.key.tolist(),
                    f.owner.tolist(),
                    strict=True,
                )
            )
            for sid, f in merged.fixes.items()
        }
        assert got == expected
        assert [j.duplicates for j in group] == duplicates
    finally:
        loop.close()
