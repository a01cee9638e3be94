"""Logins beside ingestion: does a storm of wrong logins slow phones' uploads, and does a
login's time tell whether its username exists?

It starts ``correction-monitor serve`` on a fresh database (``correction_monitor.loadgen``'s
``serving``; or targets a running instance with ``--url`` and ``--database-url``), seeds a
county with a few subjects and enrolled devices (the load generator's ``seed``), and creates
officers to log in as. Then:

1. **ingest alone**: each device uploads one fix (``POST /api/v1/fixes``, the native
   protocol, the load generator's ``Phone`` walk) every ``--interval-ms``, for ``--duration``
   seconds; each request's latency is kept;
2. **ingest during a login storm**: the same, while ``--logins`` clients each post wrong
   logins back to back (``--storm unknown``: a fresh unknown username each time, which the
   throttle never stops and which costs a full verification; ``--storm known``: wrong
   passwords for existing officers, throttled after ten each); the logins' answers are counted
   by status;
3. **login timing**: ``--samples`` logins one after the other for unknown usernames, for
   existing officers with a wrong password (each officer used at most nine times, below the
   throttle) and with the right one; the median of each.

It prints ingest's median and p99 in both phases, the logins' statuses, the three login
medians, and closes with a JSON line. ``--repo`` serves another checkout (as
``scripts/wrk_ingest.py`` does), its officers then created by that checkout's command line.

    .venv/bin/python scripts/bench_login.py
    .venv/bin/python scripts/bench_login.py --storm known --repo /tmp/cm-base
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import numpy as np

from correction_monitor.loadgen import (
    SIZE,
    SOUTH,
    WEST,
    Phone,
    Served,
    first_fix_clock,
    percentile,
    seed,
    serving,
)
from correction_monitor.service.bootstrap import create_officer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wrk_ingest import commit_of  # the sibling script

REPO: Final = Path(__file__).resolve().parents[1]
PASSWORD: Final = "bench-officer-9"  # noqa: S105 - a throwaway benchmark database's officers
WRONG: Final = "not-the-password"
BELOW_THROTTLE: Final = 9


def _phones(made: list[dict[str, Any]], duration: float, interval_s: float) -> list[Phone]:
    """One walking phone per seeded device, its clock far enough in the past for both
    phases' fixes (one a request) to stay before now."""
    fixes = 2 * duration / interval_s * len(made) + 100
    start = first_fix_clock(time.time(), fixes, len(made), 1.0)
    return [
        Phone(m["subject_id"], m["token"], WEST + SIZE / 2, SOUTH + SIZE / 2, False, start, 1.0)
        for m in made
    ]


async def _upload_loop(
    http: aiohttp.ClientSession,
    phone: Phone,
    until: float,
    interval_s: float,
    latencies: list[float],
    statuses: collections.Counter[int],
) -> None:
    rng = np.random.default_rng(phone.subject_id)
    headers = {"Authorization": f"Bearer {phone.token}", "Content-Type": "application/json"}
    while (began := time.monotonic()) < until:
        body, _ = phone.next_body(1, rng)
        async with http.post("/api/v1/fixes", data=body, headers=headers) as resp:
            await resp.read()
            statuses[resp.status] += 1
        latencies.append((time.monotonic() - began) * 1000)
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - began)))


