"""Load generator and ingestion benchmark: simulated phones against a real server.

It creates a fresh database, starts ``correction-monitor serve --workers N`` on it, seeds a
county with subjects and enrolled devices over HTTP, then drives simulated phones — most
wander inside their county, a few leave it and come back — in batched (many fixes per
request) or single-fix mode, from several client processes. It prints fixes/s, request
latency p50/p99, fix→alert latency p50/p99, server RSS over the run, and the rate of a bare
COPY of the same rows into the same table on the same database, so pipeline/COPY is the
headline ratio. A JSON line closes the report.

    python -m correction_monitor.loadgen --mode batched --subjects 2000 --duration 60
    python -m correction_monitor.loadgen --mode single --workers 2 --clients 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import numpy as np
import orjson
import psutil

from correction_monitor.cli import use_event_loop
from correction_monitor.ingest.committer import FIX_COLUMNS
from correction_monitor.migrations import migrate
from correction_monitor.service.bootstrap import create_officer

# The simulated county: a 0.3° square (≈ 25 km × 33 km) near Changsha, WGS-84.
WEST, SOUTH, SIZE = 112.8, 28.0, 0.3
BREACH_SHARE = 0.05
PASSWORD = "load-admin-2026"  # noqa: S105 - a throwaway benchmark database's admin


@dataclass
class Phone:
    subject_id: int
    token: str
    lon: float
    lat: float
    breaches: bool
    clock: float  # epoch seconds of the phone's next fix
    step_s: float
    seq: int = 0

    def next_fixes(self, n: int) -> list[dict[str, Any]]:
        fixes = []
        for _ in range(n):
            self.seq += 1
            if self.breaches and 200 <= self.seq % 1000 < 500:
                lon, lat = WEST + SIZE + 0.05, self.lat  # ~5 km east of the county, then back
            else:
                self.lon = min(
                    max(self.lon + random.uniform(-2e-4, 2e-4), WEST + 0.01), WEST + SIZE - 0.01
                )
                self.lat = min(
                    max(self.lat + random.uniform(-2e-4, 2e-4), SOUTH + 0.01), SOUTH + SIZE - 0.01
                )
                lon, lat = self.lon, self.lat
            fixes.append(
                {
                    "id": str(self.seq),
                    "ts": int(self.clock * 1000),
                    "lat": round(lat, 7),
                    "lon": round(lon, 7),
                    "accuracy_m": 8 + (self.seq % 17),
                }
            )
            self.clock += self.step_s
        return fixes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


# --- setup ----------------------------------------------------------------------------------


async def create_database(server_url: str) -> str:
    name = f"cm_load_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


async def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(base: str, database_url: str, subjects: int, level: str) -> list[dict[str, Any]]:
    county = f"load-{uuid.uuid4().hex[:6]}"
    await create_officer(
        database_url,
        username=county,
        password=PASSWORD,
        role="admin",
        org_code=county,
        org_name="负载测试县",
    )
    async with aiohttp.ClientSession(base) as http:
        resp = await http.post(
            "/api/v1/auth/token", json={"username": county, "password": PASSWORD}
        )
        token = (await resp.json())["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        ring = [
            [WEST, SOUTH],
            [WEST + SIZE, SOUTH],
            [WEST + SIZE, SOUTH + SIZE],
            [WEST, SOUTH + SIZE],
            [WEST, SOUTH],
        ]
        resp = await http.post(
            "/api/v1/geofences",
            headers=h,
            json={
                "name": "负载测试县",
                "kind": "activity_area",
                "org_unit": county,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            },
        )
        area_id = (await resp.json())["id"]
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> dict[str, Any]:
            async with sem:
                resp = await http.post(
                    "/api/v1/subjects",
                    headers=h,
                    json={
                        "name": f"对象{i}",
                        "org_unit": county,
                        "supervision_level": level,
                        "category": "probation",
                        "term_start": "2026-01-01",
                        "term_end": "2028-01-01",
                        "activity_area_id": area_id,
                    },
                )
                subject = await resp.json()
                resp = await http.post(
                    f"/api/v1/subjects/{subject['id']}/devices",
                    headers=h,
                    json={"platform": "android"},
                )
                device = await resp.json()
                return {"subject_id": subject["id"], "token": device["token"]}

        made = await asyncio.gather(*(one(i) for i in range(subjects)))
    return [m | {"admin_token": token} for m in made]


def drop_redis_keys(redis_url: str, prefix: str) -> None:
    """Remove the run's hot-state copies from Redis."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --- client process -------------------------------------------------------------------------


