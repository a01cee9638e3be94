"""Group commit: many requests' fixes persisted and evaluated in one transaction.

Requests hand their prepared batches to a ``GroupCommitter`` and wait. A commit loop takes
everything queued, locks the subjects' evaluation-state rows (``FOR UPDATE``, in subject
order, so concurrent processes serialise per subject without deadlocks), drops fixes already
stored, COPYs the rest into ``fixes``, evaluates them in event-time order, writes alerts and
the new evaluation state, and commits. Only then are the requests answered: a 200 means the
fixes are durable, and because fixes, alerts and evaluation state commit together, a crash
at any point either keeps all of a group or none of it — no fix is evaluated twice into a
second alert, none is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import structlog

from correction_monitor.adapters import alerts, integrity, outbox
from correction_monitor.adapters.hot_state import HotState
from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.domain.alerts import (
    EPISODE_TYPES,
    AlertChange,
    AlertEnd,
    AlertOp,
    AlertType,
    lost_contact_key,
)
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.ingest import accounts
from correction_monitor.ingest.batch import FixBatch
from correction_monitor.ingest.evaluate import (
    EvalOutcome,
    SubjectFixes,
    evaluate_quiet,
    evaluate_subject,
    newest_evaluated,
    replay_state,
    replay_subject,
    steepest_steps,
)
from correction_monitor.ingest.profiles import ProfileCache, SubjectProfile
from correction_monitor.metrics import (
    ALERTS_RAISED,
    COMMIT_BATCH_SIZE,
    COMMIT_SECONDS,
    FIXES_ACCEPTED,
    FIXES_DUPLICATE,
    INGEST_OVERLOAD,
    INGEST_QUEUE,
)
from geofences.classify import classify

log = structlog.get_logger("correction_monitor.ingest")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000

ENSURE_STATE_ROWS = """
INSERT INTO subject_eval_state (subject_id) SELECT unnest($1::int[]) ON CONFLICT DO NOTHING
"""
LOCK_STATES = """
SELECT subject_id, state, max_fix_ts, lost_contact_since, lost_contact_total_s
FROM subject_eval_state WHERE subject_id = ANY($1::int[]) ORDER BY subject_id FOR UPDATE
"""
STORED_NEAR = """
SELECT f.subject_id, f.device_id, f.ts, f.client_key, f.lon_e7, f.lat_e7, f.accuracy_m, f.flags
FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r(subject_id, lo, hi)
JOIN fixes f ON f.subject_id = r.subject_id AND f.ts BETWEEN r.lo AND r.hi
"""
MARK_SPIKE = """
UPDATE fixes SET flags = flags | $5
WHERE subject_id = $1 AND device_id = $2 AND ts = $3 AND client_key = $4
"""
SAVE_STATES = """
UPDATE subject_eval_state s SET
    state = u.state,
    max_fix_ts = GREATEST(s.max_fix_ts, u.max_fix_ts),
    last_contact_at = COALESCE(u.contact_at, s.last_contact_at),
    lost_contact_since = CASE WHEN u.contact_at IS NULL THEN s.lost_contact_since END,
    lost_contact_total_s = s.lost_contact_total_s + u.lost_contact_add_s,
    updated_at = now()
FROM unnest($1::int[], $2::jsonb[], $3::timestamptz[], $4::timestamptz[], $5::float8[])
    AS u(subject_id, state, max_fix_ts, contact_at, lost_contact_add_s)
WHERE s.subject_id = u.subject_id
"""
DEVICE_SEEN_EVERY_S = 60.0
MAX_PENDING_POSITIONS = 200_000
MAX_PENDING_EVENTS = 10_000
DEVICE_SEEN = "UPDATE devices SET last_seen_at = $2 WHERE id = ANY($1::int[])"
ENSURE_PARTITION = "SELECT cm_ensure_fix_partition($1::date)"
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


class CommitFailed(Exception):
    """The group holding this request could not be committed; nothing of it was stored."""


class Overloaded(Exception):
    """The commit queue is full; the client should retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("ingest queue is full")
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class IngestResult:
    accepted: int
    duplicates: int


