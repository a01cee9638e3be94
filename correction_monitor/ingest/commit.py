"""The commit transaction: a merged commit group's fixes persisted and evaluated at once.

In one transaction, on one connection: lock the subjects' evaluation-state rows (in subject
order, so processes contending for a subject take turns without deadlocks), drop the fixes
already stored, set aside the ones that contradict their device's stored account, evaluate
each subject's new fixes in event-time order from its stored state (replaying it when fixes
came late), ``COPY`` the fixes, write alert openings and endings and the new states, and
append the alerts' events last. Fixes, the state that consumed them and the alerts they
caused commit together: a crash either keeps all of a group or none of it, so no fix is
evaluated twice into a second alert, and none is skipped.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from correction_monitor.adapters import alerts, eval_state, fix_store, integrity, outbox
from correction_monitor.domain.alerts import (
    AlertChange,
    AlertEnd,
    AlertOp,
    AlertType,
    AppliedChange,
    lost_contact_key,
)
from correction_monitor.domain.events import event_of
from correction_monitor.domain.fix_arrays import SubjectFixes, to_datetime, to_us
from correction_monitor.domain.integrity import Rule
from correction_monitor.ingest import accounts, signals
from correction_monitor.ingest.evaluate import evaluate_quiet, evaluate_subject
from correction_monitor.ingest.merge import MergedGroup
from correction_monitor.ingest.profiles import ProfileCache, SubjectProfile
from correction_monitor.ingest.replay import replay, replay_start
from correction_monitor.metrics import ALERTS_RAISED
from geofences.classify import classify

Events = list[dict[str, Any]]
"""The committed alert events, as the live feed's wake-up tells them."""
Positions = dict[int, dict[str, Any]]
"""Subjects' newest positions stored by the commit, for the hot state."""


