"""Escalation timers at scale: the SLA sweep over 100,000 open tasks, all past due.

On a scratch database of the configured PostgreSQL (``CM_DATABASE_URL``'s server; created,
migrated, and dropped afterwards unless ``--keep-database``):

1. **load**: a county with ``--stations`` stations (each with an officer and a supervisor)
   and a county administrator; ``--subjects`` subjects (COPY), each with a responsible
   officer and, for every other subject, a responsible supervisor (the rest fall back to the
   station's supervisor); ``--tasks`` open ``verify_alert`` tasks at level 0 spread over
   them, all due within the hour before the sweep's moment;
2. **sweep**: ``--sweepers`` concurrent SLA sweeps (the job's real code path:
   ``SweepTaskEscalations`` through the composition root, each batch a transaction on its
   own pooled connection) at that moment; the time until every task is escalated to level
   1 with its step, audit entry and ``task.escalated`` event committed is printed, with the
   cost per task in milliseconds and in statements sent, and checked against the database;
3. **second level**: the clock moves past the first escalation's SLA and the sweep runs
   again (level 1 → 2, to the county administrator);
4. **idle**: a sweep that finds nothing due (what every process pays every 5 s).

It ends with a JSON line of every figure.

    .venv/bin/python scripts/bench_tasks.py
    .venv/bin/python scripts/bench_tasks.py --tasks 20000 --sweepers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.clock import ManualClock
from correction_monitor.loadgen import create_database, drop_database
from correction_monitor.migrations import migrate
from correction_monitor.policy import load_policy
from correction_monitor.service.bootstrap import bootstrap
from correction_monitor.service.tasks import SweepTaskEscalations
from correction_monitor.service.unit_of_work import PostgresUnitOfWork

SWEEP_AT = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)


async def load(database_url: str, stations: int, subjects: int, tasks: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        county = await conn.fetchval(
            "INSERT INTO org_units (code, name, timezone) VALUES ('bench', '基准县',"
            " 'Asia/Shanghai') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO officers (username, password_hash, role, org_unit_id)"
            " VALUES ('bench-county', '-', 'county_admin', $1)",
            county,
        )
        station_ids, officer_ids, supervisor_ids = [], [], []
        for n in range(stations):
            sid = await conn.fetchval(
                "INSERT INTO org_units (code, name, parent_id, timezone)"
                " VALUES ($1, $2, $3, 'Asia/Shanghai') RETURNING id",
                f"bench-{n:03d}",
                f"第{n}司法所",
                county,
            )
            station_ids.append(sid)
            officer_ids.append(
                await conn.fetchval(
                    "INSERT INTO officers (username, password_hash, role, org_unit_id)"
                    " VALUES ($1, '-', 'officer', $2) RETURNING id",
                    f"bench-o{n}",
                    sid,
                )
            )
            supervisor_ids.append(
                await conn.fetchval(
                    "INSERT INTO officers (username, password_hash, role, org_unit_id)"
                    " VALUES ($1, '-', 'supervisor', $2) RETURNING id",
                    f"bench-s{n}",
                    sid,
                )
            )
        await conn.copy_records_to_table(
            "subjects",
            columns=[
                "name",
                "org_unit_id",
                "supervision_level",
                "category",
                "term_start",
                "term_end",
                "responsible_officer_id",
                "responsible_supervisor_id",
            ],
            records=(
                (
                    f"对象{n}",
                    station_ids[n % stations],
                    "normal",
                    "probation",
                    SWEEP_AT.date() - timedelta(days=100),
                    SWEEP_AT.date() + timedelta(days=300),
                    officer_ids[n % stations],
                    supervisor_ids[n % stations] if n % 2 == 0 else None,
                )
                for n in range(subjects)
            ),
        )
        # Tasks due within the hour before the sweep, oldest first by id.
        await conn.execute(
            """
            INSERT INTO tasks (kind, subject_id, org_unit_id, assignee_id, due_at, created_at,
                               dedupe_key)
            SELECT 'verify_alert', s.id, s.org_unit_id, s.responsible_officer_id,
                   $2::timestamptz - make_interval(secs => 3600 - 3600.0 * n / $1),
                   $2::timestamptz - interval '2 hours', 'bench:' || n
            FROM generate_series(0, $1 - 1) n
            JOIN subjects s ON s.id = (SELECT min(id) FROM subjects) + n % $3
            """,
            tasks,
            SWEEP_AT,
            subjects,
        )
        await conn.execute("VACUUM ANALYZE tasks")
        await conn.execute("ANALYZE subjects")
    finally:
        await conn.close()


class Statements:
    """Counts the statements a pool's connections send."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: Any) -> None:
        self.count += 1


