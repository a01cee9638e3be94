"""Scheduled work, each job declaring where it runs: in every process, or once across all.

The registry (:func:`standard_jobs`) lists every periodic job of the service with its
interval and its guarantee:

- **once across processes** (``once_across_processes=True``): time is cut into slots of the
  job's interval (aligned to the epoch, so every process computes the same slots). Whichever
  process comes first in a slot claims it in ``job_runs`` while holding a transaction-scoped
  advisory lock derived from the job's name, runs the job, records how it went, and commits.
  Other processes find the lock taken or the slot claimed and skip it. A claimed slot is never
  run again after a restart; a process that dies mid-run leaves its claim uncommitted, so
  the slot is run again by the next process to reach it.
- **in every process**: work on the process's own state (its Redis copies' health), or work
  that is already safe to share, such as firing durable timers (``SKIP LOCKED``).

apscheduler only ticks the jobs (:func:`build_scheduler`); :class:`JobRunner` holds the
guarantees, so tests run jobs directly with a moved clock.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from correction_monitor.adapters import officers, timers
from correction_monitor.adapters.hot_state import HotState
from correction_monitor.adapters.outbox import lock_key
from correction_monitor.domain.clock import Clock
from correction_monitor.policy import Policy
from correction_monitor.service import checkin_deadlines, lost_contact, tasks
from correction_monitor.service.bootstrap import Services
from correction_monitor.service.checkins import LayOutCheckins
from correction_monitor.service.ladder import ProposeLenient
from correction_monitor.service.officers import LOGIN_FAILURE_WINDOW
from correction_monitor.service.patrols import PlanComingNights
from correction_monitor.service.reports import PublishAlertQualityMetrics

log = structlog.get_logger("correction_monitor.jobs")

LATEST_FROM_STATE = """
SELECT e.subject_id, s.org_unit_id, e.state->'ref' AS ref FROM subject_eval_state e
JOIN subjects s ON s.id = e.subject_id WHERE e.state->'ref' IS NOT NULL
  AND e.state->'ref' <> 'null'::jsonb
"""


async def ensure_partitions(
    pool: asyncpg.Pool, days_ahead: int = 2, today: date | None = None
) -> None:
    """Create today's and the next days' fix partitions ahead of the first fix."""
    today = today or datetime.now(UTC).date()
    async with pool.acquire() as conn:
        for offset in range(-1, days_ahead + 1):
            await conn.execute(
                "SELECT cm_ensure_fix_partition($1::date)", today + timedelta(offset)
            )


async def rebuild_hot_state(pool: asyncpg.Pool, hot: HotState) -> int:
    """Copy every subject's latest plausible position from PostgreSQL into Redis."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(LATEST_FROM_STATE)
    positions = {}
    for row in rows:
        ts, lon, lat, acc = row["ref"][:4]
        positions[row["subject_id"]] = {
            "ts": ts,
            "lon": lon,
            "lat": lat,
            "accuracy_m": acc,
            "org_unit_id": row["org_unit_id"],
        }
    for start in range(0, len(positions), 5000):
        chunk = dict(list(positions.items())[start : start + 5000])
        if not await hot.set_latest_positions(chunk):
            return 0
    return len(positions)


class HotStateWatch:
    """Rebuilds the Redis copies from PostgreSQL whenever they may have been lost.

    Two signs are watched: a Redis operation failed since the last rebuild (copies written
    during an outage were dropped), or the marker the last rebuild left is gone (Redis
    restarted without persistence or was flushed, perhaps between two ticks and with no
    operation failing at all).
    """

    def __init__(self, pool: asyncpg.Pool, hot: HotState) -> None:
        self.pool = pool
        self.hot = hot
        # ``hot.failures`` when the last complete rebuild began; None before the first.
        self._failures_at_rebuild: int | None = None

    async def tick(self) -> None:
        """Rebuild when Redis answers and its copies may be stale or gone."""
        failures = self.hot.failures
        if not await self.hot.ping():
            return
        if failures == self._failures_at_rebuild and await self.hot.copies_present():
            return
        count = await rebuild_hot_state(self.pool, self.hot)
        # A failure during the rebuild moves the counter, so the next tick tries again.
        if await self.hot.mark_rebuilt() and self.hot.failures == failures:
            self._failures_at_rebuild = failures
            log.info("hot state rebuilt from PostgreSQL", subjects=count)


FIRED_TIMERS_KEPT = timedelta(days=7)


