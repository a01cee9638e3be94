"""Faults: the server killed mid-load, Redis stopped mid-run, a full commit queue.

The contract: a 200 means every accepted fix is durably stored; a crash, a restart or a
Redis outage loses no acknowledged fix and doubles no alert; without Redis, ingestion and
evaluation carry on from PostgreSQL and the hot state is rebuilt when Redis returns; a full
commit queue answers 503 with Retry-After instead of queueing without bound.

The servers stopped and restarted here are private ones (``tests.e2e.procs``): the service
as a subprocess on the per-run database, and a Redis of its own. The machine's shared
PostgreSQL and Redis are never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.adapters.hot_state import HotState
from correction_monitor.service.jobs import HotStateWatch
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import COMMITTER, HOT_STATE, POOL
from tests.conftest import FrontTestServer, Officers, bearer
from tests.e2e.fault_track import (
    BATCH,
    IN,
    STEP_S,
    alert_summary,
    batches_of,
    expected_episodes,
    pattern_points,
)
from tests.e2e.helpers import World, make_world, recent, track
from tests.e2e.procs import RedisProcess, ServiceProcess, free_port

pytestmark = pytest.mark.e2e


async def stored_fixes(database_url: str, subject_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per subject: (rows in ``fixes``, distinct (device, ts, client key) among them)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT subject_id, count(*) AS n,"
            " count(DISTINCT (device_id, ts, client_key)) AS d"
            " FROM fixes WHERE subject_id = ANY($1::int[]) GROUP BY subject_id",
            subject_ids,
        )
    finally:
        await conn.close()
    found = {r["subject_id"]: (r["n"], r["d"]) for r in rows}
    return {sid: found.get(sid, (0, 0)) for sid in subject_ids}


async def alert_events(database_url: str, subject_id: int) -> list[tuple[str, str, Counter[str]]]:
    """Per alert of the subject: (type, started_at, how many change events of each kind)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT a.type, a.started_at, substr(e.name, 7) AS kind FROM alerts a"
            " JOIN events e ON e.alert_id = a.id WHERE a.subject_id = $1",
            subject_id,
        )
    finally:
        await conn.close()
    kinds: dict[tuple[str, str], Counter[str]] = {}
    for r in rows:
        kinds.setdefault((r["type"], r["started_at"].isoformat()), Counter())[r["kind"]] += 1
    return sorted((t, s, c) for (t, s), c in kinds.items())


# ----------------------------------------------------------------- 1. restart in the middle


@dataclass
class Phone:
    """One subject's phone: sends its batches in order, retrying what got no answer."""

    world: World
    batches: list[list[dict[str, Any]]]
    accepted: int = 0
    duplicates: int = 0
    unanswered: int = 0  # sends that got no HTTP answer (connection reset or refused)
    retried: set[int] = field(default_factory=set)
    # Batches stored before the crash whose answer was lost: their retry is all duplicates.
    stored_unacked: int = 0
    stored_fresh_on_retry: int = 0
    resent_acked: int = 0


async def post_batch(
    http: aiohttp.ClientSession, phone: Phone, batch: list[dict[str, Any]]
) -> dict[str, Any]:
    async with http.post(
        "/api/v1/fixes",
        data=orjson.dumps({"fixes": batch}),
        headers=bearer(phone.world.device_token) | {"Content-Type": "application/json"},
    ) as resp:
        body = await resp.read()
        assert resp.status == 200, body
        result: dict[str, Any] = orjson.loads(body)
        return result


async def drive_phone(
    http: aiohttp.ClientSession, phone: Phone, on_ack: asyncio.Event, acks: Counter[str]
) -> None:
    """Send every batch until it is answered 200. After a send without an answer the phone
    also re-sends the batch before it, as a phone does that lost its record of that answer."""
    number = 0
    resend: int | None = None
    while number < len(phone.batches):
        current = resend if resend is not None else number
        try:
            result = await post_batch(http, phone, phone.batches[current])
        except (aiohttp.ClientError, TimeoutError):
            phone.unanswered += 1
            phone.retried.add(current)
            if resend is None and current > 0:
                resend = current - 1
            await asyncio.sleep(0.05)
            continue
        if current != number:
            assert result == {"accepted": 0, "duplicates": BATCH, "rejected": []}, result
            phone.resent_acked += 1
            resend = None
            continue
        assert result["rejected"] == [], result
        if current in phone.retried:
            # A group commits whole or not at all, so a retried batch is either all new
            # or all already stored, never a mix.
            assert (result["accepted"], result["duplicates"]) in ((BATCH, 0), (0, BATCH)), result
            if result["accepted"] == 0:
                phone.stored_unacked += 1
            else:
                phone.stored_fresh_on_retry += 1
        phone.accepted += result["accepted"]
        phone.duplicates += result["duplicates"]
        number += 1
        acks["acked"] += 1
        on_ack.set()


