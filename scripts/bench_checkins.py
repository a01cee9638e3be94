"""Check-in deadlines at scale: a million windows closing in one minute.

On a scratch database of the configured PostgreSQL (``CM_DATABASE_URL``'s server; created,
migrated, and dropped afterwards unless ``--keep-database``):

1. **load**: ``--subjects`` subjects (COPY, spread over 100 stations and the three levels)
   with one scheduled window each, all closing within the same minute; ``--unanswered`` of
   them (10 %) still pending, the rest answered (``passed``, with an answer as the app sends
   it);
2. **sweep**: at the end of that minute, ``--sweepers`` concurrent deadline sweeps (the job's
   real code path: ``SweepCheckinDeadlines`` through the composition root, each batch a
   transaction on its own pooled connection) close every pending window as missed; the time
   until all of them, their alerts and their ``alert.opened`` events are committed is
   printed, and checked against the database;
3. **size**: bytes per stored check-in, whole (``pg_total_relation_size``: table, TOAST and
   indexes) and the table alone (``pg_table_size``), after the load and again after the
   sweep and a VACUUM;
4. **answers**: ``correction-monitor serve --workers N`` on the same database (scheduler
   off), ``--answer-subjects`` more subjects with enrolled devices (over HTTP) and open
   windows for them, ``--warmup`` answers at 200/s not counted, then each of ``--rates``
   answers per second (``POST /api/v1/me/checkins/{id}``, each window answered once, from
   inside the activity area unless ``--answer-outside``; open loop: a request is sent at its
   scheduled moment on an idle keep-alive connection or a new one, whether or not earlier
   ones were answered) for ``--duration`` seconds; latency p50 / p99 measured from each
   request's scheduled moment, so queueing counts. ``--answers-only`` skips parts 1 to 3.

It ends with a JSON line of every figure.

    .venv/bin/python scripts/bench_checkins.py
    .venv/bin/python scripts/bench_checkins.py --subjects 100000 --skip-answers
    .venv/bin/python scripts/bench_checkins.py --answers-only --rates 1000,700,400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson

from correction_monitor.adapters.db import create_pool
from correction_monitor.cli import use_event_loop
from correction_monitor.domain.clock import ManualClock
from correction_monitor.loadgen import (
    OUTSIDE_LON,
    SIZE,
    SOUTH,
    WEST,
    HttpConnection,
    create_database,
    drop_database,
    drop_redis_keys,
    free_port,
    percentile,
    seed,
)
from correction_monitor.migrations import migrate
from correction_monitor.policy import load_policy
from correction_monitor.service.bootstrap import bootstrap
from correction_monitor.service.checkin_deadlines import SweepCheckinDeadlines
from correction_monitor.service.unit_of_work import PostgresUnitOfWork

LEVELS = ["strict"] * 2 + ["normal"] * 6 + ["lenient"] * 2
STATIONS = 100
# The fixes of the check-in windows loaded, anywhere.
LON, LAT = 116.30, 39.90
# Answers from inside the load generator's county square (seed's activity area): they pass.
ANSWER_LON, ANSWER_LAT = WEST + SIZE / 2, SOUTH + SIZE / 2
WARMUP_RATE = 200.0


async def load(database_url: str, subjects: int, unanswered: float) -> datetime:
    """Stations, subjects and one window each closing within the minute after the returned
    moment; returns the end of that minute."""
    conn = await asyncpg.connect(database_url)
    try:
        county = await conn.fetchval(
            "INSERT INTO org_units (code, name, timezone) VALUES ('bench', '基准县',"
            " 'Asia/Shanghai') RETURNING id"
        )
        station_ids = [
            await conn.fetchval(
                "INSERT INTO org_units (code, name, parent_id, timezone)"
                " VALUES ($1, $2, $3, 'Asia/Shanghai') RETURNING id",
                f"bench-{n:03d}",
                f"第{n}司法所",
                county,
            )
            for n in range(STATIONS)
        ]
        t0 = time.perf_counter()
        await conn.copy_records_to_table(
            "subjects",
            columns=[
                "name",
                "org_unit_id",
                "supervision_level",
                "category",
                "term_start",
                "term_end",
            ],
            records=(
                (
                    f"对象{n}",
                    station_ids[n % STATIONS],
                    LEVELS[n % len(LEVELS)],
                    "probation",
                    date(2026, 1, 1),
                    date(2028, 1, 1),
                )
                for n in range(subjects)
            ),
        )
        print(f"  {subjects:,} subjects copied in {time.perf_counter() - t0:.1f} s", flush=True)
        first_id: int = await conn.fetchval("SELECT min(id) FROM subjects")
    finally:
        await conn.close()

    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    rng = random.Random(7)  # noqa: S311 - which windows stay unanswered, reproducibly
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            t0 = time.perf_counter()

            def rows() -> Any:
                for n in range(subjects):
                    closes = minute + timedelta(seconds=n % 60, microseconds=n % 997)
                    opens = closes - timedelta(hours=3)
                    sid, unit = first_id + n, station_ids[n % STATIONS]
                    if rng.random() < unanswered:
                        reminded = closes - timedelta(seconds=1800)
                        yield (
                            sid,
                            unit,
                            "scheduled",
                            opens,
                            closes,
                            "pending",
                            None,
                            None,
                            reminded,
                        )
                        continue
                    answered = closes - timedelta(seconds=rng.randrange(60, 10_000))
                    answer = {
                        "ts": answered.isoformat(),
                        "lon": LON + rng.random() / 100,
                        "lat": LAT + rng.random() / 100,
                        "accuracy_m": 12.0,
                        "crs": "wgs84",
                        "mock": False,
                        "face": {"score": 0.93, "liveness": True, "vendor": "sdk"},
                        "received_at": answered.isoformat(),
                    }
                    yield (sid, unit, "scheduled", opens, closes, "passed", answered, answer, None)

            await conn.copy_records_to_table(
                "checkins",
                columns=[
                    "subject_id",
                    "org_unit_id",
                    "kind",
                    "opens_at",
                    "closes_at",
                    "status",
                    "answered_at",
                    "answer",
                    "reminded_at",
                ],
                records=rows(),
            )
            print(
                f"  {subjects:,} check-ins copied in {time.perf_counter() - t0:.1f} s", flush=True
            )
            await conn.execute("VACUUM ANALYZE subjects")
            await conn.execute("VACUUM ANALYZE checkins")
    finally:
        await pool.close()
    return minute + timedelta(minutes=1)


async def sizes(database_url: str) -> dict[str, float]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, pg_total_relation_size('checkins') AS total,"
            " pg_table_size('checkins') AS heap, pg_indexes_size('checkins') AS indexes"
            " FROM checkins"
        )
    finally:
        await conn.close()
    assert row is not None
    n = max(row["n"], 1)
    return {
        "rows": row["n"],
        "bytes_per_checkin": row["total"] / n,
        "table_bytes_per_checkin": row["heap"] / n,
        "index_bytes_per_checkin": row["indexes"] / n,
    }


async def sweep(database_url: str, now: datetime, sweepers: int, batch: int) -> dict[str, Any]:
    """Run ``sweepers`` concurrent sweeps at ``now``; the seconds until all committed."""
    pool = await create_pool(database_url, min_size=sweepers, max_size=sweepers + 1)
    try:
        services = bootstrap(
            partial(PostgresUnitOfWork, pool), policy=load_policy(), clock=ManualClock(now)
        )
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(services.handle(SweepCheckinDeadlines(now, batch=batch)) for _ in range(sweepers))
        )
        elapsed = time.perf_counter() - t0
        async with pool.acquire() as conn:
            check = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM checkins WHERE status = 'missed') AS missed,"
                " (SELECT count(*) FROM checkins WHERE status = 'pending') AS pending,"
                " (SELECT count(*) FROM alerts WHERE type = 'missed_checkin') AS alerts,"
                " (SELECT count(*) FROM events WHERE name = 'alert.opened') AS events"
            )
            await conn.execute("VACUUM ANALYZE checkins")
    finally:
        await pool.close()
    assert check is not None
    return {
        "seconds": elapsed,
        "per_sweeper": [(r.missed, r.alerts) for r in results],
        "missed": check["missed"],
        "pending_left": check["pending"],
        "alerts": check["alerts"],
        "events": check["events"],
    }


def start_server(database_url: str, workers: int) -> tuple[subprocess.Popen[bytes], str, str]:
    redis_url = os.environ.get("CM_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"cmbench:{uuid.uuid4().hex[:6]}:"
    port = free_port()
    env = os.environ | {
        "CM_DATABASE_URL": database_url,
        "CM_REDIS_URL": redis_url,
        "CM_REDIS_PREFIX": prefix,
        "CM_LOG_LEVEL": "WARNING",
        "CM_HTTP_PORT": str(port),
        # The answers alone: the deadline sweep has nothing due, and laying out windows for a
        # million subjects is not what is measured here.
        "CM_RUN_SCHEDULER": "false",
    }
    command = str(Path(sys.executable).with_name("correction-monitor"))
    server = subprocess.Popen(
        [command, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        start_new_session=True,
    )
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.0)
    return server, f"http://127.0.0.1:{port}", prefix


async def open_windows(
    database_url: str, made: list[dict[str, Any]], per_subject: int
) -> list[Any]:
    """``per_subject`` windows open now for each seeded subject; (window id, device token)."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "INSERT INTO checkins (subject_id, org_unit_id, kind, opens_at, closes_at)"
            " SELECT s.id, s.org_unit_id, 'scheduled',"
            "  $2::timestamptz - make_interval(secs => n), $2::timestamptz + interval '2 hours'"
            " FROM subjects s, generate_series(1, $3) AS n WHERE s.id = ANY($1::int[])"
            " RETURNING id, subject_id",
            [m["subject_id"] for m in made],
            now,
            per_subject,
        )
    finally:
        await conn.close()
    tokens = {m["subject_id"]: m["token"] for m in made}
    windows = [(r["id"], tokens[r["subject_id"]]) for r in rows]
    random.shuffle(windows)
    return windows