async def ingest_phase(
    base: str, phones: list[Phone], duration: float, interval_s: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    async with aiohttp.ClientSession(base) as http:
        until = time.monotonic() + duration
        await asyncio.gather(
            *(_upload_loop(http, p, until, interval_s, latencies, statuses) for p in phones)
        )
    return {
        "requests": len(latencies),
        "statuses": dict(statuses),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


async def _storm(
    base: str, clients: int, usernames: list[str] | None, stop: asyncio.Event
) -> collections.Counter[int]:
    """``clients`` loops of wrong logins until ``stop``; their answers by status."""
    statuses: collections.Counter[int] = collections.Counter()
    connector = aiohttp.TCPConnector(limit=clients)

    async def one(i: int) -> None:
        n = 0
        while not stop.is_set():
            if usernames is None:
                name = f"nobody-{uuid.uuid4().hex[:12]}"
            else:
                name = usernames[(i + n * clients) % len(usernames)]
            n += 1
            async with http.post(
                "/api/v1/auth/token", json={"username": name, "password": WRONG}
            ) as resp:
                await resp.read()
                statuses[resp.status] += 1

    async with aiohttp.ClientSession(base, connector=connector) as http:
        await asyncio.gather(*(one(i) for i in range(clients)))
    return statuses


async def storm_phase(
    base: str,
    phones: list[Phone],
    duration: float,
    interval_s: float,
    clients: int,
    usernames: list[str] | None,
) -> tuple[dict[str, Any], dict[int, int]]:
    stop = asyncio.Event()
    storm = asyncio.create_task(_storm(base, clients, usernames, stop))
    await asyncio.sleep(1.0)  # the storm under way before measuring
    try:
        ingest = await ingest_phase(base, phones, duration, interval_s)
    finally:
        stop.set()
    return ingest, dict(await storm)


async def _timed_login(http: aiohttp.ClientSession, username: str, password: str) -> float:
    began = time.perf_counter()
    async with http.post(
        "/api/v1/auth/token", json={"username": username, "password": password}
    ) as resp:
        await resp.read()
        expected = 200 if password == PASSWORD else 401
        if resp.status != expected:
            raise SystemExit(f"login for {username!r} answered {resp.status}, not {expected}")
    return (time.perf_counter() - began) * 1000


async def login_timing(base: str, samples: int, known: list[str]) -> dict[str, float]:
    """Median login time (ms), one login after the other, for unknown usernames and for
    existing officers with a wrong and with the right password."""
    unknown, wrong, right = [], [], []
    async with aiohttp.ClientSession(base) as http:
        await _timed_login(http, known[0], PASSWORD)  # a warm connection and pool
        for i in range(samples):
            unknown.append(await _timed_login(http, f"nobody-{uuid.uuid4().hex[:12]}", WRONG))
            wrong.append(await _timed_login(http, known[i // BELOW_THROTTLE], WRONG))
            right.append(await _timed_login(http, known[i % len(known)], PASSWORD))
    return {
        "unknown_ms": round(statistics.median(unknown), 2),
        "known_wrong_ms": round(statistics.median(wrong), 2),
        "known_right_ms": round(statistics.median(right), 2),
    }


async def create_officers(
    database_url: str, served: Served | None, count: int, prefix: str
) -> list[str]:
    """``count`` officers of one new station, created by the serving checkout's command line
    when it is another checkout (its own hashing parameters), else by this one's code."""
    station = f"bench-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{station}-{i}" for i in range(count)]
    for name in names:
        if served is not None and served.repo is not None:
            proc = await asyncio.create_subprocess_exec(
                *served.command,
                *("admin", "create-officer", "--username", name, "--password", PASSWORD),
                *("--role", "officer", "--org-unit", station),
                env=served.env,
                cwd=served.repo,
                stdout=subprocess.DEVNULL,
            )
            if await proc.wait() != 0:
                raise RuntimeError(f"create-officer failed in {served.repo}")
        else:
            await create_officer(
                database_url,
                username=name,
                password=PASSWORD,
                role="officer",
                org_code=station,
            )
    return names


@contextlib.contextmanager
def target(args: argparse.Namespace) -> Iterator[tuple[str, str, Served | None]]:
    """(base URL, database URL, the served instance when this script started it)."""
    if args.url:
        database_url = args.database_url or os.environ.get("CM_DATABASE_URL")
        if not database_url:
            raise SystemExit("--url needs --database-url (or CM_DATABASE_URL) to seed officers")
        yield args.url.rstrip("/"), database_url, None
        return
    with serving(args.workers, repo=args.repo) as served:
        yield served.base, served.database_url, served


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Ingest latency during a login storm.")
    p.add_argument("--url", help="a running instance to target instead of starting one")
    p.add_argument("--database-url", help="its database (to create officers), with --url")
    p.add_argument("--repo", type=Path, default=None, help="serve this checkout instead")
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    p.add_argument("--devices", type=int, default=4, help="uploading devices")
    p.add_argument("--interval-ms", type=float, default=50.0, help="per device, between fixes")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per ingest phase")
    p.add_argument("--logins", type=int, default=120, help="parallel wrong-login clients")
    p.add_argument("--storm", choices=["unknown", "known"], default="unknown")
    p.add_argument("--samples", type=int, default=30, help="logins per kind for the timing")
    args = p.parse_args(argv)
    interval_s = args.interval_ms / 1000

    async def run(base: str, database_url: str, served: Served | None) -> dict[str, Any]:
        made = await seed(base, database_url, args.devices, "strict", served)
        known = await create_officers(
            database_url, served, math.ceil(args.samples / BELOW_THROTTLE), "timing"
        )
        storm_names = (
            await create_officers(database_url, served, 20, "storm")
            if args.storm == "known"
            else None
        )
        phones = _phones(made, args.duration, interval_s)
        alone = await ingest_phase(base, phones, args.duration, interval_s)
        print(f"ingest alone: {alone}", flush=True)
        during, logins = await storm_phase(
            base, phones, args.duration, interval_s, args.logins, storm_names
        )
        print(f"ingest during {args.logins} wrong logins: {during}", flush=True)
        print(f"  logins answered: {logins}", flush=True)
        await asyncio.sleep(2.0)  # the storm's last hashes done
        timing = await login_timing(base, args.samples, known)
        return {"alone": alone, "during": during, "logins": logins, "timing": timing}

    with target(args) as (base, database_url, served):
        figures = asyncio.run(run(base, database_url, served))
    repo = (args.repo or REPO).resolve()
    report = {
        "benchmark": "bench_login",
        "repo": str(repo),
        "commit": commit_of(repo),
        "workers": args.workers,
        "devices": args.devices,
        "interval_ms": args.interval_ms,
        "duration_s": args.duration,
        "login_clients": args.logins,
        "storm": args.storm,
        "samples": args.samples,
        "ingest_alone_p50_ms": figures["alone"]["p50_ms"],
        "ingest_alone_p99_ms": figures["alone"]["p99_ms"],
        "ingest_storm_p50_ms": figures["during"]["p50_ms"],
        "ingest_storm_p99_ms": figures["during"]["p99_ms"],
        "ingest_statuses": {
            "alone": figures["alone"]["statuses"],
            "storm": figures["during"]["statuses"],
        },
        "storm_login_statuses": figures["logins"],
        **{f"login_{k}": v for k, v in figures["timing"].items()},
    }
    t = figures["timing"]
    print(f"logins ({args.samples} each, median): unknown {t['unknown_ms']} ms, ", end="")
    print(f"known+wrong {t['known_wrong_ms']} ms, known+right {t['known_right_ms']} ms")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