@dataclass(slots=True)
class _Job:
    device: DeviceIdentity
    batch: FixBatch
    protocol: str
    future: asyncio.Future[IngestResult]
    accepted: int = 0
    duplicates: int = 0


def _closed(conn: asyncpg.Connection) -> bool:
    """Whether a lane's pooled connection is gone. When the server ends a session (a
    restart, a fast shutdown) the pool takes the connection back at once and detaches the
    lane's proxy, and then even ``is_closed()`` raises ``InterfaceError``: that means gone
    too, not an error that may end the lane and leave its queued requests unanswered."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


def to_datetime(ts_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=ts_us)


def to_us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class GroupCommitter:
    """Persists and evaluates fixes in groups; one instance per process.

    ``lanes`` commit loops run side by side, each owning the subjects whose id falls in its
    lane, so one subject's fixes are always committed in arrival order by one loop. One
    lane is the default: a process's whole queue then forms each group, and bigger groups
    share the per-group round trips and work among more fixes (measured faster than two
    lanes overlapping their round trips, see docs/benchmarks.md).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        profiles: ProfileCache,
        hot_state: HotState,
        *,
        queue_limit: int,
        lanes: int = 1,
        max_group_fixes: int = 20_000,
    ) -> None:
        self.pool = pool
        self.profiles = profiles
        self.hot_state = hot_state
        self.queue_limit = queue_limit
        self.max_group_fixes = max_group_fixes
        self._queues: list[list[_Job]] = [[] for _ in range(lanes)]
        self._wakeups = [asyncio.Event() for _ in range(lanes)]
        self._queued_fixes = 0
        self._known_days: set[date] = set()
        self._device_seen: dict[int, datetime] = {}
        self._pending_positions: dict[int, dict[str, Any]] = {}
        self._pending_events: list[dict[str, Any]] = []
        self._publish_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def queued_fixes(self) -> int:
        return self._queued_fixes

    async def submit(self, device: DeviceIdentity, batch: FixBatch, protocol: str) -> IngestResult:
        """Queue a prepared batch and wait until it is committed (or raise ``Overloaded``)."""
        if len(batch) == 0:
            return IngestResult(0, 0)
        # An empty queue admits any batch, even one larger than the limit: refusing it would
        # have the phone retry, as Retry-After invites, a request that can never get in.
        if self._queued_fixes and self._queued_fixes + len(batch) > self.queue_limit:
            INGEST_OVERLOAD.inc()
            raise Overloaded()
        lane = device.subject_id % len(self._queues)
        job = _Job(device, batch, protocol, asyncio.get_running_loop().create_future())
        self._queues[lane].append(job)
        self._queued_fixes += len(batch)
        self._wakeups[lane].set()
        return await job.future

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._tasks = [
            asyncio.create_task(self._loop(lane), name=f"group-commit-{lane}")
            for lane in range(len(self._queues))
        ]
        self._tasks.append(asyncio.create_task(self._publisher(), name="hot-state-publisher"))
        try:
            yield
        finally:
            # redis-py and asyncpg wait with Python 3.11's asyncio.wait_for, which swallows a
            # cancellation landing just as the awaited operation completes; the task then
            # carries on and awaiting it once would never return (a stop that hangs). So
            # cancel again until every task has finished.
            pending = set(self._tasks)
            while pending:
                for task in pending:
                    task.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.5)
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self, lane: int) -> None:
        queue, wakeup = self._queues, self._wakeups[lane]
        conn: asyncpg.Connection | None = None
        try:
            while True:
                await wakeup.wait()
                wakeup.clear()
                while queue[lane]:
                    pending, taken, size = queue[lane], 0, 0
                    while taken < len(pending) and size < self.max_group_fixes:
                        size += len(pending[taken].batch)
                        taken += 1
                    group = pending[:taken]
                    del pending[:taken]
                    # Each lane keeps one connection: no pool round trip per commit.
                    if conn is None or _closed(conn):
                        if conn is not None:
                            await self._release(conn)
                        conn = await self._connect(group, size)
                        if conn is None:
                            continue
                    await self._commit_group(conn, group, size)
        finally:
            if conn is not None:
                await self._release(conn)

    async def _connect(self, group: list[_Job], size: int) -> asyncpg.Connection | None:
        """A connection for the lane, or None after failing the group's requests (503):
        whatever PostgreSQL or the network does, the lane itself must live on."""
        try:
            conn: asyncpg.Connection = await self.pool.acquire(timeout=10.0)
        except Exception as exc:  # any failure is answered (503); the lane survives
            log.warning("no database connection for a commit", error=repr(exc))
            self._fail(group, size, exc)
            await asyncio.sleep(0.5)  # do not spin while the database is away
            return None
        return conn

    async def _release(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    def _fail(self, group: list[_Job], size: int, exc: BaseException) -> None:
        self._queued_fixes -= size
        INGEST_QUEUE.set(self._queued_fixes)
        for job in group:
            if not job.future.done():
                job.future.set_exception(CommitFailed(repr(exc)))

    async def _commit_group(self, conn: asyncpg.Connection, group: list[_Job], size: int) -> None:
        started = time.perf_counter()
        # The queue's gauge is set at each commit's start and end, not on every request.
        INGEST_QUEUE.set(self._queued_fixes)
        try:
            events, positions = await self._commit(conn, group)
        except Exception as exc:
            log.exception("group commit failed; requests answered with an error", fixes=size)
            for job in group:
                if not job.future.done():
                    job.future.set_exception(CommitFailed(repr(exc)))
            return
        finally:
            self._queued_fixes -= size
            INGEST_QUEUE.set(self._queued_fixes)
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        COMMIT_BATCH_SIZE.observe(size)
        # Counted once per group and protocol: a metric update costs as much as a small
        # request's share of the commit.
        accepted: dict[str, int] = defaultdict(int)
        duplicates = 0
        for job in group:
            accepted[job.protocol] += job.accepted
            duplicates += job.duplicates
            if not job.future.done():
                job.future.set_result(IngestResult(job.accepted, job.duplicates))
        for protocol, count in accepted.items():
            FIXES_ACCEPTED.labels(protocol).inc(count)
        if duplicates:
            FIXES_DUPLICATE.inc(duplicates)
        self._publish(events, positions)

    def _publish(self, events: list[dict[str, Any]], positions: dict[int, dict[str, Any]]) -> None:
        """Hand a commit's copies for Redis to the publisher task, off the commit path.

        Redis holds copies only: the feed replays events from PostgreSQL and the hot state
        is rebuilt from it, so when Redis lags or is down the backlog is bounded by dropping
        position updates (a newer one always follows) and never blocks a commit.
        """
        self._pending_positions.update(positions)
        self._pending_events.extend(events)
        if len(self._pending_positions) > MAX_PENDING_POSITIONS:
            self._pending_positions.clear()
        if len(self._pending_events) > MAX_PENDING_EVENTS:
            del self._pending_events[: len(self._pending_events) - MAX_PENDING_EVENTS]
        self._publish_wakeup.set()

    async def _publisher(self) -> None:
        while True:
            await self._publish_wakeup.wait()
            self._publish_wakeup.clear()
            positions, self._pending_positions = self._pending_positions, {}
            events, self._pending_events = self._pending_events, []
            await self.hot_state.publish_commit(positions, events)

    def _devices_to_touch(self, group: list[_Job], now: datetime) -> list[int]:
        """Devices whose ``last_seen_at`` is over a minute old (a console field; updating it
        on every commit would write one row per device per commit for nothing)."""
        due = []
        for device_id in sorted({job.device.device_id for job in group if job.accepted}):
            seen = self._device_seen.get(device_id)
            if seen is None or (now - seen).total_seconds() >= DEVICE_SEEN_EVERY_S:
                self._device_seen[device_id] = now
                due.append(device_id)
        if len(self._device_seen) > 500_000:
            self._device_seen.clear()
        return due

    async def _ensure_partitions(self, conn: asyncpg.Connection, days: set[date]) -> None:
        """Create missing daily partitions, each in its own short transaction (before the
        group's transaction, so its locks are not held while the group commits)."""
        missing = days - self._known_days
        if not missing:
            return
        for day in sorted(missing):
            await conn.execute(ENSURE_PARTITION, day)
        self._known_days |= missing

    async def _commit(
        self, conn: asyncpg.Connection, group: list[_Job]
    ) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        for job in group:
            job.duplicates = job.batch.duplicates
        group_fixes = merge_group(group)
        merged = group_fixes.fixes
        days = {
            (EPOCH + timedelta(days=d)).date()
            for d in np.unique(
                np.concatenate([f.ts_us for f in merged.values()] or [np.empty(0, np.int64)])
                // _DAY_US
            ).tolist()
        }
        await self._ensure_partitions(conn, days)
        subject_ids = sorted(merged)
        now = datetime.now(UTC)
        covered_gap_us = round(self.profiles.policy.ingest.covered_gap_s * 1e6)
        to_copy: list[tuple[int, SubjectFixes]] = []
        alert_ops: list[AlertOp] = []
        spikes: list[tuple[int, int, datetime, int]] = []
        saved: tuple[list[Any], ...] = ([], [], [], [], [])
        positions: dict[int, dict[str, Any]] = {}
        reconciled: list[alerts.Change] = []
        async with conn.transaction():
            rows = {r["subject_id"]: r for r in await conn.fetch(LOCK_STATES, subject_ids)}
            if len(rows) < len(subject_ids):  # subjects created before their state row
                await conn.execute(ENSURE_STATE_ROWS, subject_ids)
                rows = {r["subject_id"]: r for r in await conn.fetch(LOCK_STATES, subject_ids)}
            profiles = await self.profiles.get_many(conn, subject_ids)
            near = await _drop_stored(conn, group, merged, rows, covered_gap_us)
            owners = np.concatenate([f.owner for f in merged.values()])
            for number, count in enumerate(np.bincount(owners, minlength=len(group)).tolist()):
                group[number].accepted += count
            contradicting = _set_aside_contradictions(merged, near, rows, covered_gap_us)
            activity = _classify_shared_areas(profiles, merged)
            for sid in subject_ids:
                fixes = merged[sid]
                row = rows[sid]
                profile = profiles[sid]
                start = _replay_start(row["state"], fixes)
                if start is None:
                    quiet = evaluate_quiet(
                        profile,
                        row["state"],
                        fixes,
                        activity.get(sid),
                        group_fixes.steepest_of(sid, fixes),
                    )
                    outcome = quiet or evaluate_subject(
                        profile, row["state"], fixes, now, activity=activity.get(sid)
                    )
                    alert_ops.extend(outcome.alert_ops)
                else:
                    outcome, fixes = await _replay(
                        conn, sid, profile, row["state"], start, fixes, now
                    )
                    # The fixes that made the replay: evidence for any alert it disproves.
                    seen_us = round((newest_evaluated(row["state"]) or 0.0) * 1e6)
                    late = fixes.select(np.flatnonzero(fixes.ts_us <= seen_us))
                    reconciled.extend(
                        await alerts.reconcile_episodes(
                            conn,
                            sid,
                            list(EPISODE_TYPES),
                            to_datetime(round(start["last_ts"] * 1e6)),
                            outcome.alert_ops,
                            accounts.fixes_evidence(late),
                            len(late),
                        )
                    )
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
                await conn.copy_to_table(
                    "fixes",
                    # A memoryview: asyncpg sends a buffer as it is (bytes would be taken
                    # for a file path, a file goes through a thread pool).
                    source=memoryview(copy_payload(to_copy)),
                    columns=FIX_COLUMNS,
                    format="binary",
                )
            for spike in spikes:
                await conn.execute(MARK_SPIKE, *spike, FixFlag.SPIKE)
            changes = reconciled + await alerts.apply(conn, alert_ops)
            await conn.execute(SAVE_STATES, *saved)
            devices = self._devices_to_touch(group, now)
            if devices:
                await conn.execute(DEVICE_SEEN, devices, now)
            # Last: appending takes the event log's ordering lock until the commit.
            event_ids = await outbox.append(conn, [alerts.event_of(c) for c in changes])
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


# Contradicting fixes are another account, never evaluated: not replayed either.
STORED_SINCE = """
SELECT ts, device_id, lon_e7, lat_e7, client_key, accuracy_m, flags FROM fixes
WHERE subject_id = $1 AND ts > $2 AND flags & $3 = 0 ORDER BY ts
"""
SET_FLAGS = """
UPDATE fixes SET flags = $5 WHERE subject_id = $1 AND device_id = $2 AND ts = $3
    AND client_key = $4
"""
_DERIVED_FLAGS = FixFlag.SPIKE | FixFlag.LATE


def _replay_start(state: dict[str, Any] | None, fixes: SubjectFixes) -> dict[str, Any] | None:
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


async def _replay(
    conn: asyncpg.Connection,
    sid: int,
    profile: SubjectProfile,
    state: dict[str, Any],
    start: dict[str, Any],
    fixes: SubjectFixes,
    now: datetime,
) -> tuple[EvalOutcome, SubjectFixes]:
    """Re-evaluate a subject from a checkpoint of its ``state`` (``start``) over its stored
    fixes since then and the new ones, in time order (fixes arrived late), keeping the
    state's later checkpoints where they still hold. Stored fixes whose spike/late flags
    change are updated; returns the outcome and the new fixes with their flags."""
    since_us = round(start["last_ts"] * 1e6)
    rows = await conn.fetch(STORED_SINCE, sid, to_datetime(since_us), FixFlag.CONTRADICTING)
    n = len(rows)
    stored_flags = np.fromiter((r["flags"] for r in rows), np.int16, n)
    old = SubjectFixes(
        ts_us=np.fromiter((to_us(r["ts"]) for r in rows), np.int64, n),
        lon=np.fromiter((r["lon_e7"] for r in rows), np.float64, n) / 1e7,
        lat=np.fromiter((r["lat_e7"] for r in rows), np.float64, n) / 1e7,
        accuracy_m=np.fromiter((r["accuracy_m"] for r in rows), np.float64, n),
        flags=stored_flags & np.int16(~_DERIVED_FLAGS),
        key=np.fromiter((r["client_key"] for r in rows), np.int32, n),
        device=np.fromiter((r["device_id"] for r in rows), np.int32, n),
        owner=np.full(n, -1, dtype=np.int32),
    )
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
        await conn.executemany(SET_FLAGS, changed)
    return outcome, merged.select(np.nonzero(~was_stored)[0])


def _classify_shared_areas(
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


@dataclass(slots=True)
class MergedGroup:
    """A commit group's fixes per subject, with each subject's highest step speed where
    computed for the whole group at once (by fix count, so a subject whose fixes were
    later cut no longer matches)."""

    fixes: dict[int, SubjectFixes]
    steepest: dict[int, tuple[int, float]]

    def steepest_of(self, sid: int, fixes: SubjectFixes) -> float | None:
        found = self.steepest.get(sid)
        return found[1] if found is not None and found[0] == len(fixes) else None


def merge_group(group: list[_Job]) -> MergedGroup:
    """Each subject's queued fixes from all the group's requests, in event-time order (then
    device, client key), each fix once; repeats are counted against their requests.

    The whole group is converted, sorted and deduplicated as one set of arrays and then cut
    into per-subject views, so a group of many one-fix requests costs a few array passes
    rather than a few per subject.
    """
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
        return MergedGroup({}, {})
    cuts = (np.flatnonzero(np.diff(subject)) + 1).tolist()
    starts, ends = [0, *cuts], [*cuts, len(whole)]
    sids = subject[starts].tolist()
    return MergedGroup(
        {sid: whole.slice(a, b) for sid, a, b in zip(sids, starts, ends, strict=True)},
        {
            sid: (b - a, value)
            for sid, a, b, value in zip(
                sids, starts, ends, steepest_steps(whole, starts, ends), strict=True
            )
            if value is not None
        },
    )


async def _drop_stored(
    conn: asyncpg.Connection,
    group: list[_Job],
    merged: dict[int, SubjectFixes],
    rows: dict[int, asyncpg.Record],
    reach_us: int,
) -> dict[int, SubjectFixes]:
    """Dedupe stage, against the database. Only fixes not newer than the subject's newest
    stored fix can be repeats, so only those are looked up (a rare, indexed range read).

    The same read reaches ``reach_us`` (microseconds) further on either side and returns,
    for each subject that has such fixes, the stored fixes it found: what its devices had
    already reported around the late fixes (:func:`_set_aside_contradictions`).
    """
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
    found: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for r in await conn.fetch(STORED_NEAR, ids, lows, highs):
        found[r["subject_id"]].append(r)
    near: dict[int, SubjectFixes] = {}
    for sid in ids:
        records = found[sid]
        n = len(records)
        near[sid] = SubjectFixes(
            ts_us=np.fromiter((to_us(r["ts"]) for r in records), np.int64, n),
            lon=np.fromiter((r["lon_e7"] for r in records), np.float64, n) / 1e7,
            lat=np.fromiter((r["lat_e7"] for r in records), np.float64, n) / 1e7,
            accuracy_m=np.fromiter((r["accuracy_m"] for r in records), np.float64, n),
            flags=np.fromiter((r["flags"] for r in records), np.int16, n),
            key=np.fromiter((r["client_key"] for r in records), np.int32, n),
            device=np.fromiter((r["device_id"] for r in records), np.int32, n),
            owner=np.full(n, -1, dtype=np.int32),
        )
        fixes = merged[sid]
        seen = {
            (int(d), int(t), int(k))
            for d, t, k in zip(near[sid].device, near[sid].ts_us, near[sid].key, strict=True)
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
                group[int(owner)].duplicates += 1
            merged[sid] = fixes.select(~repeat)
    return near


@dataclass(slots=True)
class _Contradiction:
    """A subject's contradicting fixes of one commit (flagged, to be stored, never
    evaluated) and, per device, the evidence of both accounts."""

    fixes: SubjectFixes
    evidence: list[dict[str, Any]]


def _set_aside_contradictions(
    merged: dict[int, SubjectFixes],
    near: dict[int, SubjectFixes],
    rows: dict[int, asyncpg.Record],
    covered_gap_us: int,
) -> dict[int, _Contradiction]:
    """Flag ``backfill`` the fixes of the subjects in ``near`` that are older than their
    newest stored fix, and take the contradicting ones (``ingest/accounts.py``) out of
    ``merged``, so that they are stored but never evaluated."""
    out: dict[int, _Contradiction] = {}
    for sid, stored in near.items():
        fixes = merged[sid]
        if len(fixes) == 0:
            continue
        # Strictly older: a second fix at the newest instant still arrived live.
        fixes.flags[fixes.ts_us < to_us(rows[sid]["max_fix_ts"])] |= FixFlag.BACKFILL
        covered, before, after = accounts.contradicting(fixes, stored, covered_gap_us)
        if not covered.any():
            continue
        told = np.flatnonzero(covered)
        late = fixes.select(told)
        late.flags |= FixFlag.CONTRADICTING
        evidence = []
        for device in np.unique(late.device).tolist():
            mine = np.flatnonzero(late.device == device)
            evidence.append(
                accounts.contradiction_evidence(
                    late.select(mine),
                    stored,
                    before[told][mine],
                    after[told][mine],
                    covered_gap_us / 1e6,
                )
            )
        out[sid] = _Contradiction(late, evidence)
        merged[sid] = fixes.select(np.flatnonzero(~covered))
    return out


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