@pytest.fixture
def service_env(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> dict[str, str]:
    return {
        "CM_DATABASE_URL": database_url,
        "CM_REDIS_URL": redis_url,
        # Under the run's prefix, so the session fixture deletes these keys afterwards.
        "CM_REDIS_PREFIX": f"{redis_prefix}faults:{tmp_path.name}:",
        "CM_RUN_SCHEDULER": "false",
        "CM_DATA_DIR": str(tmp_path / "cm-data"),
        "CM_LOG_LEVEL": "WARNING",
    }


async def test_kill_and_restart_mid_load_loses_no_acked_fix_and_doubles_no_alert(
    client: TestClient[Any, Any],
    officers: Officers,
    database_url: str,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    start = recent(minutes=240)
    fixes = track(start, pattern_points(), step_s=STEP_S)
    expected = expected_episodes(fixes)
    assert len(expected) == 2

    # The control subject gets the same track from the in-process app, with no crash.
    control = await make_world(client, officers)
    for batch in batches_of(fixes):
        resp = await client.post(
            "/api/v1/fixes", json={"fixes": batch}, headers=bearer(control.device_token)
        )
        assert resp.status == 200, await resp.text()
    control_alerts = await alert_summary(client, control)
    assert control_alerts == expected
    control_events = [(t, c) for t, _, c in await alert_events(database_url, control.subject_id)]

    phones = [Phone(await make_world(client, officers), batches_of(fixes)) for _ in range(8)]
    total_batches = sum(len(p.batches) for p in phones)
    kill_after = total_batches * 2 // 5

    service = ServiceProcess(free_port(), service_env, tmp_path / "serve.log", workers=2)
    with service:
        await asyncio.to_thread(service.start)
        acks: Counter[str] = Counter()
        figures: dict[str, Any] = {}
        on_ack = asyncio.Event()

        async def crash_and_restart() -> None:
            while acks["acked"] < kill_after:
                await on_ack.wait()
                on_ack.clear()
            service.kill()
            figures["acked_before_kill"] = acks["acked"]
            figures["restart_s"] = await asyncio.to_thread(service.start)
            figures["acked_at_restart"] = acks["acked"]

        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(service.url, timeout=timeout) as http:
            try:
                await asyncio.gather(
                    crash_and_restart(), *(drive_phone(http, p, on_ack, acks) for p in phones)
                )
                # Phones that lost their records re-send batches answered long ago.
                for phone in phones:
                    for number in range(0, len(phone.batches), 4):
                        result = await post_batch(http, phone, phone.batches[number])
                        assert result == {"accepted": 0, "duplicates": BATCH, "rejected": []}
                        phone.resent_acked += 1
                after = {p.world.subject_id: await alert_summary(http, p.world) for p in phones}
            except BaseException:
                # Shown by pytest with the failure: what the service said.
                print(service.log_tail(80))
                raise

    assert figures["acked_before_kill"] >= kill_after
    assert figures["acked_at_restart"] < total_batches, "the kill came after the load"
    assert sum(p.unanswered for p in phones) > 0, "no request was cut off by the kill"

    counts = await stored_fixes(database_url, [p.world.subject_id for p in phones])
    for phone in phones:
        sid = phone.world.subject_id
        assert counts[sid] == (len(fixes), len(fixes)), (sid, counts[sid])
        # Every fix was accepted exactly once, in an answer or before an answer was lost.
        assert phone.accepted + BATCH * phone.stored_unacked == len(fixes)
        assert after[sid] == control_alerts, sid
        events = [(t, c) for t, _, c in await alert_events(database_url, sid)]
        assert events == control_events, sid
    print(
        f"\nrestart mid-load: {figures} unanswered sends={sum(p.unanswered for p in phones)}"
        f" stored but unacknowledged={sum(p.stored_unacked for p in phones)}"
        f" stored on retry={sum(p.stored_fresh_on_retry for p in phones)}"
        f" acknowledged batches re-sent={sum(p.resent_acked for p in phones)}"
    )


# --------------------------------------------------------------------------- shared helpers


@contextlib.asynccontextmanager
async def app_client(settings: Settings, **overrides: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """An in-process app on the run's database with some settings changed."""
    app = init_app(settings.model_copy(update=overrides))
    async with TestClient(FrontTestServer(app)) as http:
        yield http


async def send_batch(
    http: TestClient[Any, Any], world: World, batch: list[dict[str, Any]]
) -> tuple[int, dict[str, str], Any]:
    resp = await http.post(
        "/api/v1/fixes", json={"fixes": batch}, headers=bearer(world.device_token)
    )
    return resp.status, dict(resp.headers), await resp.json()


# -------------------------------------------------------------------- 2. Redis stopped mid-run


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path / "redis", free_port()) as server:
        server.start()
        yield server


def latest_positions(redis_server: RedisProcess, prefix: str) -> dict[int, dict[str, Any]]:
    with redis_server.client() as r:
        raw = r.hgetall(prefix + "latest")
    return {int(k): orjson.loads(v) for k, v in raw.items()}


async def test_redis_outage_keeps_ingest_and_alerts_and_rebuilds_hot_state(
    client: TestClient[Any, Any],
    officers: Officers,
    settings: Settings,
    database_url: str,
    private_redis: RedisProcess,
) -> None:
    worlds = [await make_world(client, officers) for _ in range(3)]
    prefix = "cm:"
    fixes = track(recent(minutes=240), pattern_points(), step_s=STEP_S)
    batches = batches_of(fixes)
    expected = expected_episodes(fixes)

    async def shows_newest(fix: dict[str, Any]) -> None:
        """Wait (5 s at most) until Redis holds ``fix`` as every subject's newest position;
        positions are published after the answer, off the commit path."""
        when = datetime.fromisoformat(fix["ts"]).timestamp()
        wanted = {w.subject_id: (when, fix["lon"], fix["lat"]) for w in worlds}
        deadline = asyncio.get_running_loop().time() + 5.0
        while True:
            # A rebuild copies every subject of the database, other tests' ones included.
            positions = latest_positions(private_redis, prefix)
            found = {
                sid: (p["ts"], p["lon"], p["lat"]) for sid, p in positions.items() if sid in wanted
            }
            if found == wanted or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert found == wanted

    async with app_client(
        settings, redis_url=private_redis.url, redis_prefix=prefix, run_scheduler=False
    ) as http:
        # The scheduler is off so that the watch ticks exactly when the test says.
        watch = HotStateWatch(http.app[POOL], http.app[HOT_STATE])
        await watch.tick()
        for batch in batches[:2]:
            for world in worlds:
                status, _, body = await send_batch(http, world, batch)
                assert status == 200, body
        await shows_newest(batches[1][-1])

        private_redis.stop()
        # The first excursion happens while Redis is down: fixes stored, alert raised.
        loop = asyncio.get_running_loop()
        began = loop.time()
        for batch in batches[2:6]:
            for world in worlds:
                status, _, body = await send_batch(http, world, batch)
                assert status == 200, body
                assert body["accepted"] == BATCH
        assert loop.time() - began < 10.0, "ingest stalled while Redis was down"
        for world in worlds:
            assert await alert_summary(http, world) == expected[:1]
        counts = await stored_fixes(database_url, [w.subject_id for w in worlds])
        assert set(counts.values()) == {(6 * BATCH, 6 * BATCH)}

        resp = await http.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["checks"] == {"database": "ok", "redis": "down"}
        resp = await http.get("/healthz")
        assert resp.status == 200

        # Redis comes back empty on the same port. A readiness probe reaches it before the
        # watch does; the watch must still see that the copies were lost.
        private_redis.start()
        resp = await http.get("/readyz")
        assert resp.status == 200, await resp.text()
        assert latest_positions(private_redis, prefix) == {}
        await watch.tick()
        await shows_newest(batches[5][-1])

        # A restart between two ticks, with no traffic to notice it, is caught as well.
        private_redis.stop()
        private_redis.start()
        await watch.tick()
        await shows_newest(batches[5][-1])

        for batch in batches[6:]:
            for world in worlds:
                status, _, body = await send_batch(http, world, batch)
                assert status == 200, body
        await shows_newest(batches[-1][-1])
        for world in worlds:
            assert await alert_summary(http, world) == expected


# ------------------------------------------------------------------------- 3. backpressure


async def test_full_commit_queue_answers_503_and_stores_nothing_of_refused_batches(
    client: TestClient[Any, Any],
    officers: Officers,
    settings: Settings,
    database_url: str,
) -> None:
    limit = 50
    size = 40
    worlds = [await make_world(client, officers) for _ in range(4)]
    start = recent(minutes=300)
    # Five batches of 40 distinct fixes per subject, all inside the area.
    fixes = track(start, [IN] * 5 * size, step_s=STEP_S)
    plan = [(w, fixes[i : i + size]) for w in worlds for i in range(0, len(fixes), size)]
    random.Random(7).shuffle(plan)

    async with app_client(settings, ingest_queue_limit=limit) as http:
        committer = http.app[COMMITTER]
        peak = 0
        done = asyncio.Event()

        async def watch_queue() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, committer.queued_fixes)
                await asyncio.sleep(0)

        sampler = asyncio.create_task(watch_queue())
        try:
            answers = await asyncio.gather(*(send_batch(http, w, b) for w, b in plan))
        finally:
            done.set()
            await sampler

        refused = []
        stored: Counter[int] = Counter()
        for (world, batch), (status, headers, body) in zip(plan, answers, strict=True):
            if status == 503:
                assert int(headers["Retry-After"]) >= 1
                assert body["error"]["code"] == "overloaded"
                assert body["error"]["message"]
                refused.append((world, batch))
            else:
                assert status == 200, body
                assert body == {"accepted": size, "duplicates": 0, "rejected": []}
                stored[world.subject_id] += size
        assert 0 < len(refused) < len(plan), [a[0] for a in answers]
        assert peak <= limit
        counts = await stored_fixes(database_url, [w.subject_id for w in worlds])
        assert {sid: n for sid, (n, _) in counts.items()} == {
            w.subject_id: stored[w.subject_id] for w in worlds
        }

        # Re-sent one at a time, as phones honouring Retry-After do, every refused batch
        # is stored in full: nothing of it was kept when it was refused.
        for world, batch in refused:
            status, _, body = await send_batch(http, world, batch)
            assert status == 200, body
            assert body == {"accepted": size, "duplicates": 0, "rejected": []}
        counts = await stored_fixes(database_url, [w.subject_id for w in worlds])
        assert set(counts.values()) == {(len(fixes), len(fixes))}
        assert committer.queued_fixes == 0
        print(f"\nbackpressure: {len(refused)} of {len(plan)} batches refused, peak queue {peak}")


async def test_a_batch_larger_than_the_queue_limit_is_admitted_when_the_queue_is_empty(
    client: TestClient[Any, Any], officers: Officers, settings: Settings
) -> None:
    # Answering 503 to a request that no amount of waiting can admit would make a phone
    # retry it forever.
    world = await make_world(client, officers)
    fixes = track(recent(minutes=300), [IN] * 60, step_s=STEP_S)
    async with app_client(settings, ingest_queue_limit=50) as http:
        status, _, body = await send_batch(http, world, fixes)
    assert status == 200, body
    assert body["accepted"] == 60


class CancellationSwallowingHotState(HotState):
    """Publishes like ``HotState``, then lingers until cancelled and returns normally.

    That is what Python 3.11's ``asyncio.wait_for`` (used inside redis-py and asyncpg) does
    when a cancellation lands just as the awaited operation completes: the task carries on
    as if nothing happened. Here the window is widened from microseconds to the whole wait.
    """

    async def publish_commit(
        self, positions: Mapping[int, dict[str, Any]], events: list[dict[str, Any]]
    ) -> bool:
        published = await super().publish_commit(positions, events)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60.0)
        return published