async def commit_group(
    conn: asyncpg.Connection,
    group: MergedGroup,
    profiles: ProfileCache,
    last_seen: eval_state.LastSeen,
    live_devices: signals.LiveDevices | None = None,
    now: datetime | None = None,
) -> tuple[Events, Positions]:
    """Persist and evaluate ``group`` in one transaction on ``conn``; count each request's
    fixes accepted and repeated on its job. Returns the committed events and the subjects'
    newest positions, to publish once committed.

    Integrity signals (``ingest/signals.py``) are raised in the same transaction;
    ``live_devices`` remembers which pairs of devices were signalled (a fresh one per call
    when not given). ``now`` is the service's clock (the wall clock when not given): alerts
    raised are detected then."""
    live_devices = live_devices or signals.LiveDevices()
    integrity = profiles.policy.integrity
    jobs, merged = group.jobs, group.fixes
    subject_ids = sorted(merged)
    now = now or datetime.now(UTC)
    covered_gap_us = round(profiles.policy.ingest.covered_gap_s * 1e6)
    to_copy: list[tuple[int, SubjectFixes]] = []
    alert_ops: list[AlertOp] = []
    spikes: list[fix_store.FixKey] = []
    saved: tuple[list[Any], ...] = ([], [], [], [], [])
    positions: Positions = {}
    reconciled: list[AppliedChange] = []
    async with conn.transaction():
        rows = await eval_state.lock(conn, subject_ids)
        subject_profiles = await profiles.get_many(conn, subject_ids)
        near = await _drop_stored(conn, group, rows, covered_gap_us)
        owners = np.concatenate([f.owner for f in merged.values()])
        for number, count in enumerate(np.bincount(owners, minlength=len(jobs)).tolist()):
            jobs[number].accepted += count
        # One test over the group: only a group with mock fixes does any work for them.
        mocked = integrity.enabled(Rule.MOCK_LOCATION) and signals.has_mock(list(merged.values()))
        contradicting = accounts.set_aside(
            merged, near, {sid: to_us(rows[sid]["max_fix_ts"]) for sid in near}, covered_gap_us
        )
        activity = classify_shared_areas(subject_profiles, merged)
        for sid in subject_ids:
            fixes = merged[sid]
            row = rows[sid]
            profile = subject_profiles[sid]
            start = replay_start(row["state"], fixes)
            if start is None:
                quiet = evaluate_quiet(
                    profile,
                    row["state"],
                    fixes,
                    activity.get(sid),
                    group.steepest_of(sid, fixes),
                )
                outcome = quiet or evaluate_subject(
                    profile, row["state"], fixes, now, activity=activity.get(sid)
                )
                alert_ops.extend(outcome.alert_ops)
            else:
                outcome, fixes, changes = await replay(
                    conn, sid, profile, row["state"], start, fixes, now
                )
                reconciled.extend(changes)
            if sid in contradicting:
                told = contradicting[sid]
                to_copy.append((sid, told.fixes))
                alert_ops.extend(
                    await _integrity_alerts(conn, sid, profile.org_unit_id, told.evidence)
                )
            spikes.extend(
                (sid, device, to_datetime(ts_us), key) for device, ts_us, key in outcome.spikes
            )
            if len(fixes):
                to_copy.append((sid, fixes))
            accepted = len(fixes) > 0
            lost_add = 0.0
            if accepted and row["lost_contact_since"] is not None:
                lost_add = max(0.0, (now - row["lost_contact_since"]).total_seconds())
                alert_ops.append(
                    AlertEnd(
                        subject_id=sid,
                        org_unit_id=profile.org_unit_id,
                        type=AlertType.LOST_CONTACT,
                        episode_key=lost_contact_key(row["lost_contact_since"]),
                        ended_at=now,
                        evidence={"lost_contact_s": lost_add},
                    )
                )
            saved[0].append(sid)
            saved[1].append(outcome.state)
            saved[2].append(to_datetime(int(fixes.ts_us.max())) if accepted else None)
            saved[3].append(now if accepted else None)
            saved[4].append(lost_add)
            newest = int(np.argmax(fixes.ts_us)) if accepted else -1
            # Late fixes are history: the position shown stays the newest one stored.
            if accepted and (
                row["max_fix_ts"] is None or int(fixes.ts_us[newest]) > to_us(row["max_fix_ts"])
            ):
                positions[sid] = {
                    "ts": int(fixes.ts_us[newest]) / 1e6,
                    "lon": float(fixes.lon[newest]),
                    "lat": float(fixes.lat[newest]),
                    "accuracy_m": float(fixes.accuracy_m[newest]),
                    "org_unit_id": profile.org_unit_id,
                }
        if to_copy:
            await fix_store.copy_fixes(conn, to_copy)
        if spikes:
            await fix_store.mark_spikes(conn, spikes)
        live = await last_seen.touch(
            conn,
            {job.device.device_id for job in jobs if job.accepted},
            now,
            signals.since(now, integrity),
        )
        found: dict[int, dict[Rule, list[dict[str, Any]]]] = defaultdict(dict)
        if mocked:
            for sid, stored in to_copy:
                items = signals.mock_items(stored)
                if items:
                    found[sid].setdefault(Rule.MOCK_LOCATION, []).extend(items)
        told_live, pairs = live_devices.items(live, now)
        for sid, items in told_live.items():
            found[sid][Rule.NEW_DEVICE] = items
        if found:
            org_units = {sid: subject_profiles[sid].org_unit_id for sid in found}
            alert_ops.extend(await signals.signal_alerts(conn, org_units, found, integrity))
        changes = reconciled + await alerts.apply(conn, alert_ops, now)
        await eval_state.save(conn, *saved)
        # Last: appending takes the event log's ordering lock until the commit.
        event_ids = await outbox.append(conn, [event_of(c) for c in changes])
    live_devices.remember(pairs, now)
    events = []
    for event_id, change in zip(event_ids, changes, strict=True):
        op = change.op
        if change.kind is AlertChange.OPENED:
            ALERTS_RAISED.labels(op.type).inc()
        events.append(
            {
                "event_id": event_id,
                "kind": change.kind.value,
                "org_unit_id": op.org_unit_id,
                "subject_id": op.subject_id,
                "type": op.type,
            }
        )
    return events, positions