async def purge_fired_timers(pool: asyncpg.Pool, now: datetime) -> int:
    """Forget timers that fired over a week before ``now``; returns how many. A fired timer
    is kept that long for operators to see what fired when, and no longer: every check-in
    window and SLA leaves one."""
    async with pool.acquire() as conn:
        return await timers.purge_fired(conn, now - FIRED_TIMERS_KEPT)


async def purge_expired_tokens(pool: asyncpg.Pool) -> None:
    """Forget officer tokens a day after they expired (only their hashes are kept)."""
    async with pool.acquire() as conn:
        await officers.purge_expired_tokens(conn)


async def purge_login_failures(pool: asyncpg.Pool, now: datetime) -> int:
    """Forget failed logins that have left the throttle's window (they no longer count);
    returns how many."""
    async with pool.acquire() as conn:
        return await officers.purge_login_failures(conn, now - LOGIN_FAILURE_WINDOW)


def sweep_interval_s(policy: Policy) -> float:
    """How often to look for lost contact: a quarter of the shortest threshold, 5–60 s, so
    an alert comes at most a quarter threshold late whatever the province's numbers."""
    shortest = min(level.lost_contact_after_s for level in policy.levels.values())
    return float(min(60.0, max(5.0, shortest / 4)))


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic job: ``run`` every ``every_s`` seconds, where ``once_across_processes``
    says (see the module docstring); ``at_start`` runs it as soon as the process starts."""

    name: str
    every_s: float
    run: Callable[[], Awaitable[object]]
    once_across_processes: bool
    at_start: bool = False

    @property
    def lock_key(self) -> int:
        return lock_key(f"cm:job:{self.name}")

    def slot(self, now: datetime) -> datetime:
        """The start of the interval ``now`` falls in (epoch-aligned).

        >>> job = Job("x", 60, lambda: None, True)  # type: ignore[arg-type,return-value]
        >>> job.slot(datetime(2026, 1, 1, 0, 1, 59, tzinfo=UTC)).isoformat()
        '2026-01-01T00:01:00+00:00'
        """
        epoch_s = now.timestamp()
        return datetime.fromtimestamp(math.floor(epoch_s / self.every_s) * self.every_s, UTC)


CLAIM_SLOT = """
INSERT INTO job_runs (name, slot, started_at) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET slot = EXCLUDED.slot, started_at = EXCLUDED.started_at,
    finished_at = NULL, outcome = NULL, runs = job_runs.runs + 1
WHERE job_runs.slot < EXCLUDED.slot
RETURNING name
"""
FINISH_SLOT = "UPDATE job_runs SET finished_at = $2, outcome = $3 WHERE name = $1"


class JobRunner:
    """Runs jobs with their declared guarantee, against an injectable clock."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    async def run(self, job: Job) -> bool:
        """Run ``job`` now if its guarantee allows; True when this process ran it."""
        if not job.once_across_processes:
            await job.run()
            return True
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", job.lock_key):
                return False  # another process is running it
            now = self.clock.now()
            if await conn.fetchval(CLAIM_SLOT, job.name, job.slot(now), now) is None:
                return False  # this slot has run already
            outcome = "ok"
            try:
                await job.run()
            except Exception as exc:
                # The slot stays claimed: the next slot tries again, as a tick would.
                outcome = f"failed: {exc!r}"[:500]
                log.exception("scheduled job failed", job=job.name)
            await conn.execute(FINISH_SLOT, job.name, self.clock.now(), outcome)
        return True


ALERT_QUALITY_METRICS_EVERY_S = 60.0
"""How often each process refreshes its alert-quality gauges (service/reports.py)."""
CHECKIN_LAYOUT_EVERY_S = 300.0
"""How often subjects' check-in windows and challenges are laid out ahead."""
LENIENT_PROPOSALS_EVERY_S = 86400.0
"""How often subjects clean long enough at normal are proposed lenient (daily)."""
PATROL_PLANS_EVERY_S = 900.0
"""How often units past their ``plan_at`` hour without tonight's patrol plan get a draft."""
TASK_ESCALATIONS_EVERY_S = 5.0
"""How often each process escalates tasks past their SLA: an escalation comes at most this
late (plus the sweep's own time), against SLAs of a quarter of an hour and more."""
CHECKIN_DEADLINES_EVERY_S = 5.0
"""How often each process closes missed windows and sends due reminders: a missed window's
alert comes at most this late (plus the sweep's own time), well within the minute allowed."""