async def test_shutdown_stops_the_commit_loops_even_when_a_cancellation_is_swallowed(
    client: TestClient[Any, Any], officers: Officers, settings: Settings
) -> None:
    world = await make_world(client, officers)
    fixes = track(recent(minutes=300), [IN] * 5, step_s=STEP_S)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(app_client(settings))
        committer = http.app[COMMITTER]
        real = committer.hot_state
        committer.hot_state = CancellationSwallowingHotState(real.client, real.prefix)
        status, _, body = await send_batch(http, world, fixes)
        assert status == 200, body
        # The answer leaves before the positions are published: the app now stops while
        # a commit loop is inside the publish.
        stopping = asyncio.create_task(stack.aclose())
        done, _ = await asyncio.wait({stopping}, timeout=10)
        for _ in range(20):
            if stopping.done():
                break
            # Unstick this app's commit tasks (the only ones being cancelled), so that a
            # failure is reported rather than the whole run hanging.
            for task in asyncio.all_tasks():
                name = getattr(task.get_coro(), "__qualname__", "")
                if name.startswith("GroupCommitter.") and task.cancelling():
                    task.cancel()
            await asyncio.wait({stopping}, timeout=0.5)
        assert done, "the app did not stop: a commit task outlived its cancellation"
        await stopping
