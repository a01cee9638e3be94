"""Three service processes change alerts at once; one subscriber, dropped again and again and
reconnecting with ``Last-Event-ID`` (to the same process or another one, also after the
process it was on is killed), receives every alert change of its county exactly once, in
event-log order.

Three real ``correction-monitor serve`` processes (A, B, C) share the run's database and
Redis key space and run their schedulers (so the event consumers of every process release
and self-resolve alerts too). The county is built through A. Phones report to B and C,
stepping out of the activity area and into an exclusion zone and back, cycle after cycle;
an officer acknowledges and resolves the alerts through A, B and C in turn. The subscriber,
a county administrator, follows the feed on A and is cut off by a plan of drops: the
response closed, the TCP connection aborted, the process it is connected to killed (A, later
C; each is restarted on its port). At the end the events it received are compared with the
event log: the county's alert events, by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from correction_monitor.service.bootstrap import create_officer
from correction_monitor.service.self_resolution import CONSUMER as RELEASE_CONSUMER
from tests.conftest import bearer, unique
from tests.e2e.helpers import COUNTY_SQUARE, NEAR_INSIDE, NEAR_OUTSIDE, recent, track
from tests.e2e.procs import ServiceProcess, free_port

pytestmark = pytest.mark.e2e

STREAM = "/api/v1/alerts/stream"
PASSWORD = "correct-horse-9"
SUBJECTS = 6
CYCLES = 4
# A forbidden place inside the county, about 1.2 km from NEAR_INSIDE: fixes 60 s apart
# move at 20 m/s at most, never a speed-test suspect.
ZONE = (116.39, 39.91)
ZONE_RADIUS_M = 200
PHASE = 4  # fixes a phase: enough to confirm a breach (strict: 120 s) or a return
CYCLE = [NEAR_OUTSIDE] * PHASE + [NEAR_INSIDE] * PHASE + [ZONE] * PHASE + [NEAR_INSIDE] * PHASE
A, B, C = 0, 1, 2
# How the subscriber's connections end, one after the other: on which process it is
# connected, how the connection is cut, after how many events on that connection. The
# last connection is held to the end.
PLAN: list[tuple[int, str, int]] = [
    (A, "close", 10),
    (A, "abort", 10),
    (A, "kill", 10),
    (B, "close", 10),
    (C, "abort", 10),
    (C, "kill", 10),
    (A, "close", 10),
    (B, "hold", 0),
]
# What a call to a process that is down, or killed while answering, raises.
GONE = (aiohttp.ClientError, TimeoutError)

# The feed's events (adapters/alerts.py EVENTS_AFTER): the alert events of the scope's org
# units, by id.
COUNTY_EVENTS = """
SELECT e.id, substr(e.name, 7) AS kind, e.alert_id, a.subject_id
FROM events e JOIN alerts a ON a.id = e.alert_id
WHERE e.name LIKE 'alert.%' AND e.org_unit_id = ANY($1::int[])
ORDER BY e.id
"""
LAST_COUNTY_EVENT = """
SELECT COALESCE(max(id), 0) FROM events
WHERE name LIKE 'alert.%' AND alert_id IS NOT NULL AND org_unit_id = ANY($1::int[])
"""
CURSOR = "SELECT position FROM event_cursors WHERE consumer = $1"


@dataclass(frozen=True)
class Received:
    id: int
    kind: str
    alert_id: int
    process: int


@dataclass
class Cluster:
    """The three processes and the restarts of killed ones under way."""

    procs: list[ServiceProcess]
    restarts: dict[int, asyncio.Task[float]] = field(default_factory=dict)

    def url(self, index: int) -> str:
        return self.procs[index].url

    def live(self, index: int) -> bool:
        restart = self.restarts.get(index)
        return self.procs[index].running and (restart is None or restart.done())

    async def kill_and_restart(self, index: int) -> None:
        await asyncio.to_thread(self.procs[index].kill)
        self.restarts[index] = asyncio.create_task(asyncio.to_thread(self.procs[index].start))

    async def ready(self, index: int) -> None:
        restart = self.restarts.pop(index, None)
        if restart is not None:
            await restart

    async def settle_restarts(self) -> None:
        for index in list(self.restarts):
            await self.ready(index)


async def call(
    http: aiohttp.ClientSession,
    cluster: Cluster,
    first: int,
    method: str,
    path: str,
    token: str,
    body: Any = None,
) -> tuple[int, Any]:
    """One request, to process ``first`` or, while that one is down or was killed while
    answering, to the next live one; every call made here may safely be made twice."""
    for attempt in range(60):
        index = (first + attempt) % 3
        if not cluster.live(index):
            await asyncio.sleep(0.05)
            continue
        try:
            headers = bearer(token) if token else {}
            async with http.request(
                method, cluster.url(index) + path, json=body, headers=headers
            ) as resp:
                return resp.status, await resp.json()
        except GONE:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{method} {path}: no process answered")


async def expect(
    http: aiohttp.ClientSession,
    cluster: Cluster,
    first: int,
    path: str,
    token: str,
    body: Any,
    status: int = 201,
) -> Any:
    got, answer = await call(http, cluster, first, "POST", path, token, body)
    assert got == status, answer
    return answer


@dataclass
class County:
    code: str
    unit_ids: list[int]
    admin: str  # the county administrator's token (subscriber and officer)
    subjects: dict[int, str]  # subject id -> device token


async def build_county(http: aiohttp.ClientSession, cluster: Cluster, database_url: str) -> County:
    """A county, its station, activity area and exclusion zone, ``SUBJECTS`` subjects with
    phones, and a county administrator: everything through process A."""
    code, station = unique("c"), unique("s")
    admin_name = unique("adm")
    await create_officer(
        database_url,
        username=admin_name,
        password=PASSWORD,
        role="admin",
        org_code=code,
        org_name=f"单位 {code}",
    )
    login = {"username": admin_name, "password": PASSWORD}
    token = await expect(http, cluster, A, "/api/v1/auth/token", "", login, status=200)
    admin = token["access_token"]
    await expect(
        http,
        cluster,
        A,
        "/api/v1/org-units",
        admin,
        {"code": station, "name": "城关司法所", "parent_code": code},
    )
    area = await expect(
        http,
        cluster,
        A,
        "/api/v1/geofences",
        admin,
        {"name": "XX县", "kind": "activity_area", "org_unit": code, "geometry": COUNTY_SQUARE},
    )
    zone = await expect(
        http,
        cluster,
        A,
        "/api/v1/geofences",
        admin,
        {
            "name": "某小学",
            "kind": "exclusion",
            "org_unit": code,
            "geometry": {"type": "Point", "coordinates": list(ZONE)},
            "radius_m": ZONE_RADIUS_M,
        },
    )
    subjects = {}
    for n in range(SUBJECTS):
        subject = await expect(
            http,
            cluster,
            A,
            "/api/v1/subjects",
            admin,
            {
                "name": f"张{n}",
                "org_unit": station,
                "supervision_level": "strict",
                "category": "probation",
                "term_start": "2026-01-01",
                "term_end": "2027-12-31",
                "activity_area_id": area["id"],
                "exclusion_zone_ids": [zone["id"]],
            },
        )
        device = await expect(
            http, cluster, A, f"/api/v1/subjects/{subject['id']}/devices", admin, {}
        )
        subjects[subject["id"]] = device["token"]
    county_admin = unique("cad")
    await expect(
        http,
        cluster,
        A,
        "/api/v1/officers",
        admin,
        {"username": county_admin, "password": PASSWORD, "role": "county_admin", "org_unit": code},
    )
    token = await expect(
        http,
        cluster,
        A,
        "/api/v1/auth/token",
        "",
        {"username": county_admin, "password": PASSWORD},
        status=200,
    )
    conn = await asyncpg.connect(database_url)
    try:
        units = await conn.fetch("SELECT id FROM org_units WHERE code = ANY($1)", [code, station])
    finally:
        await conn.close()
    return County(code, [r["id"] for r in units], token["access_token"], subjects)


async def drive_phone(
    http: aiohttp.ClientSession,
    cluster: Cluster,
    first: int,
    device_token: str,
    cuts_done: asyncio.Event,
) -> None:
    """Out of the area and back, into the zone and back, ``CYCLES`` times, a phase a batch,
    to process ``first`` (B or C; the other while it is down). The last cycle waits until
    the subscriber has been cut off as planned, so every cut falls among alert changes."""
    fixes = track(recent(75), [NEAR_INSIDE] * 2 + CYCLE * CYCLES)
    batches = [fixes[:2]] + [fixes[i : i + PHASE] for i in range(2, len(fixes), PHASE)]
    last_cycle = len(batches) - len(CYCLE) // PHASE
    for number, batch in enumerate(batches):
        if number == last_cycle:
            await asyncio.wait_for(cuts_done.wait(), 20)
        for attempt in range(60):
            index = first if attempt % 2 == 0 else B + C - first
            if not cluster.live(index):
                await asyncio.sleep(0.05)
                continue
            try:
                async with http.post(
                    cluster.url(index) + "/api/v1/fixes",
                    json={"fixes": batch},
                    headers=bearer(device_token),
                ) as resp:
                    answer = await resp.json()
                    assert resp.status == 200, answer
            except GONE:
                await asyncio.sleep(0.05)
                continue
            # A batch stored by a process killed before it answered comes back as duplicates.
            assert answer["accepted"] + answer["duplicates"] == len(batch), answer
            assert answer["rejected"] == [], answer
            break
        else:
            raise AssertionError("no process took the phone's fixes")
        await asyncio.sleep(0.25)


async def work_alerts(
    http: aiohttp.ClientSession, cluster: Cluster, county: County, phones_done: asyncio.Event
) -> int:
    """An officer acknowledging open alerts and resolving ended ones, each call through the
    next of A, B and C, while the phones report; then a last pass resolving all of them.
    Returns how many calls changed or refused a change."""
    turn = 0
    calls = 0
    dispositions = ["confirmed", "justified", "false_alarm"]

    async def alerts() -> list[dict[str, Any]]:
        nonlocal turn
        turn += 1
        status, body = await call(http, cluster, turn % 3, "GET", "/api/v1/alerts", county.admin)
        assert status == 200, body
        listed: list[dict[str, Any]] = body["alerts"]
        return listed

    async def act(alert: dict[str, Any], action: str) -> None:
        nonlocal turn, calls
        turn += 1
        body = {"disposition": dispositions[alert["id"] % 3]} if action == "resolve" else None
        path = f"/api/v1/alerts/{alert['id']}/{action}"
        status, answer = await call(http, cluster, turn % 3, "POST", path, county.admin, body)
        # 409: resolved meanwhile (or by this very call, answered by a killed process).
        assert status in (200, 409), answer
        calls += 1

    while True:
        last_pass = phones_done.is_set()
        for alert in await alerts():
            if alert["status"] == "open" and alert["ended_at"] is None:
                await act(alert, "acknowledge")
            elif alert["status"] != "resolved" and (last_pass or alert["ended_at"] is not None):
                await act(alert, "resolve")
        if last_pass:
            return calls
        await asyncio.sleep(0.2)


def at_least(count: int) -> Callable[[int], bool]:
    return lambda received: received >= count


@dataclass
class Subscriber:
    """The one SSE client: its events, the last id, and what happened to its connections."""

    token: str
    cluster: Cluster
    received: list[Received] = field(default_factory=list)
    last_id: str | None = None
    connections: list[tuple[int, str | None]] = field(default_factory=list)
    cuts: list[str] = field(default_factory=list)
    cut_at: list[float] = field(default_factory=list)  # time.monotonic() of each cut
    target: int | None = None  # the last event expected; set once the log has settled

    def reached(self) -> bool:
        return (
            self.target is not None
            and self.last_id is not None
            and (int(self.last_id) >= self.target)
        )

    async def connect(self, http: aiohttp.ClientSession, index: int) -> aiohttp.ClientResponse:
        headers = bearer(self.token)
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        # No total time limit: a stream is open as long as the plan keeps it.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        resp = await http.get(self.cluster.url(index) + STREAM, headers=headers, timeout=timeout)
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        self.connections.append((index, self.last_id))
        return resp

    async def pump(self, resp: aiohttp.ClientResponse, index: int) -> None:
        """Read the connection's events until it ends. An event counts once its blank line
        has arrived; one cut short by a drop is not received (its id is not the last)."""
        fields: dict[str, str] = {}
        with contextlib.suppress(*GONE):
            async for line in resp.content:
                text = line.decode().rstrip("\r\n")
                if text.startswith(":"):
                    continue
                if text:
                    name, _, value = text.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if "data" in fields:
                    alert_id = json.loads(fields["data"])["id"]
                    event = Received(int(fields["id"]), fields["event"], alert_id, index)
                    self.received.append(event)
                    self.last_id = fields["id"]
                fields = {}

    async def read(
        self, resp: aiohttp.ClientResponse, index: int, until: Callable[[int], bool]
    ) -> bool:
        """Follow the connection until ``until(events received on it)`` holds (True, the
        connection still open) or it ends (False)."""
        before = len(self.received)
        pump = asyncio.create_task(self.pump(resp, index))
        try:
            while not until(len(self.received) - before):
                done, _ = await asyncio.wait({pump}, timeout=0.05)
                if done:
                    pump.result()
                    return False
            return True
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def follow(
        self, http: aiohttp.ClientSession, opened: asyncio.Event, cuts_done: asyncio.Event
    ) -> None:
        for step, (index, cut, after) in enumerate(PLAN):
            await self.cluster.ready(index)
            resp = await self.connect(http, index)
            if step == 0:
                opened.set()
            try:
                if cut == "hold":
                    cuts_done.set()
                    assert await self.read(resp, index, lambda _: self.reached())
                    return
                still_open = await self.read(resp, index, at_least(after))
                assert still_open, f"the stream on process {'ABC'[index]} ended by itself"
                if cut == "close":
                    resp.close()
                elif cut == "abort":
                    connection = resp.connection
                    assert connection is not None
                    assert connection.transport is not None
                    connection.transport.abort()
                else:
                    await self.cluster.kill_and_restart(index)
                    # The killed process's stream ends; what was still in flight is read.
                    ended = self.read(resp, index, lambda _: False)
                    assert not await asyncio.wait_for(ended, 10)
                self.cuts.append(cut)
                self.cut_at.append(time.monotonic())
            finally:
                resp.close()


async def settled_target(database_url: str, unit_ids: list[int], timeout_s: float = 20.0) -> int:
    """The county's last alert event once the log has settled: the release consumer has
    handled every event up to it and no new one came for a second."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            newest = await conn.fetchval(LAST_COUNTY_EVENT, unit_ids)
            position = await conn.fetchval(CURSOR, RELEASE_CONSUMER)
            if newest != last:
                last, since = newest, time.monotonic()
            elif position is not None and position >= newest and time.monotonic() - since >= 1.0:
                return int(newest)
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError("the county's alert events did not settle")