def standard_jobs(
    pool: asyncpg.Pool, policy: Policy, hot: HotState, services: Services
) -> list[Job]:
    """Every periodic job of a service process, on the services' clock."""
    watch = HotStateWatch(pool, hot)
    clock, timers, consumers = services.clock, services.timers, services.consumers

    async def sweep() -> int:
        return await services.handle(lost_contact.SweepLostContact(clock.now()))

    return [
        Job("lost-contact-sweep", sweep_interval_s(policy), sweep, once_across_processes=True),
        Job(
            "fix-partitions",
            3600,
            lambda: ensure_partitions(pool, today=clock.now().date()),
            once_across_processes=True,
            at_start=True,
        ),
        Job("token-purge", 3600, lambda: purge_expired_tokens(pool), once_across_processes=True),
        Job(
            "login-failure-purge",
            900,
            lambda: purge_login_failures(pool, clock.now()),
            once_across_processes=True,
        ),
        Job(
            "timer-purge",
            3600,
            lambda: purge_fired_timers(pool, clock.now()),
            once_across_processes=True,
        ),
        # Each process watches its own Redis client's failures (see HotStateWatch).
        Job("hot-state-watch", 5, watch.tick, once_across_processes=False, at_start=True),
        # Shared safely: due timers are taken with SKIP LOCKED.
        Job("timers", 1, timers.fire_due, once_across_processes=False, at_start=True),
        # Shared safely: each consumer's cursor is taken with SKIP LOCKED.
        Job("event-consumers", 1, consumers.run_all, once_across_processes=False),
        # Lays out the windows and challenges of every subject falling behind, in batches
        # (service/checkins.py); a read of a subject's check-ins lays it out first anyway.
        Job(
            "checkin-layout",
            CHECKIN_LAYOUT_EVERY_S,
            lambda: services.handle(LayOutCheckins(clock.now())),
            once_across_processes=True,
            at_start=True,
        ),
        # Every process: each serves /metrics from its own gauges (the newest value wins
        # across processes) and zeroes the series it set that dropped out of the period.
        Job(
            "alert-quality-metrics",
            ALERT_QUALITY_METRICS_EVERY_S,
            lambda: services.handle(PublishAlertQualityMetrics(clock.now())),
            once_across_processes=False,
            at_start=True,
        ),
        # Shared safely: due windows are claimed with SKIP LOCKED (service/checkin_deadlines).
        Job(
            "checkin-deadlines",
            CHECKIN_DEADLINES_EVERY_S,
            lambda: services.handle(checkin_deadlines.SweepCheckinDeadlines(clock.now())),
            once_across_processes=False,
            at_start=True,
        ),
        # Shared safely: due open tasks are claimed with SKIP LOCKED (service/tasks.py).
        Job(
            "task-escalations",
            TASK_ESCALATIONS_EVERY_S,
            lambda: services.handle(tasks.SweepTaskEscalations(clock.now())),
            once_across_processes=False,
            at_start=True,
        ),
        # Proposes lenient (宽管) for subjects clean long enough at normal (service/ladder.py).
        Job(
            "lenient-proposals",
            LENIENT_PROPOSALS_EVERY_S,
            lambda: services.handle(ProposeLenient(clock.now())),
            once_across_processes=True,
        ),
        # Drafts tonight's patrol plan of every unit with teams once its local time passes
        # the policy's plan_at (service/patrols.py); a unit with a plan already is skipped.
        Job(
            "patrol-plans",
            PATROL_PLANS_EVERY_S,
            lambda: services.handle(PlanComingNights(clock.now())),
            once_across_processes=True,
            at_start=True,
        ),
        # Shared safely: due deliveries are leased with SKIP LOCKED, robots' minutes are
        # counted under their channel's row lock (service/notifications.py).
        *(
            [Job("notifications", 1, services.sender.drain, once_across_processes=False)]
            if services.sender is not None
            else []
        ),
    ]


def build_scheduler(runner: JobRunner, jobs: Iterable[Job]) -> AsyncIOScheduler:
    """An apscheduler that ticks each job at its interval through ``runner``."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    for job in jobs:
        scheduler.add_job(
            runner.run,
            "interval",
            seconds=job.every_s,
            args=(job,),
            id=job.name,
            max_instances=1,
            coalesce=True,
            **({"next_run_time": datetime.now(UTC)} if job.at_start else {}),
        )
    return scheduler