async def drive(
    base: str,
    phones: list[Phone],
    mode: str,
    batch: int,
    duration: float,
    concurrency: int,
    rate: float,
) -> dict[str, Any]:
    latencies: list[float] = []
    sent_log: list[tuple[int, float, float]] = []  # (subject, newest fix ts, send time)
    accepted = duplicates = rejected = errors = overload = 0
    per_request = batch if mode == "batched" else 1
    deadline = time.monotonic() + duration
    queue: asyncio.Queue[Phone] = asyncio.Queue()
    for phone in phones:
        queue.put_nowait(phone)
    interval = concurrency * per_request / rate if rate > 0 else 0.0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as http:

        async def worker() -> None:
            nonlocal accepted, duplicates, rejected, errors, overload
            while time.monotonic() < deadline:
                phone = await queue.get()
                fixes = phone.next_fixes(per_request)
                body = orjson.dumps({"fixes": fixes})
                started = time.monotonic()
                wall = time.time()
                try:
                    async with http.post(
                        "/api/v1/fixes",
                        data=body,
                        headers={
                            "Authorization": f"Bearer {phone.token}",
                            "Content-Type": "application/json",
                        },
                    ) as resp:
                        payload = await resp.read()
                        status = resp.status
                except aiohttp.ClientError:
                    status, payload = 0, b""
                elapsed = time.monotonic() - started
                if status == 200:
                    out = orjson.loads(payload)
                    accepted += out["accepted"]
                    duplicates += out["duplicates"]
                    rejected += len(out["rejected"])
                    latencies.append(elapsed)
                    sent_log.append((phone.subject_id, fixes[-1]["ts"] / 1000, wall))
                elif status == 503:
                    overload += 1
                    phone.clock -= phone.step_s * per_request  # resend the same fixes later
                    phone.seq -= per_request
                else:
                    errors += 1
                queue.put_nowait(phone)
                if interval:
                    await asyncio.sleep(max(0.0, interval - elapsed))

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall_s = time.monotonic() - started
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
        "errors": errors,
        "overload": overload,
        "latencies": latencies,
        "sent_log": sent_log,
        "wall_s": wall_s,
    }


def client_main(args: tuple[Any, ...], out: Any) -> None:
    base, phones, mode, batch, duration, concurrency, rate = args
    random.seed(os.getpid())
    use_event_loop("uvloop")
    out.put(asyncio.run(drive(base, phones, mode, batch, duration, concurrency, rate)))


# --- bare COPY baseline ---------------------------------------------------------------------


async def bare_copy_rate(database_url: str, rows: int) -> float:
    """Rows/s of a plain COPY of fix rows into ``fixes`` (2 connections, 20 k-row COPYs)."""
    day = datetime.now(UTC).date() - timedelta(days=3)
    base_ts = datetime(day.year, day.month, day.day, tzinfo=UTC)
    conn = await asyncpg.connect(database_url)
    await conn.execute("SELECT cm_ensure_fix_partition($1::date)", day)
    await conn.close()
    rng = np.random.default_rng(1)
    chunk = 20_000
    payloads = []
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        sids = 1_000_000_000 + (np.arange(start, start + n) % 5000)
        payloads.append(
            [
                (
                    base_ts + timedelta(seconds=int(i) * 0.01),
                    int(s),
                    int(s),
                    1129000000 + int(x),
                    281000000 + int(y),
                    int(k),
                    12,
                    0,
                )
                for i, s, x, y, k in zip(
                    range(start, start + n),
                    sids,
                    rng.integers(0, 3_000_000, n),
                    rng.integers(0, 3_000_000, n),
                    rng.integers(-(2**31), 2**31 - 1, n),
                    strict=True,
                )
            ]
        )
    conns = [await asyncpg.connect(database_url) for _ in range(2)]

    async def run(conn: asyncpg.Connection, parts: list[list[tuple[Any, ...]]]) -> None:
        for part in parts:
            await conn.copy_records_to_table("fixes", records=part, columns=FIX_COLUMNS)

    started = time.perf_counter()
    await asyncio.gather(run(conns[0], payloads[0::2]), run(conns[1], payloads[1::2]))
    elapsed = time.perf_counter() - started
    await conns[0].execute("DELETE FROM fixes WHERE subject_id >= 1000000000")
    for c in conns:
        await c.close()
    return rows / elapsed


