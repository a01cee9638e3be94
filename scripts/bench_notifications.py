"""Benchmark: notifications dispatched from the event log to a local webhook receiver.

On a scratch database of the configured PostgreSQL (``CM_DATABASE_URL``'s server; created,
migrated and dropped afterwards), ``--events`` events (20,000 by default) are appended to the
event log for a station whose county has one webhook channel (with a secret, so every body
is signed). Then the notifications consumer (fan-out into deliveries) and the sender (lease,
send concurrently over one client session, record) run side by side, as the
``event-consumers`` and ``notifications`` jobs do, until the receiver has every event.

The receiver is a minimal aiohttp server in a process of its own (so it does not share the
event loop being measured); it checks each ``X-CM-Signature`` and counts what it accepted.

Prints the end-to-end deliveries per second, how long the fan-out took, and JSON.

    .venv/bin/python scripts/bench_notifications.py [--events 20000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from correction_monitor.adapters.db import create_pool
from correction_monitor.cli import use_event_loop
from correction_monitor.domain.clock import SystemClock
from correction_monitor.domain.events import DomainEvent
from correction_monitor.migrations import migrate
from correction_monitor.policy import load_policy
from correction_monitor.service.consumers import ConsumerRunner
from correction_monitor.service.notifications import NotificationSender, notifications_consumer
from correction_monitor.service.unit_of_work import PostgresUnitOfWork
from correction_monitor.web.http_sender import HttpTransport, new_session

SECRET = "bench-secret"  # noqa: S105 - signs the benchmark's own bodies


def receiver(port: int) -> None:
    """The receiving process: checks signatures, counts accepted and refused bodies."""
    from aiohttp import web

    counts = {"ok": 0, "bad": 0}
    ids: set[int] = set()

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if request.headers.get("X-CM-Signature") != expected:
            counts["bad"] += 1
            return web.Response(status=401)
        counts["ok"] += 1
        ids.add(json.loads(raw)["id"])
        return web.Response(status=204)

    async def count(_: web.Request) -> web.Response:
        return web.json_response(counts | {"distinct": len(ids)})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    use_event_loop("uvloop")
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def prepare(database_url: str, events: int, hook_url: str) -> None:
    """A county with a station, a webhook channel on the county, and the events."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        county = await pool.fetchval(
            "INSERT INTO org_units (code, name, timezone) VALUES ('bc', '县局', 'Asia/Shanghai')"
            " RETURNING id"
        )
        station = await pool.fetchval(
            "INSERT INTO org_units (code, name, parent_id, timezone)"
            " VALUES ('bs', '司法所', $1, 'Asia/Shanghai') RETURNING id",
            county,
        )
        await pool.execute(
            "INSERT INTO notification_channels (org_unit_id, kind, url, secret, events)"
            " VALUES ($1, 'webhook', $2, $3, $4)",
            county,
            hook_url,
            SECRET,
            ["task.escalated"],
        )
        for start in range(0, events, 2000):
            uow = PostgresUnitOfWork(pool)
            async with uow:
                for n in range(start, min(events, start + 2000)):
                    uow.emit(
                        DomainEvent(
                            "task.escalated",
                            station,
                            data={"task_id": n, "kind": "verify_alert", "escalation_level": 1},
                        )
                    )
        # The cursor starts before the events (as a consumer registered before them).
        await pool.execute(
            "INSERT INTO event_cursors (consumer, position) VALUES ('notifications', 0)"
            " ON CONFLICT (consumer) DO UPDATE SET position = 0"
        )
    finally:
        await pool.close()


async def received(base: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session, session.get(base + "/count") as resp:
        counts: dict[str, int] = await resp.json()
        return counts


async def dispatch(database_url: str, events: int, base: str, batch: int) -> dict[str, Any]:
    pool = await create_pool(database_url, min_size=2, max_size=8)
    session = new_session()
    clock = SystemClock()
    policy = load_policy()

    def uow() -> PostgresUnitOfWork:
        return PostgresUnitOfWork(pool)

    consumer = notifications_consumer(clock)
    runner = ConsumerRunner(uow, [consumer], batch=1000)
    sender = NotificationSender(
        uow, HttpTransport(session), policy.notifications, clock, batch=batch
    )
    fanned: dict[str, float] = {}
    t0 = time.perf_counter()

    async def consume() -> None:
        while await runner.run(consumer, limit=events * 2):
            pass
        fanned["s"] = time.perf_counter() - t0

    async def send() -> int:
        sent = 0
        while True:
            n = await sender.run_once()
            sent += n
            if n == 0:
                if "s" in fanned:
                    left = await pool.fetchval(
                        "SELECT count(*) FROM notification_deliveries WHERE status = 'pending'"
                    )
                    if left == 0:
                        return sent
                await asyncio.sleep(0.005)

    try:
        _, sent = await asyncio.gather(consume(), send())
        elapsed = time.perf_counter() - t0
        counts = await received(base)
        delivered = await pool.fetchval(
            "SELECT count(*) FROM notification_deliveries WHERE status = 'delivered'"
        )
    finally:
        await session.close()
        await pool.close()
    return {
        "events": events,
        "sent": sent,
        "delivered": delivered,
        "received_ok": counts["ok"],
        "received_distinct": counts["distinct"],
        "bad_signatures": counts["bad"],
        "fan_out_s": round(fanned["s"], 2),
        "elapsed_s": round(elapsed, 2),
        "deliveries_per_s": round(delivered / elapsed),
        "batch": batch,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=500, help="deliveries claimed per round")
    p.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.receiver:
        receiver(args.receiver)
        return 0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    server_url = os.environ.get("CM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"cm_bench_notify_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    database_url = with_database(server_url, name)
    try:
        migrate(database_url)
        asyncio.run(prepare(database_url, args.events, base + "/hook"))
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        load = os.getloadavg()
        use_event_loop("uvloop")
        figures = asyncio.run(dispatch(database_url, args.events, base, args.batch))
        figures["load_before"] = [round(x, 2) for x in load]
        print(
            f"{figures['delivered']:,} of {args.events:,} events delivered to a local webhook in"
            f" {figures['elapsed_s']} s: {figures['deliveries_per_s']:,} deliveries/s end to end"
            f" (fan-out done at {figures['fan_out_s']} s); receiver accepted"
            f" {figures['received_ok']:,} ({figures['received_distinct']:,} distinct ids,"
            f" {figures['bad_signatures']} bad signatures); load before {figures['load_before']}"
        )
        print(json.dumps(figures))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
