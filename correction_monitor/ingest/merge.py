"""Group merging: a commit group's requests become each subject's fixes, in event-time order,
each fix once.

The whole group is converted, sorted and deduplicated as one set of arrays and then cut into
per-subject views, so a group of many one-fix requests costs a few array passes rather than
a few per subject. Repeats within the group count as duplicates of the request that sent
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from correction_monitor.domain.fix_arrays import SubjectFixes
from correction_monitor.ingest.evaluate import steepest_steps

if TYPE_CHECKING:
    from correction_monitor.ingest.committer import QueuedBatch


@dataclass(slots=True)
class MergedGroup:
    """A commit group's fixes per subject (each fix's ``owner`` is its request's position in
    ``jobs``), with each subject's highest step speed where computed for the whole group at
    once (by fix count, so a subject whose fixes were later cut no longer matches)."""

    jobs: list[QueuedBatch]
    fixes: dict[int, SubjectFixes]
    steepest: dict[int, tuple[int, float]]

    def steepest_of(self, sid: int, fixes: SubjectFixes) -> float | None:
        found = self.steepest.get(sid)
        return found[1] if found is not None and found[0] == len(fixes) else None


def merge_group(group: list[QueuedBatch]) -> MergedGroup:
    """Each subject's queued fixes from all the group's requests, in event-time order (then
    device, client key), each fix once; repeats are counted against their requests."""
    # Requests in subject order. When every subject has one request and every request's
    # fixes are in strictly increasing time (phones send them so), that order is already
    # the sorted one and nothing can repeat: no sort and no search for repeats.
    ordered = sorted(range(len(group)), key=lambda i: group[i].device.subject_id)
    jobs = [group[i] for i in ordered]
    sizes = [len(job.batch) for job in jobs]
    subject_ids = [job.device.subject_id for job in jobs]
    simple = all(job.batch.increasing for job in jobs) and len(set(subject_ids)) == len(jobs)
    subject = np.repeat(np.array(subject_ids, np.int64), sizes)
    whole = SubjectFixes.from_arrays(
        np.concatenate([job.batch.ts for job in jobs]),
        np.concatenate([job.batch.lon for job in jobs]),
        np.concatenate([job.batch.lat for job in jobs]),
        np.concatenate([job.batch.accuracy_m for job in jobs]),
        np.concatenate([job.batch.flags for job in jobs]),
        np.concatenate([job.batch.key for job in jobs]),
        np.repeat(np.array([job.device.device_id for job in jobs], np.int32), sizes),
        np.repeat(np.array(ordered, dtype=np.int32), sizes),
    )
    if not simple:
        order = np.lexsort((whole.key, whole.device, whole.ts_us, subject))
        whole, subject = whole.select(order), subject[order]
    if not simple and len(whole) > 1:
        same = (
            (np.diff(subject) == 0)
            & (np.diff(whole.ts_us) == 0)
            & (np.diff(whole.device) == 0)
            & (np.diff(whole.key) == 0)
        )
        if same.any():
            drop = np.concatenate(([False], same))
            for owner in whole.owner[drop].tolist():
                group[owner].duplicates += 1
            whole, subject = whole.select(~drop), subject[~drop]
    if len(whole) == 0:
        return MergedGroup(group, {}, {})
    cuts = (np.flatnonzero(np.diff(subject)) + 1).tolist()
    starts, ends = [0, *cuts], [*cuts, len(whole)]
    sids = subject[starts].tolist()
    return MergedGroup(
        group,
        {sid: whole.slice(a, b) for sid, a, b in zip(sids, starts, ends, strict=True)},
        {
            sid: (b - a, value)
            for sid, a, b, value in zip(
                sids, starts, ends, steepest_steps(whole, starts, ends), strict=True
            )
            if value is not None
        },
    )