# --- fix → alert latency --------------------------------------------------------------------


async def alert_latencies(
    database_url: str, sent_log: list[tuple[int, float, float]]
) -> list[float]:
    by_subject: dict[int, list[tuple[float, float]]] = {}
    for sid, newest_ts, wall in sent_log:
        by_subject.setdefault(sid, []).append((newest_ts, wall))
    conn = await asyncpg.connect(database_url)
    rows = await conn.fetch(
        "SELECT subject_id, detected_at, evidence->>'confirmed_at' AS confirmed "
        "FROM alerts WHERE type = 'left_activity_area'"
    )
    await conn.close()
    out = []
    for row in rows:
        confirmed = datetime.fromisoformat(row["confirmed"].replace("Z", "+00:00")).timestamp()
        sends = sorted(by_subject.get(row["subject_id"], []))
        carrier = next((wall for newest, wall in sends if newest >= confirmed - 1e-6), None)
        if carrier is not None:
            out.append(row["detected_at"].timestamp() - carrier)
    return out


# --- main -----------------------------------------------------------------------------------


def rss_of(pid: int) -> int:
    try:
        proc = psutil.Process(pid)
        return int(proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(True)))
    except psutil.Error:
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Ingestion load generator and benchmark.")
    p.add_argument("--mode", choices=["batched", "single"], default="batched")
    p.add_argument("--batch", type=int, default=100, help="fixes per request (batched mode)")
    p.add_argument("--subjects", type=int, default=2000)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--workers", type=int, default=2, help="server worker processes")
    p.add_argument("--clients", type=int, default=1, help="load-generator processes")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight per client")
    p.add_argument("--rate", type=float, default=0.0, help="target fixes/s in total (0 = max)")
    p.add_argument("--level", default="strict", choices=["strict", "normal", "lenient"])
    p.add_argument("--copy-rows", type=int, default=500_000)
    p.add_argument("--keep-database", action="store_true")
    args = p.parse_args(argv)

    server_url = os.environ.get("CM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("CM_REDIS_URL", "redis://127.0.0.1:6379/0")
    database_url = asyncio.run(create_database(server_url))
    migrate(database_url)
    port = free_port()
    env = os.environ | {
        "CM_DATABASE_URL": database_url,
        "CM_REDIS_URL": redis_url,
        "CM_REDIS_PREFIX": f"cmload:{uuid.uuid4().hex[:6]}:",
        "CM_LOG_LEVEL": "WARNING",
        "CM_HTTP_PORT": str(port),
    }
    exe = Path(sys.executable).with_name("correction-monitor")
    server = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)
        print(f"server pid {server.pid} on {base}, database {database_url}", flush=True)
        t0 = time.monotonic()
        made = asyncio.run(seed(base, database_url, args.subjects, args.level))
        print(f"seeded {len(made)} subjects in {time.monotonic() - t0:.1f} s", flush=True)

        per_request = args.batch if args.mode == "batched" else 1
        # Phones start far enough in the past that the whole run stays before "now".
        expected_fixes = (
            120_000 * args.duration if args.mode == "batched" else 15_000 * args.duration
        )
        step_s = 1.0
        span = expected_fixes / max(len(made), 1) * step_s
        phones = [
            Phone(
                m["subject_id"],
                m["token"],
                WEST + random.uniform(0.05, SIZE - 0.05),
                SOUTH + random.uniform(0.05, SIZE - 0.05),
                random.random() < BREACH_SHARE,
                time.time() - min(span + 600, 6 * 86400),
                step_s,
            )
            for m in made
        ]
        ctx = multiprocessing.get_context("fork")
        out: Any = ctx.Queue()
        shares = [phones[i :: args.clients] for i in range(args.clients)]
        rate = args.rate / args.clients if args.rate else 0.0
        procs = [
            ctx.Process(
                target=client_main,
                args=(
                    (base, share, args.mode, per_request, args.duration, args.concurrency, rate),
                    out,
                ),
            )
            for share in shares
        ]
        rss_samples = [rss_of(server.pid)]
        for proc in procs:
            proc.start()
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.1, end - time.monotonic())))
            rss_samples.append(rss_of(server.pid))
        results = [out.get() for _ in procs]
        for proc in procs:
            proc.join()
        time.sleep(2.0)  # let the last commits publish
        accepted = sum(r["accepted"] for r in results)
        wall = max(r["wall_s"] for r in results)
        latencies = [x for r in results for x in r["latencies"]]
        sent_log = [x for r in results for x in r["sent_log"]]
        alert_lat = asyncio.run(alert_latencies(database_url, sent_log))
        copy_rate = asyncio.run(bare_copy_rate(database_url, args.copy_rows))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        if not args.keep_database:
            asyncio.run(drop_database(server_url, database_url))
            drop_redis_keys(redis_url, env["CM_REDIS_PREFIX"])

    fixes_per_s = accepted / wall
    # Memory is judged after a warm-up (caches of profiles, devices and geometry fill in the
    # first minute): the sample nearest 60 s, or a tenth of the run if that is shorter.
    warm_index = min(len(rss_samples) - 1, max(1, min(12, len(rss_samples) // 10)))
    warm = rss_samples[warm_index]
    report = {
        "mode": args.mode,
        "fixes_per_request": per_request,
        "workers": args.workers,
        "clients": args.clients,
        "subjects": args.subjects,
        "duration_s": round(wall, 1),
        "accepted": accepted,
        "duplicates": sum(r["duplicates"] for r in results),
        "rejected": sum(r["rejected"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "overload_503": sum(r["overload"] for r in results),
        "fixes_per_s": round(fixes_per_s),
        "requests_per_s": round(len(latencies) / wall),
        "request_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "request_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "alerts": len(alert_lat),
        "fix_to_alert_p50_ms": round(percentile(alert_lat, 50) * 1000, 1),
        "fix_to_alert_p99_ms": round(percentile(alert_lat, 99) * 1000, 1),
        "server_rss_mb_first": round(rss_samples[1 if len(rss_samples) > 1 else 0] / 2**20, 1),
        "server_rss_mb_warm": round(warm / 2**20, 1),
        "server_rss_mb_max": round(max(rss_samples) / 2**20, 1),
        "server_rss_mb_last": round(rss_samples[-1] / 2**20, 1),
        "server_rss_growth_after_warmup_pct": round((rss_samples[-1] / warm - 1) * 100, 1),
        "server_rss_mb_samples": [round(x / 2**20, 1) for x in rss_samples],
        "bare_copy_rows_per_s": round(copy_rate),
        "pipeline_to_copy_ratio": round(fixes_per_s / copy_rate, 3),
    }
    print(
        f"mode {args.mode}: {per_request} fix(es)/request, {args.workers} worker(s), "
        f"{args.clients} client process(es), {args.subjects} subjects"
    )
    print(
        f"  fixes/s            {report['fixes_per_s']:>10,}   "
        f"(requests/s {report['requests_per_s']:,})"
    )
    print(
        f"  request latency    p50 {report['request_p50_ms']} ms   "
        f"p99 {report['request_p99_ms']} ms"
    )
    print(
        f"  fix→alert latency  p50 {report['fix_to_alert_p50_ms']} ms   "
        f"p99 {report['fix_to_alert_p99_ms']} ms   ({report['alerts']} alerts)"
    )
    print(
        f"  server RSS         first {report['server_rss_mb_first']} MB   "
        f"warm {report['server_rss_mb_warm']} MB   max {report['server_rss_mb_max']} MB   "
        f"last {report['server_rss_mb_last']} MB "
        f"({report['server_rss_growth_after_warmup_pct']:+} % after warm-up)"
    )
    print(
        f"  bare COPY          {report['bare_copy_rows_per_s']:>10,} rows/s   "
        f"pipeline/COPY = {report['pipeline_to_copy_ratio']}"
    )
    print(
        f"  errors {report['errors']}, 503s {report['overload_503']}, "
        f"rejected {report['rejected']}, duplicates {report['duplicates']}"
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
