"""Background jobs: lost-contact sweeps, fix partition upkeep, hot-state rebuilds.

apscheduler runs them in every process; each job that must run once across processes guards
itself with a PostgreSQL advisory lock, so scaling out needs no extra coordination.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from correction_monitor.adapters import officers
from correction_monitor.adapters.hot_state import HotState
from correction_monitor.policy import Policy
from correction_monitor.service import lost_contact

log = structlog.get_logger("correction_monitor.jobs")

LATEST_FROM_STATE = """
SELECT e.subject_id, s.org_unit_id, e.state->'ref' AS ref FROM subject_eval_state e
JOIN subjects s ON s.id = e.subject_id WHERE e.state->'ref' IS NOT NULL
  AND e.state->'ref' <> 'null'::jsonb
"""


async def ensure_partitions(pool: asyncpg.Pool, days_ahead: int = 2) -> None:
    """Create today's and the next days' fix partitions ahead of the first fix."""
    today = datetime.now(UTC).date()
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


async def purge_expired_tokens(pool: asyncpg.Pool) -> None:
    """Forget officer tokens a day after they expired (only their hashes are kept)."""
    async with pool.acquire() as conn:
        await officers.purge_expired_tokens(conn)


def sweep_interval_s(policy: Policy) -> float:
    """How often to look for lost contact: a quarter of the shortest threshold, 5–60 s, so
    an alert comes at most a quarter threshold late whatever the province's numbers."""
    shortest = min(level.lost_contact_after_s for level in policy.levels.values())
    return float(min(60.0, max(5.0, shortest / 4)))


def build_scheduler(pool: asyncpg.Pool, policy: Policy, hot: HotState) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    watch = HotStateWatch(pool, hot)
    scheduler.add_job(
        lost_contact.sweep,
        "interval",
        seconds=sweep_interval_s(policy),
        args=(pool, policy),
        id="lost-contact-sweep",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        ensure_partitions,
        "interval",
        hours=1,
        args=(pool,),
        id="fix-partitions",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
    scheduler.add_job(
        watch.tick,
        "interval",
        seconds=5,
        id="hot-state-watch",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
    scheduler.add_job(
        purge_expired_tokens,
        "interval",
        hours=1,
        args=(pool,),
        id="token-purge",
        max_instances=1,
        coalesce=True,
    )
    return scheduler
