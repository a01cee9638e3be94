"""Late-fix replay: a subject re-evaluated from a checkpoint when fixes arrive late.

A fix older than the newest one a subject's evaluation has seen (an offline buffer sent after
the live fix, a retried request overtaken by the next one) cannot be fed to episode machines
that already moved past it. The subject is replayed instead, inside the commit's transaction:
from the newest checkpoint before the late fix (``evaluate.replay_state``), over its stored
fixes since then and the new ones in time order, and its episode alerts are made to match
the replay's (``alerts.reconcile_episodes``). The outcome is what in-order delivery would
have given.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import numpy as np

from correction_monitor.adapters import alerts, fix_store
from correction_monitor.domain.alerts import EPISODE_TYPES, AppliedChange
from correction_monitor.domain.fix_arrays import SubjectFixes, to_datetime
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.ingest import accounts
from correction_monitor.ingest.evaluate import (
    EvalOutcome,
    newest_evaluated,
    replay_state,
    replay_subject,
)
from correction_monitor.ingest.profiles import SubjectProfile

# Flags the evaluation derives, and so re-derives when it replays.
_DERIVED_FLAGS = FixFlag.SPIKE | FixFlag.LATE


def replay_start(state: dict[str, Any] | None, fixes: SubjectFixes) -> dict[str, Any] | None:
    """The checkpoint to replay from when some of ``fixes`` are not newer than what the
    subject's state has seen; None when they all follow on (or are all too old to replay).

    A fix at the newest time seen is replayed too: fixes sharing a timestamp are evaluated
    in (device, client key) order, and the one stored may come after it in that order.

    Fixes older than every checkpoint are only stored (the replay flags them late); they must
    not keep the batch's other late fixes, still within reach of a checkpoint, from replay.
    """
    newest = newest_evaluated(state)
    if state is None or newest is None or len(fixes) == 0:
        return None
    if int(fixes.ts_us[0]) / 1e6 > newest:  # fixes are sorted by time
        return None  # all follow on: the common case
    ts_s = fixes.ts_us / 1e6
    checkpoints = state.get("checkpoints") or []
    if not checkpoints:
        return None
    reachable = ts_s[ts_s > checkpoints[0][0]]
    if len(reachable) == 0 or reachable.min() > newest:
        return None
    return replay_state(state, float(reachable.min()))


async def replay(
    conn: asyncpg.Connection,
    sid: int,
    profile: SubjectProfile,
    state: dict[str, Any],
    start: dict[str, Any],
    fixes: SubjectFixes,
    now: datetime,
) -> tuple[EvalOutcome, SubjectFixes, list[AppliedChange]]:
    """Re-evaluate a subject from a checkpoint of its ``state`` (``start``, from
    :func:`replay_start`) over its stored fixes since then and the new ``fixes``, in time
    order, keeping the state's later checkpoints where they still hold, and reconcile its
    episode alerts with the replay's. Stored fixes whose spike/late flags change are
    updated. Returns the outcome, the new fixes with their flags, and the alert changes."""
    since = to_datetime(round(start["last_ts"] * 1e6))
    old = await fix_store.stored_since(conn, sid, since)
    stored_flags = old.flags
    old.flags = stored_flags & np.int16(~_DERIVED_FLAGS)
    fresh = fixes.select(np.arange(len(fixes)))
    fresh.flags &= np.int16(~_DERIVED_FLAGS)
    merged = SubjectFixes.concat([old, fresh])
    order = np.lexsort((merged.key, merged.device, merged.ts_us))
    merged = merged.select(order)
    resume_at = [c[0] for c in state.get("checkpoints", []) if c[0] > start["last_ts"]]
    outcome = replay_subject(profile, start, merged, now, resume_at)
    was_stored = merged.owner < 0
    stored_now = merged.select(np.nonzero(was_stored)[0])
    changed = []
    old_by_key = {
        (int(d), int(t), int(k)): int(f)
        for d, t, k, f in zip(old.device, old.ts_us, old.key, stored_flags, strict=True)
    }
    for d, t, k, f in zip(
        stored_now.device, stored_now.ts_us, stored_now.key, stored_now.flags, strict=True
    ):
        if old_by_key[(int(d), int(t), int(k))] != int(f):
            changed.append((sid, int(d), to_datetime(int(t)), int(k), int(f)))
    if changed:
        await fix_store.set_flags(conn, changed)
    fixes = merged.select(np.nonzero(~was_stored)[0])
    # The fixes that made the replay: evidence for any alert it disproves.
    seen_us = round((newest_evaluated(state) or 0.0) * 1e6)
    late = fixes.select(np.flatnonzero(fixes.ts_us <= seen_us))
    changes = await alerts.reconcile_episodes(
        conn,
        sid,
        list(EPISODE_TYPES),
        since,
        outcome.alert_ops,
        accounts.fixes_evidence(late),
        len(late),
        detected_at=now,
    )
    return outcome, fixes, changes