async def sweep(
    database_url: str, sweepers: int, at: datetime, figures: dict[str, Any], label: str
) -> None:
    pool = await create_pool(database_url, min_size=sweepers, max_size=sweepers)
    statements = Statements()
    held = [await pool.acquire() for _ in range(sweepers)]
    for conn in held:
        conn.add_query_logger(statements)
    for conn in held:
        await pool.release(conn)
    try:
        policy = load_policy()
        services = bootstrap(lambda: PostgresUnitOfWork(pool), policy=policy, clock=ManualClock(at))
        async with pool.acquire() as conn:
            due = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE status = 'open' AND sla_missed_at IS NULL"
                " AND due_at <= $1",
                at,
            )
        before = statements.count
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(services.handle(SweepTaskEscalations(at)) for _ in range(sweepers))
        )
        elapsed = time.perf_counter() - t0
        sent = statements.count - before
        moved = sum(r.escalated + r.missed for r in results)
        async with pool.acquire() as conn:
            events = await conn.fetchval(
                "SELECT count(*) FROM events WHERE name = 'task.escalated'"
            )
            steps = await conn.fetchval("SELECT count(*) FROM task_steps")
            audits = await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'task.escalate'"
            )
            still_due = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE status = 'open' AND sla_missed_at IS NULL"
                " AND due_at <= $1",
                at,
            )
        per_task_ms = elapsed * 1000 / moved if moved else None
        figures[label] = {
            "due": due,
            "escalated": moved,
            "seconds": round(elapsed, 3),
            "per_task_ms": round(per_task_ms, 4) if per_task_ms is not None else None,
            "statements": sent,
            "statements_per_task": round(sent / moved, 5) if moved else None,
            "events_total": events,
            "steps_total": steps,
            "audit_total": audits,
            "still_due": still_due,
        }
        assert still_due == 0, f"{still_due} tasks still due after the sweep"
        assert moved == due, f"{moved} escalated of {due} due"
        cost = (
            f"{per_task_ms:.4f} ms and {sent / moved:.4f} statements per task"
            if per_task_ms is not None
            else "nothing due"
        )
        print(
            f"{label}: {moved:,} of {due:,} due tasks escalated by {sweepers} sweeper(s) in"
            f" {elapsed * 1000:.1f} ms: {cost} ({sent} statements); events {events:,},"
            f" steps {steps:,}, audit entries {audits:,}",
            flush=True,
        )
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--subjects", type=int, default=20_000)
    p.add_argument("--stations", type=int, default=100)
    p.add_argument("--sweepers", type=int, default=1)
    p.add_argument("--keep-database", action="store_true")
    args = p.parse_args(argv)

    server_url = os.environ.get("CM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    database_url = asyncio.run(create_database(server_url))
    figures: dict[str, Any] = {
        "tasks": args.tasks,
        "subjects": args.subjects,
        "stations": args.stations,
        "sweepers": args.sweepers,
        "load_before": os.getloadavg()[0],
    }
    try:
        migrate(database_url)
        print(f"scratch database {database_url}", flush=True)
        t0 = time.perf_counter()
        asyncio.run(load(database_url, args.stations, args.subjects, args.tasks))
        print(f"loaded {args.tasks:,} due tasks in {time.perf_counter() - t0:.1f} s", flush=True)
        first_sla, _ = load_policy().tasks.escalation_sla_s
        asyncio.run(sweep(database_url, args.sweepers, SWEEP_AT, figures, "level_1"))
        later = SWEEP_AT + timedelta(seconds=first_sla)
        asyncio.run(sweep(database_url, args.sweepers, later, figures, "level_2"))
        asyncio.run(sweep(database_url, 1, later, figures, "idle"))
        figures["load_after"] = os.getloadavg()[0]
    finally:
        if not args.keep_database:
            asyncio.run(drop_database(server_url, database_url))
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
