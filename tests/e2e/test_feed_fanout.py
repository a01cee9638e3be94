"""The live feed reaches officers whichever process raised the alert."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer
from tests.e2e.helpers import INSIDE, OUTSIDE, make_world, recent, track
from tests.e2e.procs import ServiceProcess, free_port

pytestmark = pytest.mark.e2e

SUBJECTS = 4


async def read_events(resp: aiohttp.ClientResponse, want: int, into: list[dict[str, str]]) -> None:
    event: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "id" in event:
                into.append(event)
                if sum(e.get("event") == "opened" for e in into) >= want:
                    return
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            event[key] = value


async def test_alerts_raised_by_any_worker_reach_every_stream(
    client: TestClient[Any, Any],
    officers: Officers,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    # The county and subjects are made in-process; a two-worker server then serves them.
    worlds = [await make_world(client, officers, level="strict") for _ in range(SUBJECTS)]

    def process(name: str) -> ServiceProcess:
        return ServiceProcess(
            free_port(),
            {
                "CM_DATABASE_URL": database_url,
                "CM_REDIS_URL": redis_url,
                "CM_REDIS_PREFIX": f"{redis_prefix}fanout:",
                "CM_RUN_SCHEDULER": "false",
                "CM_DATA_DIR": str(tmp_path / name),
                "CM_LOG_LEVEL": "WARNING",
            },
            tmp_path / f"{name}.log",
        )

    # Two separate processes on one database and Redis: the officer's stream is held by
    # one, the phones talk to the other, so every event crosses processes.
    feed_side, phone_side = process("feed"), process("phones")
    with feed_side, phone_side:
        feed_side.start()
        phone_side.start()
        events: list[dict[str, str]] = []
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(feed_side.url, timeout=timeout) as feed:
            # One stream, held on one worker, for an admin who sees every county.
            resp = await feed.get("/api/v1/alerts/stream", headers=bearer(worlds[0].admin_token))
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            reader = asyncio.create_task(read_events(resp, SUBJECTS, events))
            try:
                points = [INSIDE] * 2 + [OUTSIDE] * 4
                for world in worlds:
                    async with aiohttp.ClientSession(phone_side.url, timeout=timeout) as phone:
                        resp_fix = await phone.post(
                            "/api/v1/fixes",
                            json={"fixes": track(recent(30), points)},
                            headers=bearer(world.device_token),
                        )
                        assert resp_fix.status == 200, await resp_fix.text()
                await asyncio.wait_for(reader, 20)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                resp.close()
        opened = [e for e in events if e.get("event") == "opened"]
        subjects = {world.subject_id for world in worlds}
        assert len(opened) == SUBJECTS
        assert {int(e["data"].split('"subject_id":')[1].split(",")[0]) for e in opened} == subjects
