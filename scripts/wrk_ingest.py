"""Ingestion benchmark with an independent client: wrk, one thread, 64 connections.

It does what the load generator (``correction_monitor.loadgen``) does around the load — a
fresh database, ``correction-monitor serve --workers N`` on a free port, a county seeded over
HTTP with N subjects and their enrolled devices, the same-run bare COPY baseline, the
database dropped afterwards — but the load is wrk's: ``scripts/wrk_ingest.lua`` sends each
request from the next device in turn, with 100 fixes a request (``--mode batched``) or one
(``--mode single``). The devices' tokens go to a file the Lua script reads at start.

Every response is read: non-200 answers are counted by status, and the fixes of 200 answers
as accepted, duplicate or rejected; more than a handful of anything but accepted fixes (or of
wrk's socket errors and timeouts) fails the run, since a benchmark of refusals measures
nothing. It prints fixes/s (batched) or requests/s (single), wrk's latency p50/p90/p99, the
bare COPY rate and the pipeline/COPY ratio, and closes with a JSON line.

``--repo`` names the checkout whose code the server runs (by default this one): it migrates
the database and serves with that checkout first on ``PYTHONPATH`` and as its working
directory, so the same client measures two checkouts side by side.

    .venv/bin/python scripts/wrk_ingest.py --mode batched --duration 60
    .venv/bin/python scripts/wrk_ingest.py --mode single --duration 30 --repo /tmp/cm-base
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from correction_monitor.loadgen import (
    SIZE,
    SOUTH,
    STEP_DEG,
    WALK_HIGH,
    WALK_LOW,
    WEST,
    bare_copy_rate,
    first_fix_clock,
    seed,
    serving,
)

LUA: Final = Path(__file__).with_suffix(".lua")
REPO: Final = Path(__file__).resolve().parents[1]
BATCH: Final = 100
STEP_MS: Final = 1000
HANDFUL: Final = 5
"""More failed requests, refused fixes or socket errors than this fail the run."""

# Rates well above any measured, for the devices' clocks to start far enough in the past.
FIXES_PER_S_BOUND: Final = {"batched": 400_000, "single": 40_000}
SIX_DAYS_S: Final = 6 * 86400


def e7(degrees: float) -> int:
    """Degrees as whole 1e-7 degrees."""
    return round(degrees * 1e7)


def lua_args(mode: str, tokens: Path, start_ms: int, *, seed: int = 1) -> list[str]:
    """The arguments of ``scripts/wrk_ingest.lua`` (after wrk's ``--``): the mode, the token
    file, the devices' clock, and the load generator's county in 1e-7 degrees — devices start
    at least 0.05° inside it and walk by up to ``STEP_DEG`` a fix, 0.01° from its edge."""
    start = (WEST + 0.05, SOUTH + 0.05, WEST + SIZE - 0.05, SOUTH + SIZE - 0.05)
    walk = (*WALK_LOW, *WALK_HIGH)
    return [
        f"mode={mode}",
        f"tokens={tokens}",
        f"start_ms={start_ms}",
        f"step_ms={STEP_MS}",
        f"batch={BATCH}",
        f"seed={seed}",
        "walk=" + ",".join(str(e7(x)) for x in walk),
        "start=" + ",".join(str(e7(x)) for x in start),
        f"step={e7(STEP_DEG)}",
    ]


def parse_report(output: str) -> dict[str, Any]:
    """The figures the Lua script's ``done()`` prints as ``wrk_ingest {json}``."""
    for line in output.splitlines():
        if line.startswith("wrk_ingest {"):
            report: dict[str, Any] = json.loads(line.removeprefix("wrk_ingest "))
            return report
    raise ValueError("wrk printed no 'wrk_ingest {...}' line (did the Lua script fail?)")


def failures(report: dict[str, Any]) -> list[str]:
    """What makes a run's figures worthless: more than a handful of non-200 answers, refused
    or duplicate fixes, unreadable 200 answers or socket errors, or nothing accepted."""
    found = []
    non_200 = sum(report["non_200"].values())
    if non_200 > HANDFUL:
        by_status = ", ".join(f"{n} × {s}" for s, n in sorted(report["non_200"].items()))
        found.append(f"{non_200} non-200 responses ({by_status})")
    for name in ("rejected", "duplicates"):
        if report[name] > HANDFUL:
            found.append(f"{report[name]} fixes {name}")
    if report["unread"] > HANDFUL:
        found.append(f"{report['unread']} 200 responses without an accepted count")
    sockets = sum(report[k] for k in ("connect_errors", "read_errors", "write_errors"))
    if sockets > HANDFUL:
        found.append(f"{sockets} socket errors")
    if report["timeouts"] > HANDFUL:
        found.append(f"{report['timeouts']} requests timed out")
    if report["accepted"] == 0:
        found.append("no fix accepted")
    if found and report["first_error"]:
        found.append(f"first: {report['first_error']}")
    return found


def first_fix_ms(mode: str, duration: float, devices: int) -> int:
    """Epoch ms of every device's first fix (see ``loadgen.first_fix_clock``); SystemExit when
    a run this long could reach the future or fixes too old to be accepted."""
    fixes = FIXES_PER_S_BOUND[mode] * duration
    if fixes / devices * STEP_MS / 1000 + 600 > SIX_DAYS_S:
        raise SystemExit(f"{duration:g} s over {devices} devices is too long: add devices")
    return round(first_fix_clock(time.time(), fixes, devices, STEP_MS / 1000) * 1000)


def commit_of(repo: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],  # noqa: S607 - git on PATH
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Ingestion benchmark with wrk as the client.")
    p.add_argument("--mode", choices=["batched", "single"], default="batched")
    p.add_argument("--duration", type=int, default=30, help="seconds of load")
    p.add_argument("--devices", type=int, default=4000, help="enrolled devices (subjects)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes")
    p.add_argument("--connections", type=int, default=64, help="wrk's connections")
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose code serves")
    p.add_argument("--copy-rows", type=int, default=500_000, help="rows per bare COPY round")
    p.add_argument("--copy-rounds", type=int, default=3, help="bare COPY rounds (median used)")
    p.add_argument("--keep-database", action="store_true")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk", help="the wrk binary")
    args = p.parse_args(argv)
    if args.devices < 2 * args.connections:
        # A device whose requests overlap would deliver its fixes out of order.
        p.error("--devices must be at least twice --connections")
    repo = args.repo.resolve()
    start_ms = first_fix_ms(args.mode, args.duration, args.devices)
    per_request = BATCH if args.mode == "batched" else 1

    with serving(args.workers, repo=repo, keep_database=args.keep_database) as served:
        t0 = time.monotonic()
        made = asyncio.run(seed(served.base, served.database_url, args.devices, "strict", served))
        print(f"seeded {len(made)} devices in {time.monotonic() - t0:.1f} s", flush=True)
        with tempfile.NamedTemporaryFile("w", prefix="wrk-tokens-", suffix=".txt") as tokens:
            tokens.write("".join(m["token"] + "\n" for m in made))
            tokens.flush()
            command = [
                args.wrk,
                "-t1",
                f"-c{args.connections}",
                f"-d{args.duration}s",
                "--latency",
                "-s",
                str(LUA),
                served.base,
                "--",
                *lua_args(args.mode, Path(tokens.name), start_ms),
            ]
            print(" ".join(command[:-1]) + " …", flush=True)
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            ran = subprocess.run(
                command, capture_output=True, text=True, timeout=args.duration + 120, check=False
            )
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(
            "".join(
                line + "\n"
                for line in ran.stdout.splitlines()
                if not line.startswith("wrk_ingest {")
            ),
            end="",
        )
        if ran.returncode != 0:
            print(ran.stderr, file=sys.stderr)
            raise SystemExit(f"wrk exited with {ran.returncode}")
        wrk = parse_report(ran.stdout)
        # Several rounds, the median used, as the load generator does (PostgreSQL's upkeep
        # after a heavy run can slow one short round).
        copy_rates = [
            asyncio.run(bare_copy_rate(served.database_url, args.copy_rows))
            for _ in range(args.copy_rounds)
        ]
        copy_rate = statistics.median(copy_rates)

    wall = wrk["duration_us"] / 1e6
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    fixes_per_s = wrk["accepted"] / wall
    report = {
        "client": "wrk",
        "mode": args.mode,
        "fixes_per_request": per_request,
        "workers": args.workers,
        "threads": 1,
        "connections": args.connections,
        "devices": args.devices,
        "repo": str(repo),
        "commit": commit_of(repo),
        "duration_s": round(wall, 1),
        "requests": wrk["requests"],
        "accepted": wrk["accepted"],
        "duplicates": wrk["duplicates"],
        "rejected": wrk["rejected"],
        "non_200": sum(wrk["non_200"].values()),
        "non_200_by_status": wrk["non_200"],
        "socket_errors": sum(wrk[k] for k in ("connect_errors", "read_errors", "write_errors")),
        "timeouts": wrk["timeouts"],
        "fixes_per_s": round(fixes_per_s),
        "requests_per_s": round(wrk["requests"] / wall),
        "request_p50_ms": round(wrk["latency_p50_us"] / 1000, 2),
        "request_p90_ms": round(wrk["latency_p90_us"] / 1000, 2),
        "request_p99_ms": round(wrk["latency_p99_us"] / 1000, 2),
        "bare_copy_rows_per_s": round(copy_rate),
        "bare_copy_rounds_rows_per_s": [round(r) for r in copy_rates],
        "pipeline_to_copy_ratio": round(fixes_per_s / copy_rate, 3),
        "client_cpu_us_per_request": round(cpu / max(wrk["requests"], 1) * 1e6, 1),
        "client_cpu_cores": round(cpu / wall, 2),
    }
    print(
        f"wrk -t1 -c{args.connections}, mode {args.mode}: {per_request} fix(es)/request, "
        f"{args.workers} worker(s), {args.devices} devices, {repo} ({report['commit']})"
    )
    if args.mode == "batched":
        print(
            f"  fixes/s            {report['fixes_per_s']:>10,}   "
            f"(requests/s {report['requests_per_s']:,})"
        )
    else:
        print(f"  requests/s         {report['requests_per_s']:>10,}")
    print(
        f"  request latency    p50 {report['request_p50_ms']} ms   "
        f"p90 {report['request_p90_ms']} ms   p99 {report['request_p99_ms']} ms"
    )
    print(
        f"  bare COPY          {report['bare_copy_rows_per_s']:>10,} rows/s   "
        f"pipeline/COPY = {report['pipeline_to_copy_ratio']}   (median of rounds "
        + ", ".join(f"{r:,}" for r in report["bare_copy_rounds_rows_per_s"])
        + ")"
    )
    print(
        f"  wrk CPU            {report['client_cpu_us_per_request']} µs/request   "
        f"({report['client_cpu_cores']} of a core)"
    )
    by_status = ", ".join(f"{n} × {s}" for s, n in sorted(wrk["non_200"].items()))
    print(
        f"  non-200 {report['non_200']}{f' ({by_status})' if by_status else ''}, "
        f"rejected {report['rejected']}, duplicates {report['duplicates']}, "
        f"socket errors {report['socket_errors']}, timeouts {report['timeouts']}"
    )
    print(json.dumps(report))
    found = failures(wrk)
    for line in found:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