async def _drop_stored(
    conn: asyncpg.Connection,
    group: MergedGroup,
    rows: dict[int, asyncpg.Record],
    reach_us: int,
) -> dict[int, SubjectFixes]:
    """Dedupe stage, against the database. Only fixes not newer than the subject's newest
    stored fix can be repeats, so only those are looked up (a rare, indexed range read).

    The same read reaches ``reach_us`` (microseconds) further on either side and returns,
    for each subject that has such fixes, the stored fixes it found: what its devices had
    already reported around the late fixes (``accounts.set_aside``).
    """
    merged = group.fixes
    ids, lows, highs = [], [], []
    for sid, fixes in merged.items():
        max_ts = rows[sid]["max_fix_ts"]
        if max_ts is None or len(fixes) == 0:
            continue
        max_us = to_us(max_ts)
        if int(fixes.ts_us[0]) > max_us:  # fixes are sorted by time
            continue  # all newer than anything stored: the common case
        old = fixes.ts_us <= max_us
        ids.append(sid)
        lows.append(to_datetime(int(fixes.ts_us[old].min()) - reach_us))
        highs.append(to_datetime(int(fixes.ts_us[old].max()) + reach_us))
    if not ids:
        return {}
    near = await fix_store.stored_near(conn, ids, lows, highs)
    for sid, stored in near.items():
        fixes = merged[sid]
        seen = {
            (int(d), int(t), int(k))
            for d, t, k in zip(stored.device, stored.ts_us, stored.key, strict=True)
        }
        repeat = np.fromiter(
            (
                (int(d), int(t), int(k)) in seen
                for d, t, k in zip(fixes.device, fixes.ts_us, fixes.key, strict=True)
            ),
            np.bool_,
            len(fixes),
        )
        if repeat.any():
            for owner in fixes.owner[repeat]:
                group.jobs[int(owner)].duplicates += 1
            merged[sid] = fixes.select(~repeat)
    return near


async def _integrity_alerts(
    conn: asyncpg.Connection, sid: int, org_unit_id: int, evidence: list[dict[str, Any]]
) -> list[AlertOp]:
    """A device_integrity alert for each new contradiction episode; a contradiction that
    belongs to an unresolved alert's episode (a burst sent in parts) adds to its evidence."""
    ops: list[AlertOp] = []
    known = await integrity.unresolved(conn, sid, accounts.REASON)
    for told in evidence:
        for alert_id, kept in known:
            if accounts.joins(kept, told):
                await integrity.set_evidence(conn, alert_id, accounts.merged(kept, told))
                break
        else:
            ops.append(accounts.integrity_alert(sid, org_unit_id, told))
    return ops


def classify_shared_areas(
    profiles: dict[int, SubjectProfile], merged: dict[int, SubjectFixes]
) -> dict[int, npt.NDArray[np.int8]]:
    """Activity-area membership of every fix, one vectorised call per shared area: the many
    subjects of a county share one prepared polygon, so a group of one-fix requests costs one
    classification, not one per subject."""
    by_area: dict[int, list[int]] = defaultdict(list)
    for sid, fixes in merged.items():
        area = profiles[sid].activity_area
        if area is not None and len(fixes):
            by_area[id(area)].append(sid)
    out: dict[int, npt.NDArray[np.int8]] = {}
    for sids in by_area.values():
        area = profiles[sids[0]].activity_area
        assert area is not None
        parts = [merged[sid] for sid in sids]
        membership = classify(
            area,
            np.concatenate([p.lon for p in parts]),
            np.concatenate([p.lat for p in parts]),
            np.concatenate([p.accuracy_m for p in parts]),
        )
        at = 0
        for sid, part in zip(sids, parts, strict=True):
            out[sid] = membership[at : at + len(part)]
            at += len(part)
    return out