class AnswerSlot(HttpConnection):
    """A keep-alive connection carrying one answer at a time; idle ones wait in ``idle``."""

    def __init__(self, load: AnswerLoad) -> None:
        super().__init__()
        self.load = load
        self.at = 0.0  # the scheduled moment of the answer in flight

    def response(self, status: int, body: bytes) -> None:
        self.load.finish(self, status)

    def lost(self) -> None:
        self.load.finish(self, 0)


class AnswerLoad:
    """Open loop: each answer leaves at its scheduled moment on an idle keep-alive connection
    (a new one when none is idle), its request bytes made beforehand, so that the client's
    own work per answer stays small next to the server's."""

    def __init__(self, base: str, requests: list[bytes], rate: float) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.requests, self.rate = requests, rate
        self.idle: list[AnswerSlot] = []
        self.connecting: set[asyncio.Future[None]] = set()
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.pending = len(requests)
        self.done = asyncio.get_running_loop().create_future()

    def finish(self, slot: AnswerSlot, status: int) -> None:
        self.latencies.append(time.perf_counter() - slot.at)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if slot.reusable:
            self.idle.append(slot)
        self.pending -= 1
        if self.pending == 0 and not self.done.done():
            self.done.set_result(None)

    def send(self, request: bytes, at: float) -> None:
        """Send on an idle connection, or on a new one without holding up the answers
        after this one while it connects."""
        while self.idle:
            slot = self.idle.pop()
            if slot.reusable:
                slot.at = at
                slot.send(request)
                return
        self.connecting.add(asyncio.ensure_future(self.connect(request, at)))

    async def connect(self, request: bytes, at: float) -> None:
        loop = asyncio.get_running_loop()
        _, slot = await loop.create_connection(lambda: AnswerSlot(self), self.host, self.port)
        slot.at = at
        slot.send(request)

    async def __call__(self) -> float:
        """Send every request at its moment; the seconds from the first moment until the last
        answer was read."""
        start = time.perf_counter() + 0.2
        for k, request in enumerate(self.requests):
            at = start + k / self.rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.send(request, at)
        await self.done
        elapsed = time.perf_counter() - start
        await asyncio.gather(*self.connecting)
        return elapsed