async def with_logs(cluster: Cluster, work: Awaitable[None]) -> None:
    try:
        await work
    except BaseException:
        # Shown by pytest with the failure: what the services said.
        for name, proc in zip("ABC", cluster.procs, strict=True):
            print(f"--- process {name} ---\n{proc.log_tail(40)}")
        raise


async def test_three_processes_one_reconnecting_subscriber_gets_every_change_once(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    began = time.monotonic()

    def process(name: str) -> ServiceProcess:
        return ServiceProcess(
            free_port(),
            {
                "CM_DATABASE_URL": database_url,
                "CM_REDIS_URL": redis_url,
                # One key space for the three, so each hears the others' wake-ups; under
                # the run's prefix, so the session fixture deletes the keys afterwards.
                "CM_REDIS_PREFIX": f"{redis_prefix}three:{tmp_path.name}:",
                # Every process runs the event consumers (release, self-resolution) too.
                "CM_RUN_SCHEDULER": "true",
                "CM_DATA_DIR": str(tmp_path / name),
                "CM_LOG_LEVEL": "WARNING",
            },
            tmp_path / f"{name}.log",
        )

    procs = [process(name) for name in "ABC"]
    cluster = Cluster(procs)
    with contextlib.ExitStack() as stack:
        for proc in procs:
            stack.enter_context(proc)
        await asyncio.gather(*(asyncio.to_thread(proc.start) for proc in procs))
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def scenario() -> None:
                county = await build_county(http, cluster, database_url)
                subscriber = Subscriber(county.admin, cluster)
                opened, cuts_done, phones_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
                follower = asyncio.create_task(subscriber.follow(http, opened, cuts_done))
                try:
                    await asyncio.wait_for(opened.wait(), 10)

                    phones_done_at: list[float] = []

                    async def phones() -> None:
                        await asyncio.gather(
                            *(
                                drive_phone(
                                    http, cluster, B if n % 2 == 0 else C, device, cuts_done
                                )
                                for n, device in enumerate(county.subjects.values())
                            )
                        )
                        phones_done.set()
                        phones_done_at.append(time.monotonic())

                    _, calls = await asyncio.gather(
                        phones(), work_alerts(http, cluster, county, phones_done)
                    )
                    subscriber.target = await settled_target(database_url, county.unit_ids)
                    await asyncio.wait_for(follower, 20)
                finally:
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follower
                    await cluster.settle_restarts()

                conn = await asyncpg.connect(database_url)
                try:
                    truth = await conn.fetch(COUNTY_EVENTS, county.unit_ids)
                finally:
                    await conn.close()

                # The subscriber was cut as planned, twice by killing its process.
                assert subscriber.cuts == [cut for _, cut, _ in PLAN[:-1]]
                assert [i for i, _ in subscriber.connections] == [i for i, _, _ in PLAN]
                # ... while the phones were still reporting.
                assert max(subscriber.cut_at) < phones_done_at[0]
                # Each connection delivered something new before it was cut: every reconnect
                # resumed with a later Last-Event-ID than the one before.
                resumed = [int(last) for _, last in subscriber.connections[1:] if last]
                assert len(resumed) == len(PLAN) - 1
                assert resumed == sorted(set(resumed))

                # Every change exactly once, in event-log order: no gap, no duplicate.
                ids = [e.id for e in subscriber.received]
                doubled = sorted(i for i, n in Counter(ids).items() if n > 1)
                missing = sorted({r["id"] for r in truth} - set(ids))
                foreign = sorted(set(ids) - {r["id"] for r in truth})
                assert (doubled, missing, foreign) == ([], [], []), (
                    f"doubled {doubled}, missing {missing}, not the county's {foreign}; "
                    f"connections (process, Last-Event-ID): {subscriber.connections}"
                )
                got = [(e.id, e.kind, e.alert_id) for e in subscriber.received]
                want = [(r["id"], r["kind"], r["alert_id"]) for r in truth]
                assert got == want
                assert {r["subject_id"] for r in truth} == set(county.subjects)
                # What makes it a test of interleaving: every kind of change, delivered by
                # every process in turn.
                kinds = {kind for _, kind, _ in want}
                assert {"opened", "ended", "released", "acknowledged", "resolved"} <= kinds
                assert calls > 0
                assert {e.process for e in subscriber.received} == {A, B, C}
                print(
                    f"{len(want)} events, {len(subscriber.connections)} connections, "
                    f"kinds {sorted(kinds)}, {time.monotonic() - began:.1f} s"
                )

            await with_logs(cluster, scenario())
