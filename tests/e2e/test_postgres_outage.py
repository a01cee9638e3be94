"""Faults: PostgreSQL stopped mid-run and started again.

The contract: while the database is away, ingestion answers 503 ``storage_unavailable`` with
Retry-After — promptly, never a 200 for fixes it could not store, never a 500, never a hang —
and ``/readyz`` says the database is down. When the database returns, the same process
recovers without a restart: a phone re-sending what was refused gets it stored once, a
re-sent acknowledged batch is counted as duplicates, and the alert spanning the outage is
the one the in-order track gives.

The PostgreSQL stopped here is a private one (``tests.e2e.procs.PostgresProcess``) in a data
dir of its own; the machine's shared PostgreSQL is never stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.migrations import migrate
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import COMMITTER
from tests.conftest import FrontTestServer, Officers, bearer
from tests.e2e.fault_track import (
    BATCH,
    STEP_S,
    alert_summary,
    batches_of,
    expected_episodes,
    pattern_points,
)
from tests.e2e.helpers import make_county, make_world, recent, track
from tests.e2e.procs import PostgresProcess

pytestmark = pytest.mark.e2e

# Batches of the faults track (20 fixes, 30 s apart): the subject leaves the area at fix 133
# (batch 6, confirmed within it) and is back at fix 163 (batch 8). Batches 7 and 8 are sent
# while PostgreSQL is down, so the excursion's end arrives only after the outage.
ACKED_BEFORE = 7
REFUSED = (7, 8)
# Answers during the outage must come at once: a refused connection fails fast, and the
# committer's acquire timeout (10 s) must not be what answers.
PROMPT_S = 5.0


@pytest.fixture
def private_postgres() -> Iterator[PostgresProcess]:
    with PostgresProcess() as server:
        yield server


async def stored_timestamps(database_url: str, subject_id: int) -> list[float]:
    """The subject's stored fix times (seconds since the epoch), one per row, sorted."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT ts FROM fixes WHERE subject_id = $1 ORDER BY ts", subject_id
        )
    finally:
        await conn.close()
    return [r["ts"].timestamp() for r in rows]


def epochs(batch: list[dict[str, Any]]) -> list[float]:
    """The fixes' times (seconds since the epoch), sorted."""
    return sorted(datetime.fromisoformat(f["ts"]).timestamp() for f in batch)


async def post(
    http: TestClient[Any, Any], token: str, batch: list[dict[str, Any]]
) -> tuple[int, dict[str, str], Any, float]:
    """Send a native batch; returns (status, headers, JSON body, seconds to the answer)."""
    began = time.monotonic()
    resp = await http.post("/api/v1/fixes", json={"fixes": batch}, headers=bearer(token))
    body = await resp.json()
    return resp.status, dict(resp.headers), body, time.monotonic() - began


