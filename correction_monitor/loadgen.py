"""Load generator and ingestion benchmark: simulated phones against a real server.

It creates a fresh database, starts ``correction-monitor serve --workers N`` on it, seeds a
county with subjects and enrolled devices over HTTP, then drives simulated phones — most
wander inside their county, a few leave it and come back — in batched (many fixes per
request) or single-fix mode, from several client processes. It prints fixes/s, request
latency p50/p99, fix→alert latency p50/p99, server RSS over the run, the client processes'
own CPU time per request, and the rate of a bare COPY of the same rows into the same table
on the same database, so pipeline/COPY is the headline ratio. A JSON line closes the report.

The clients share the machine with the server, so they are kept lean: each connection is a
bare HTTP/1.1 keep-alive protocol whose callbacks send the next request as soon as a
response is read, and bodies are formatted straight to bytes (a batch's walk with numpy).

    python -m correction_monitor.loadgen --mode batched --subjects 2000 --duration 60
    python -m correction_monitor.loadgen --mode single --workers 2 --clients 2
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import collections
import contextlib
import functools
import json
import math
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty
from typing import Any, Final, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import numpy as np
import orjson
import psutil

from correction_monitor.adapters.fix_store import FIX_COLUMNS
from correction_monitor.cli import use_event_loop
from correction_monitor.migrations import migrate
from correction_monitor.service.bootstrap import create_officer

# The simulated county: a 0.3° square (≈ 25 km × 33 km) near Changsha, WGS-84.
WEST, SOUTH, SIZE = 112.8, 28.0, 0.3
BREACH_SHARE = 0.05
PASSWORD = "load-admin-2026"  # noqa: S105 - a throwaway benchmark database's admin


# The body is the native protocol's (correction_monitor.ingest.protocols.native): fixes with
# id (a string), ts (epoch ms), lat and lon (7 decimals, ≈ 1 cm) and accuracy_m, written by
# one bytes format of integers only (lat and lon as whole degrees and 1e-7 degrees), which
# costs far less than building dicts for a JSON encoder. The county lies north and east of
# 0°, so no coordinate is negative.
FIX_TEMPLATE: Final = b'{"id":"%d","ts":%d,"lat":%d.%07d,"lon":%d.%07d,"accuracy_m":%d}'
OUTSIDE_LON: Final = WEST + SIZE + 0.05  # ~5 km east of the county
WALK_LOW: Final = (WEST + 0.01, SOUTH + 0.01)  # lon, lat
WALK_HIGH: Final = (WEST + SIZE - 0.01, SOUTH + SIZE - 0.01)
STEP_DEG: Final = 2e-4
VECTOR_FROM: Final = 8  # batches of at least this many fixes are walked with numpy


@functools.cache
def body_template(n: int) -> bytes:
    """The ``{"fixes": [...]}`` format string for ``n`` fixes of :data:`FIX_TEMPLATE`."""
    return b'{"fixes":[' + b",".join([FIX_TEMPLATE] * n) + b"]}"


@dataclass
class Phone:
    """A simulated phone: a random walk inside the county or, for a breaching phone, 300 of
    every 1,000 fixes ~5 km east of it (the walk pauses meanwhile and resumes on return)."""

    subject_id: int
    token: str
    lon: float
    lat: float
    breaches: bool
    clock: float  # epoch seconds of the phone's next fix
    step_s: float
    seq: int = 0
    # A body the server answered 503 to, and its newest fix's ts (epoch ms): sent again as is.
    pending: tuple[bytes, int] | None = None

    def next_body(self, n: int, rng: np.random.Generator) -> tuple[bytes, int]:
        """The next ``n`` fixes as a request body, and the newest fix's ts in epoch ms.

        >>> phone = Phone(1, "t", 112.9, 28.1, False, 1_700_000_000.0, 1.0)
        >>> body, newest = phone.next_body(2, np.random.default_rng(0))
        >>> [(f["id"], f["ts"], f["accuracy_m"]) for f in orjson.loads(body)["fixes"]], newest
        ([('1', 1700000000000, 9), ('2', 1700000001000, 10)], 1700000001000)
        """
        big = n >= VECTOR_FROM
        values: list[int] = self.walk_table(n, rng).ravel().tolist() if big else self.walk(n)
        return body_template(n) % tuple(values), values[-6]

    def walk(self, n: int) -> list[int]:
        """The next fixes' values for :data:`FIX_TEMPLATE`, one fix after the other (for a
        few fixes this costs less than numpy's set-up)."""
        values: list[int] = []
        uniform = random.uniform
        lo_lon, lo_lat = WALK_LOW
        hi_lon, hi_lat = WALK_HIGH
        for _ in range(n):
            self.seq += 1
            if self.breaches and 200 <= self.seq % 1000 < 500:
                lon, lat = OUTSIDE_LON, self.lat
            else:
                self.lon = min(max(self.lon + uniform(-STEP_DEG, STEP_DEG), lo_lon), hi_lon)
                self.lat = min(max(self.lat + uniform(-STEP_DEG, STEP_DEG), lo_lat), hi_lat)
                lon, lat = self.lon, self.lat
            values += (self.seq, int(self.clock * 1000))
            values += divmod(round(lat * 1e7), 10**7)
            values += divmod(round(lon * 1e7), 10**7)
            values.append(8 + self.seq % 17)
            self.clock += self.step_s
        return values

    def walk_table(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The same walk for a batch at once, a row of :data:`FIX_TEMPLATE` values per fix.

        One cumulative sum is exact while no step reaches the county's edge; else the clamped
        walk is replayed step by step over the same random steps.
        """
        seqs = np.arange(self.seq + 1, self.seq + n + 1, dtype=np.int64)
        steps = rng.uniform(-STEP_DEG, STEP_DEG, (n, 2))
        away = None
        if self.breaches:
            phase = seqs % 1000
            away = (phase >= 200) & (phase < 500)
            steps[away] = 0.0  # the walk pauses while the phone is away
        steps[0] += (self.lon, self.lat)
        walk = np.cumsum(steps, axis=0)
        (lo_lon, lo_lat), (hi_lon, hi_lat) = walk.min(axis=0).tolist(), walk.max(axis=0).tolist()
        if (
            lo_lon < WALK_LOW[0]
            or lo_lat < WALK_LOW[1]
            or hi_lon > WALK_HIGH[0]
            or hi_lat > WALK_HIGH[1]
        ):
            steps[0] -= (self.lon, self.lat)
            walk = self._clamped(steps, away)
        self.lon, self.lat = walk[-1].tolist()
        if away is not None:
            walk[away, 0] = OUTSIDE_LON
        table = np.empty((n, 7), dtype=np.int64)
        table[:, 0] = seqs
        table[:, 1] = (self.clock + np.arange(n) * self.step_s) * 1000
        degrees, fraction = np.divmod(np.rint(walk * 1e7).astype(np.int64), 10**7)
        table[:, 2], table[:, 3] = degrees[:, 1], fraction[:, 1]
        table[:, 4], table[:, 5] = degrees[:, 0], fraction[:, 0]
        table[:, 6] = 8 + seqs % 17
        self.seq += n
        self.clock += n * self.step_s
        return table

    def _clamped(self, steps: np.ndarray, away: np.ndarray | None) -> np.ndarray:
        walk = np.empty_like(steps)
        lon, lat = self.lon, self.lat
        lo_lon, lo_lat = WALK_LOW
        hi_lon, hi_lat = WALK_HIGH
        for i, (d_lon, d_lat) in enumerate(steps.tolist()):
            if away is None or not away[i]:
                lon = min(max(lon + d_lon, lo_lon), hi_lon)
                lat = min(max(lat + d_lat, lo_lat), hi_lat)
            walk[i] = lon, lat
        return walk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def first_fix_clock(now: float, fixes: float, phones: int, step_s: float) -> float:
    """Epoch seconds of every phone's first fix for a run of up to ``fixes`` fixes over
    ``phones`` phones taken ``step_s`` apart: far enough in the past that the run stays 10 min
    before ``now`` (a phone's clock runs as fast as its fixes are sent, and a fix from the
    future is refused), but no more than six days (fixes older than seven are refused).

    >>> first_fix_clock(1_000_000.0, 4_000_000, 4000, 1.0)
    998400.0
    >>> first_fix_clock(1_000_000.0, 4e10, 4000, 1.0)
    481600.0
    """
    span = fixes / max(phones, 1) * step_s
    return now - min(span + 600, 6 * 86400)


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


async def seed(
    base: str, database_url: str, subjects: int, level: str, served: Served | None = None
) -> list[dict[str, Any]]:
    """A county with ``subjects`` subjects, each with an enrolled device; their ids and tokens.

    The county's administrator is created here, or by the command line of ``served``'s
    checkout when given (another checkout's schema may differ from this code's).
    """
    county = f"load-{uuid.uuid4().hex[:6]}"
    if served is not None and served.repo is not None:
        proc = await asyncio.create_subprocess_exec(
            *served.command,
            *("admin", "create-officer", "--username", county, "--password", PASSWORD),
            *("--role", "admin", "--org-unit", county, "--org-name", "负载测试县"),
            env=served.env,
            cwd=served.repo,
            stdout=subprocess.DEVNULL,
        )
        if await proc.wait() != 0:
            raise RuntimeError(f"create-officer failed in {served.repo}")
    else:
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


@dataclass(frozen=True)
class Served:
    """A server started by :func:`serving`, and how to run its checkout's command line."""

    base: str  # http://127.0.0.1:<port>
    pid: int
    database_url: str
    command: list[str]  # correction-monitor, as the server runs it
    env: dict[str, str]
    repo: Path | None  # the checkout whose code runs, None for this environment's


@contextlib.contextmanager
def serving(
    workers: int, *, repo: Path | None = None, keep_database: bool = False
) -> Iterator[Served]:
    """``correction-monitor serve --workers N`` on a free port, on a fresh migrated database
    of the server of ``CM_DATABASE_URL``; afterwards the server stops and the database and the
    run's Redis keys are dropped (unless ``keep_database``).

    Without ``repo`` this environment's ``correction-monitor`` serves. With ``repo``, a
    checkout of the project, that checkout's code migrates and serves (``python -m
    correction_monitor`` with the checkout first on ``PYTHONPATH`` and as the working
    directory), so the same client can measure another checkout.
    """
    server_url = os.environ.get("CM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("CM_REDIS_URL", "redis://127.0.0.1:6379/0")
    database_url = asyncio.run(create_database(server_url))
    port = free_port()
    env = os.environ | {
        "CM_DATABASE_URL": database_url,
        "CM_REDIS_URL": redis_url,
        "CM_REDIS_PREFIX": f"cmload:{uuid.uuid4().hex[:6]}:",
        "CM_LOG_LEVEL": "WARNING",
        "CM_HTTP_PORT": str(port),
    }
    if repo is None:
        command = [str(Path(sys.executable).with_name("correction-monitor"))]
    else:
        command = [sys.executable, "-m", "correction_monitor"]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    server: subprocess.Popen[bytes] | None = None
    try:
        if repo is None:
            migrate(database_url)
        else:
            subprocess.run([*command, "migrate"], env=env, cwd=repo, check=True)
        server = subprocess.Popen(
            [*command, "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            cwd=repo,
            start_new_session=True,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)
        base = f"http://127.0.0.1:{port}"
        print(f"server pid {server.pid} on {base}, database {database_url}", flush=True)
        yield Served(base, server.pid, database_url, command, env, repo)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        if not keep_database:
            asyncio.run(drop_database(server_url, database_url))
            drop_redis_keys(redis_url, env["CM_REDIS_PREFIX"])


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


class HttpError(Exception):
    """A response this client does not read."""


REQUEST_HEAD: Final = (
    b"POST /api/v1/fixes HTTP/1.1\r\nHost: %b\r\nAuthorization: Bearer %b\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)


def read_head(head: bytes) -> tuple[int, bool, int]:
    """Status, whether the server keeps the connection, and body length, from a lower-cased
    HTTP/1.x response head; ``HttpError`` for a head this client does not read.

    >>> read_head(b"http/1.1 503 service unavailable\\r\\ncontent-length: 17")
    (503, True, 17)
    >>> read_head(b"http/1.1 200 ok\\r\\nconnection: close\\r\\ncontent-length: 2")
    (200, False, 2)
    """
    if not head.startswith(b"http/1.") or not head[9:12].isdigit():
        raise HttpError(f"not an HTTP/1.x response: {head[:40]!r}")
    keeps = not (head.startswith(b"http/1.0") or b"\r\nconnection: close" in head)
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise HttpError("a response without Content-Length")
    line_end = head.find(b"\r\n", at + 2)
    value = head[at + 17 : line_end if line_end >= 0 else len(head)].strip()
    if not value.isdigit():
        raise HttpError(f"a bad Content-Length: {value!r}")
    return int(head[9:12]), keeps, int(value)


class HttpConnection(asyncio.Protocol, abc.ABC):
    """The response side of a lean HTTP/1.1 keep-alive client, one request in flight at a time.

    It reads just what the benchmark needs: the status code, ``Content-Length`` and a body of
    that length, and whether the server keeps the connection (not after ``Connection: close``
    or an HTTP/1.0 response). A response without ``Content-Length`` (chunked or
    close-delimited), a malformed one or one nobody asked for closes the connection.
    Subclasses act on :meth:`response`, and on :meth:`lost` for a request whose connection
    closed before its response was read.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.reusable = True
        self.waiting = False  # a request is out and its response not read yet
        self.status = 0
        self.body_at = -1  # where the body starts once the head is read, else -1
        self.body_end = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.waiting = True
        self.transport.write(data)

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.body_at < 0:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            try:
                self.status, keeps, length = read_head(bytes(buffer[:head_end]).lower())
            except HttpError:
                self.close()
                return
            self.reusable = self.reusable and keeps
            self.body_at = head_end + 4
            self.body_end = self.body_at + length
        if len(buffer) < self.body_end:
            return
        if len(buffer) > self.body_end or not self.waiting:
            self.close()  # a response nobody asked for
            return
        body = bytes(buffer[self.body_at : self.body_end])
        buffer.clear()
        self.body_at, self.body_end = -1, 0
        self.waiting = False
        if not self.reusable:
            self.close()
        self.response(self.status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.waiting:
            self.waiting = False
            self.lost()

    @abc.abstractmethod
    def response(self, status: int, body: bytes) -> None:
        """A complete response to the request in flight."""

    @abc.abstractmethod
    def lost(self) -> None:
        """The connection closed before the response to the request in flight was read."""


class Slot(HttpConnection):
    """One of a client's connections: it sends a phone's fixes, and the next phone's once the
    response is read."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run
        self.phone: Phone | None = None
        self.body = b""
        self.newest = 0  # ts of the newest fix in the body, epoch ms
        self.started = 0.0  # monotonic
        self.wall = 0.0  # epoch seconds

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.run.slots.add(self)
        self.run.send_next(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.slots.discard(self)
        super().connection_lost(exc)

    def response(self, status: int, body: bytes) -> None:
        self.run.finish(self, status, body)

    def lost(self) -> None:
        self.run.finish(self, 0, b"")


class Run:
    """One client process's load: ``concurrency`` keep-alive connections, each sending the
    fixes of the next phone in turn until ``duration`` is over, without a coroutine or a
    future per request (the connections' callbacks send the next request)."""

    def __init__(
        self,
        base: str,
        phones: list[Phone],
        per_request: int,
        duration: float,
        concurrency: int,
        rate: float,
    ) -> None:
        if not phones:
            raise ValueError("a client needs at least one phone to drive")
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.host_header = url.netloc.encode("ascii")
        self.phones = collections.deque(phones)
        self.tokens = {id(phone): phone.token.encode("ascii") for phone in phones}
        self.per_request = per_request
        self.duration = duration
        self.concurrency = concurrency
        # With a rate, a connection sends at most one request per interval.
        self.interval = concurrency * per_request / rate if rate > 0 else 0.0
        self.rng = np.random.default_rng(os.getpid())
        self.slots: set[Slot] = set()
        self.parked: collections.deque[Slot] = collections.deque()  # waiting for a phone
        self.active = concurrency  # slots not ended, connected or not
        self.deadline = 0.0
        self.latencies: list[float] = []
        self.sent_log: list[tuple[int, float, float]] = []  # (subject, newest fix ts, send time)
        self.accepted = self.duplicates = self.rejected = self.errors = self.overload = 0
        self.requests = self.reconnects = 0

    async def __call__(self) -> dict[str, Any]:
        cpu_started = time.process_time()
        started = time.monotonic()
        done = self.start()
        watchdog = asyncio.get_running_loop().call_later(self.duration + 30.0, self.stop)
        await done
        wall_s = time.monotonic() - started
        cpu_s = time.process_time() - cpu_started
        watchdog.cancel()
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": self.errors,
            "overload": self.overload,
            "reconnects": self.reconnects,
            "requests": self.requests,
            "cpu_s": cpu_s,
            "latencies": self.latencies,
            "sent_log": self.sent_log,
            "wall_s": wall_s,
        }

    def start(self) -> asyncio.Future[None]:
        """Open the connections, which start sending; the future is done when all have ended."""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.deadline = time.monotonic() + self.duration
        for _ in range(self.concurrency):
            self.connect()
        return self.done

    def connect(self) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_connection(lambda: Slot(self), self.host, self.port))
        task.add_done_callback(self.connected)

    def connected(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            self.errors += 1
            if time.monotonic() < self.deadline:
                asyncio.get_running_loop().call_later(0.1, self.connect)
            else:
                self.end_slot()

    def send_next(self, slot: Slot) -> None:
        if time.monotonic() >= self.deadline:
            slot.close()
            self.end_slot()
            while self.parked:  # they would wait for a phone forever
                asyncio.get_running_loop().call_soon(self.send_next, self.parked.popleft())
            return
        if not slot.reusable:  # the server closed it, or said it would
            slot.close()
            self.reconnects += 1
            self.connect()
            return
        if not self.phones:
            self.parked.append(slot)
            return
        phone = self.phones.popleft()
        if phone.pending is None:
            body, newest = phone.next_body(self.per_request, self.rng)
        else:
            (body, newest), phone.pending = phone.pending, None
        slot.phone, slot.body, slot.newest = phone, body, newest
        self.requests += 1
        slot.started = time.monotonic()
        slot.wall = time.time()
        slot.send(REQUEST_HEAD % (self.host_header, self.tokens[id(phone)], len(body)) + body)

    def finish(self, slot: Slot, status: int, payload: bytes) -> None:
        elapsed = time.monotonic() - slot.started
        phone = slot.phone
        assert phone is not None
        if status == 200:
            out = orjson.loads(payload)
            self.accepted += out["accepted"]
            self.duplicates += out["duplicates"]
            self.rejected += len(out["rejected"])
            self.latencies.append(elapsed)
            self.sent_log.append((phone.subject_id, slot.newest / 1000, slot.wall))
        elif status == 503:
            self.overload += 1
            phone.pending = slot.body, slot.newest  # the same fixes, on the phone's next turn
        else:
            self.errors += 1
        slot.phone, slot.body = None, b""
        self.phones.append(phone)
        loop = asyncio.get_running_loop()
        if self.parked:
            loop.call_soon(self.send_next, self.parked.popleft())
        if self.interval > elapsed:
            loop.call_later(self.interval - elapsed, self.send_next, slot)
        else:
            self.send_next(slot)

    def end_slot(self) -> None:
        self.active -= 1
        if self.active == 0 and not self.done.done():
            self.done.set_result(None)

    def stop(self) -> None:
        """A request the server never answers must not hang the run."""
        for slot in list(self.slots):
            slot.close()
        if not self.done.done():
            self.done.set_result(None)


async def drive(
    base: str,
    phones: list[Phone],
    mode: str,
    batch: int,
    duration: float,
    concurrency: int,
    rate: float,
) -> dict[str, Any]:
    """Send fixes from ``concurrency`` keep-alive connections until ``duration`` is over."""
    per_request = batch if mode == "batched" else 1
    return await Run(base, phones, per_request, duration, concurrency, rate)()


def client_main(args: tuple[Any, ...], out: Any) -> None:
    base, phones, mode, batch, duration, concurrency, rate = args
    random.seed(os.getpid())
    use_event_loop("uvloop")
    out.put(asyncio.run(drive(base, phones, mode, batch, duration, concurrency, rate)))


# --- HTTP floor baseline --------------------------------------------------------------------


class FloorSlot(HttpConnection):
    """A keep-alive connection asking ``GET /healthz`` over and over until the deadline."""

    def __init__(
        self, request: bytes, deadline: float, tally: dict[str, int], ended: asyncio.Event
    ) -> None:
        super().__init__()
        self.request, self.deadline, self.tally, self.ended = request, deadline, tally, ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.send(self.request)

    def response(self, status: int, body: bytes) -> None:
        self.tally["ok" if status == 200 else "errors"] += 1
        if self.reusable and time.monotonic() < self.deadline:
            self.send(self.request)
        else:
            self.close()

    def lost(self) -> None:
        self.tally["errors"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.tally["open"] -= 1
        if self.tally["open"] == 0:
            self.ended.set()


async def http_floor(base: str, duration: float, concurrency: int) -> dict[str, Any]:
    """Requests/s of the server's cheapest route, ``GET /healthz`` (no database, no body),
    from the same kind of client: the most requests/s the web stack itself answers on this
    machine, the ceiling of one-fix-per-request ingestion."""
    url = urlsplit(base)
    request = b"GET /healthz HTTP/1.1\r\nHost: %b\r\n\r\n" % url.netloc.encode("ascii")
    tally = {"ok": 0, "errors": 0, "open": concurrency}
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    deadline = started + duration
    for _ in range(concurrency):
        await loop.create_connection(
            lambda: FloorSlot(request, deadline, tally, ended),
            url.hostname or "127.0.0.1",
            url.port or 80,
        )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ended.wait(), duration + 10.0)
    return {"ok": tally["ok"], "errors": tally["errors"], "wall_s": time.monotonic() - started}


def floor_main(args: tuple[Any, ...], out: Any) -> None:
    base, duration, concurrency = args
    use_event_loop("uvloop")
    out.put(asyncio.run(http_floor(base, duration, concurrency)))


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
    p.add_argument("--copy-rows", type=int, default=500_000, help="rows per bare COPY round")
    p.add_argument("--copy-rounds", type=int, default=3, help="bare COPY rounds (median used)")
    p.add_argument("--keep-database", action="store_true")
    args = p.parse_args(argv)

    with serving(args.workers, keep_database=args.keep_database) as served:
        base, database_url = served.base, served.database_url
        t0 = time.monotonic()
        made = asyncio.run(seed(base, database_url, args.subjects, args.level))
        print(f"seeded {len(made)} subjects in {time.monotonic() - t0:.1f} s", flush=True)

        per_request = args.batch if args.mode == "batched" else 1
        # Room for rates well above those measured.
        expected_fixes = (
            400_000 * args.duration if args.mode == "batched" else 40_000 * args.duration
        )
        step_s = 1.0
        first_fix = first_fix_clock(time.time(), expected_fixes, len(made), step_s)
        phones = [
            Phone(
                m["subject_id"],
                m["token"],
                WEST + random.uniform(0.05, SIZE - 0.05),
                SOUTH + random.uniform(0.05, SIZE - 0.05),
                random.random() < BREACH_SHARE,
                first_fix,
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
        rss_samples = [rss_of(served.pid)]
        for proc in procs:
            proc.start()
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.1, end - time.monotonic())))
            rss_samples.append(rss_of(served.pid))
        results: list[dict[str, Any]] = []
        while len(results) < len(procs):
            try:
                results.append(out.get(timeout=1.0))
            except Empty:
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"a client process failed (exit code {failed[0]})") from None
        for proc in procs:
            proc.join()
        time.sleep(2.0)  # let the last commits publish
        accepted = sum(r["accepted"] for r in results)
        wall = max(r["wall_s"] for r in results)
        latencies = [x for r in results for x in r["latencies"]]
        sent_log = [x for r in results for x in r["sent_log"]]
        alert_lat = asyncio.run(alert_latencies(database_url, sent_log))
        floor_rate = None
        if args.mode == "single":
            floor_procs = [
                ctx.Process(
                    target=floor_main,
                    args=((base, min(10.0, args.duration), args.concurrency), out),
                )
                for _ in range(args.clients)
            ]
            for proc in floor_procs:
                proc.start()
            floors = [out.get(timeout=60.0) for _ in floor_procs]
            for proc in floor_procs:
                proc.join()
            floor_rate = sum(f["ok"] for f in floors) / max(f["wall_s"] for f in floors)
        # Several rounds, the median reported: after a heavy run PostgreSQL's own upkeep
        # (autovacuum of the fresh rows, a checkpoint) can slow one short round or spare it.
        copy_rates = [
            asyncio.run(bare_copy_rate(database_url, args.copy_rows))
            for _ in range(args.copy_rounds)
        ]
        copy_rate = statistics.median(copy_rates)

    fixes_per_s = accepted / wall
    client_cpu = sum(r["cpu_s"] for r in results)
    requests = sum(r["requests"] for r in results)
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
        "bare_copy_rounds_rows_per_s": [round(r) for r in copy_rates],
        "pipeline_to_copy_ratio": round(fixes_per_s / copy_rate, 3),
        "http_floor_requests_per_s": None if floor_rate is None else round(floor_rate),
        "requests_to_http_floor_ratio": (
            None if floor_rate is None else round(len(latencies) / wall / floor_rate, 3)
        ),
        "client_cpu_us_per_request": round(client_cpu / max(requests, 1) * 1e6, 1),
        "client_cpu_cores": round(client_cpu / wall, 2),
        "reconnects": sum(r["reconnects"] for r in results),
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
        f"pipeline/COPY = {report['pipeline_to_copy_ratio']}   (median of rounds "
        + ", ".join(f"{r:,}" for r in report["bare_copy_rounds_rows_per_s"])
        + ")"
    )
    if floor_rate is not None:
        print(
            f"  HTTP floor         {report['http_floor_requests_per_s']:>10,} requests/s of "
            f"GET /healthz   ingest/floor = {report['requests_to_http_floor_ratio']}"
        )
    print(
        f"  client CPU         {report['client_cpu_us_per_request']} µs/request   "
        f"({report['client_cpu_cores']} of a core across {args.clients} process(es))"
    )
    print(
        f"  errors {report['errors']}, 503s {report['overload_503']}, "
        f"rejected {report['rejected']}, duplicates {report['duplicates']}, "
        f"reconnects {report['reconnects']}"
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