def answer_request(host: str, window_id: int, token: str, body: dict[str, Any]) -> bytes:
    data = orjson.dumps(body)
    return (
        f"POST /api/v1/me/checkins/{window_id} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


async def answer_load(
    base: str, windows: list[Any], rate: float, duration: float, *, outside: bool = False
) -> dict[str, Any]:
    """Answer windows at ``rate`` per second, open loop; latencies from the scheduled moment.
    From inside the activity area (``passed``), or with ``outside`` from 5 km east of it
    (``failed``: the doubtful path, with its leave and stationary-phone reads)."""
    total = min(len(windows) - 1, int(rate * duration))
    lon, lat = (OUTSIDE_LON, ANSWER_LAT) if outside else (ANSWER_LON, ANSWER_LAT)
    host = urlsplit(base).netloc
    # One answer first: is the endpoint there at all?
    probe_id, probe_token = windows[-1]
    async with aiohttp.ClientSession(base) as http:
        body = {"ts": datetime.now(UTC).isoformat(), "lat": lat, "lon": lon, "accuracy_m": 10}
        async with http.post(
            f"/api/v1/me/checkins/{probe_id}",
            json=body,
            headers={"Authorization": f"Bearer {probe_token}"},
        ) as resp:
            if resp.status != 200:
                return {"available": False, "probe_status": resp.status, "probe": await resp.text()}
    answered_at = datetime.now(UTC).isoformat()
    requests = [
        answer_request(
            host,
            window_id,
            token,
            {
                "ts": answered_at,
                "lat": lat + random.random() / 100,  # noqa: S311
                "lon": lon + random.random() / 100,  # noqa: S311
                "accuracy_m": 12.0,
                "face": {"score": 0.93, "liveness": True, "vendor": "sdk"},
            },
        )
        for window_id, token in windows[:total]
    ]
    run = AnswerLoad(base, requests, rate)
    cpu0 = time.process_time()
    wall = await run()
    client_cpu = (time.process_time() - cpu0) / max(wall, 1e-9)
    for slot in run.idle:
        slot.close()
    latencies = run.latencies
    return {
        "available": True,
        "answers": total,
        "achieved_per_s": total / max(wall, 1e-9),
        "statuses": run.statuses,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        # The client's own share of a core: near 1.0, the client, not the server, limits.
        "client_cpu": client_cpu,
    }


def deadlines(database_url: str, args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Parts 1 to 3: the million windows loaded, swept, and their stored size."""
    t0 = time.perf_counter()
    due = asyncio.run(load(database_url, args.subjects, args.unanswered))
    print(f"loaded in {time.perf_counter() - t0:.1f} s; windows close by {due}", flush=True)
    loaded = asyncio.run(sizes(database_url))
    figures["size_after_load"] = loaded
    print(
        f"stored check-in: {loaded['bytes_per_checkin']:.0f} bytes with indexes,"
        f" {loaded['table_bytes_per_checkin']:.0f} bytes the table alone"
        f" ({loaded['rows']:,} rows)",
        flush=True,
    )

    swept = asyncio.run(sweep(database_url, due, args.sweepers, args.batch))
    figures["sweep"] = swept
    print(
        f"sweep: {swept['missed']:,} missed, {swept['alerts']:,} alerts, {swept['events']:,}"
        f" events committed in {swept['seconds']:.2f} s by {args.sweepers} sweepers"
        f" (batches of {args.batch}; per sweeper {swept['per_sweeper']});"
        f" {swept['pending_left']} pending left",
        flush=True,
    )
    expected = round(args.subjects * args.unanswered)
    if not (swept["pending_left"] == 0 and swept["alerts"] == swept["missed"] == swept["events"]):
        print("MISMATCH: not every missed window has exactly one alert and event", flush=True)
    after = asyncio.run(sizes(database_url))
    figures["size_after_sweep_vacuum"] = after
    print(
        f"after the sweep and VACUUM: {after['bytes_per_checkin']:.0f} bytes with indexes,"
        f" {after['table_bytes_per_checkin']:.0f} the table alone"
        f" (about {expected:,} missed expected)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=1_000_000)
    p.add_argument("--unanswered", type=float, default=0.10)
    p.add_argument("--sweepers", type=int, default=2)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--workers", type=int, default=2, help="server workers for the answers")
    p.add_argument(
        "--rates",
        default="1000",
        help="answers per second, comma-separated: one run at each, on fresh windows",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds of answers")
    p.add_argument("--answer-subjects", type=int, default=1000)
    p.add_argument(
        "--warmup",
        type=int,
        default=600,
        help=f"answers at {WARMUP_RATE:.0f}/s before the measured ones, not counted",
    )
    p.add_argument(
        "--answer-outside",
        action="store_true",
        help="answer from outside the activity area (failed answers) rather than inside",
    )
    p.add_argument("--skip-answers", action="store_true")
    p.add_argument(
        "--answers-only",
        action="store_true",
        help="only the answers (part 4): no million-window load, sweep or sizes",
    )
    p.add_argument("--keep-database", action="store_true")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]

    server_url = os.environ.get("CM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    database_url = asyncio.run(create_database(server_url))
    figures: dict[str, Any] = {"subjects": args.subjects, "unanswered": args.unanswered}
    server: subprocess.Popen[bytes] | None = None
    prefix: str | None = None
    try:
        migrate(database_url)
        print(f"scratch database {database_url}", flush=True)
        if not args.answers_only:
            deadlines(database_url, args, figures)
        if not args.skip_answers:
            server, base, prefix = start_server(database_url, args.workers)
            print(f"server pid {server.pid} on {base}", flush=True)
            t0 = time.perf_counter()
            made = asyncio.run(seed(base, database_url, args.answer_subjects, "normal"))
            wanted = sum(int(rate * args.duration) + 1 for rate in rates) + args.warmup + 1
            per_subject = wanted // max(len(made), 1) + 2
            windows = asyncio.run(open_windows(database_url, made, per_subject))
            print(
                f"seeded {len(made)} subjects with devices and {len(windows):,} open windows"
                f" in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            figures["answers"] = []
            figures["answer_outside"] = args.answer_outside
            if args.warmup > 0:
                # Not measured: every worker's pool connections opened and their statements
                # prepared, the activity area read, as in a service that has been running.
                use_event_loop("uvloop")
                warm, windows = windows[: args.warmup + 1], windows[args.warmup + 1 :]
                asyncio.run(answer_load(base, warm, WARMUP_RATE, args.warmup / WARMUP_RATE))
            for rate in rates:
                batch, windows = (
                    windows[: int(rate * args.duration) + 1],
                    windows[int(rate * args.duration) + 1 :],
                )
                use_event_loop("uvloop")
                answered = asyncio.run(
                    answer_load(base, batch, rate, args.duration, outside=args.answer_outside)
                )
                figures["answers"].append({"rate": rate} | answered)
                if not answered["available"]:
                    print(f"answer endpoint not available: {answered}", flush=True)
                    break
                print(
                    f"answers at {rate:.0f}/s asked: {answered['answers']:,} at"
                    f" {answered['achieved_per_s']:.0f}/s, p50 {answered['p50_ms']:.1f} ms,"
                    f" p99 {answered['p99_ms']:.1f} ms, max {answered['max_ms']:.1f} ms,"
                    f" statuses {answered['statuses']}; the client used"
                    f" {answered['client_cpu']:.0%} of a core",
                    flush=True,
                )
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        if prefix is not None:
            drop_redis_keys(os.environ.get("CM_REDIS_URL", "redis://127.0.0.1:6379/0"), prefix)
        if not args.keep_database:
            asyncio.run(drop_database(server_url, database_url))
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