def assert_storage_unavailable(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 503, body
    assert body["error"]["code"] == "storage_unavailable", body
    assert body["error"]["message"]
    assert int(headers["Retry-After"]) >= 1


async def test_postgres_outage_loses_no_acknowledged_fix_and_ingest_recovers(
    private_postgres: PostgresProcess, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    fixes = track(recent(minutes=240), pattern_points(), step_s=STEP_S)
    batches = batches_of(fixes)
    expected = expected_episodes(fixes)
    assert len(expected) == 2

    url = await asyncio.to_thread(private_postgres.start)
    await asyncio.to_thread(migrate, url)
    settings = Settings(
        database_url=url,
        redis_url=redis_url,
        # Under the run's prefix, so the session fixture deletes these keys afterwards.
        redis_prefix=f"{redis_prefix}pg-outage:{tmp_path.name}:",
        data_dir=tmp_path / "cm-data",
        run_scheduler=False,
    )
    # A client timeout turns a hanging request into a failure instead of a stuck run.
    timeout = aiohttp.ClientTimeout(total=20)
    async with TestClient(FrontTestServer(init_app(settings)), timeout=timeout) as http:
        officers = Officers(url, http)
        county = await make_county(officers)
        world = await make_world(http, officers, in_county=county)
        # A phone that has not sent anything yet: its token is in no cache, so the request
        # needs the database before it even reaches the committer.
        cold = await make_world(http, officers, in_county=county)

        accepted = duplicates = 0
        for batch in batches[:ACKED_BEFORE]:
            status, _, body, _ = await post(http, world.device_token, batch)
            assert status == 200, body
            assert body == {"accepted": BATCH, "duplicates": 0, "rejected": []}
            accepted += body["accepted"]
        # The second excursion is confirmed before the outage; its end comes after it.
        kind, started, _ = expected[1]
        assert await alert_summary(http, world) == [expected[0], (kind, started, None)]
        resp = await http.get("/readyz")
        assert resp.status == 200, await resp.text()

        await asyncio.to_thread(private_postgres.stop)
        outage_began = time.monotonic()

        slowest = 0.0
        for number in REFUSED:
            status, headers, body, took = await post(http, world.device_token, batches[number])
            assert_storage_unavailable(status, headers, body)
            slowest = max(slowest, took)
        status, headers, body, took = await post(http, cold.device_token, batches[0])
        assert_storage_unavailable(status, headers, body)
        slowest = max(slowest, took)
        fix = batches[0][0]
        query = {"id": cold.osmand_id, "lat": fix["lat"], "lon": fix["lon"], "timestamp": fix["ts"]}
        resp = await http.get("/osmand/?" + urlencode(query))
        assert_storage_unavailable(resp.status, dict(resp.headers), await resp.json())
        assert slowest < PROMPT_S, f"an answer during the outage took {slowest:.1f} s"

        resp = await http.get("/readyz")
        assert resp.status == 503, await resp.text()
        checks = (await resp.json())["checks"]
        assert checks["database"].startswith("down"), checks
        assert checks["redis"] == "ok", checks
        assert (await http.get("/healthz")).status == 200
        assert http.app[COMMITTER].queued_fixes == 0
        # Officer routes answer "retry later" too, never a 500.
        resp = await http.get(
            "/api/v1/alerts", headers={"Authorization": f"Bearer {world.admin_token}"}
        )
        assert_storage_unavailable(resp.status, dict(resp.headers), await resp.json())

        await asyncio.to_thread(private_postgres.start)
        outage_s = time.monotonic() - outage_began
        assert private_postgres.url == url

        # The first probe after the restart already finds the database: the pool replaces
        # the connections the shutdown closed.
        resp = await http.get("/readyz")
        assert resp.status == 200, await resp.text()

        # The phone re-sends what was refused, in order, then the rest of its track, and
        # once more a batch it had been answered for (it lost that answer).
        for number in (*REFUSED, ACKED_BEFORE - 1, *range(REFUSED[-1] + 1, len(batches))):
            status, _, body, _ = await post(http, world.device_token, batches[number])
            assert status == 200, body
            assert body["rejected"] == [], body
            if number < ACKED_BEFORE:
                assert (body["accepted"], body["duplicates"]) == (0, BATCH), body
            else:
                assert (body["accepted"], body["duplicates"]) == (BATCH, 0), body
            accepted += body["accepted"]
            duplicates += body["duplicates"]
        status, _, body, _ = await post(http, cold.device_token, batches[0])
        assert status == 200, body
        assert body == {"accepted": BATCH, "duplicates": 0, "rejected": []}

        assert accepted == len(fixes)
        assert duplicates == BATCH
        # Every fix once: the acknowledged ones, the refused ones re-sent, none doubled.
        assert await stored_timestamps(url, world.subject_id) == epochs(fixes)
        assert await stored_timestamps(url, cold.subject_id) == epochs(batches[0])
        assert await alert_summary(http, world) == expected

        resp = await http.get("/readyz")
        assert resp.status == 200, await resp.text()
        assert http.app[COMMITTER].queued_fixes == 0
    print(f"\npostgres outage: {outage_s:.1f} s, slowest refusal {slowest * 1000:.0f} ms")
