"""The live feed holds one Redis subscription per process however many streams are open, and
a stream ends when the token that opened it expires or is revoked."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from correction_monitor.adapters import alerts
from correction_monitor.adapters.hot_state import FEED_CHANNEL, client_name
from correction_monitor.service.auth import token_hash
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import FEED_HUB, POOL
from tests.conftest import FrontTestServer, Officers, bearer
from tests.e2e.helpers import (
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    make_county,
    make_world,
    recent,
    send,
    track,
)
from tests.e2e.test_alerts_feed import STREAM, open_stream

pytestmark = pytest.mark.e2e

STREAMS = 1000
# Connections opened at once: well under the listening socket's backlog, so none is dropped
# and retried a second later.
OPENING_AT_ONCE = 100
OUT_AND_BACK = [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 4 + [NEAR_INSIDE] * 4


class RawStream:
    """One alert stream over a bare socket: far cheaper than a client session per stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, token: str) -> RawStream:
        reader, writer = await asyncio.open_connection(host, port)
        head = f"GET {STREAM} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
        writer.write(head.encode())
        answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        await reader.readuntil(b": connected")
        return cls(reader, writer)

    async def first_opened_subject(self) -> int:
        """The subject of the first ``opened`` event."""
        await self.reader.readuntil(b"event: opened\ndata: ")
        await self.reader.readuntil(b'"subject_id":')
        return int((await self.reader.readuntil(b",")).rstrip(b","))

    def close(self) -> None:
        self.writer.close()


def _raise_open_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@pytest.fixture
async def inspector(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _connections_named(inspector: aioredis.Redis, name: str) -> int:
    clients = await inspector.client_list()
    return sum(1 for c in clients if c.get("name") == name)


async def test_a_thousand_streams_share_one_subscription_and_leave_redis_and_readyz_alone(
    client: TestClient[Any, Any],
    officers: Officers,
    settings: Settings,
    inspector: aioredis.Redis,
) -> None:
    # Each stream holds a socket at both ends, all in this process.
    _raise_open_files_limit(2 * STREAMS + 1024)
    county = await make_county(officers)
    mine = await make_world(client, officers, in_county=county)
    theirs = await make_world(client, officers, in_county=county)
    _, my_token = await officers.create("officer", mine.station)
    _, their_token = await officers.create("officer", theirs.station)
    hub = client.app[FEED_HUB]
    name = client_name(settings.redis_prefix)
    channel = client.app[FEED_HUB].hot.key(FEED_CHANNEL)
    before = len(hub.subscriptions)
    # Earlier requests may have left idle connections in the pool; streams must add none.
    connections = await _connections_named(inspector, name)

    host, port = str(client.server.host), int(client.server.port or 0)
    gate = asyncio.Semaphore(OPENING_AT_ONCE)

    async def opened(token: str) -> RawStream:
        async with gate:
            return await RawStream.open(host, port, token)

    tokens = [my_token if i % 2 == 0 else their_token for i in range(STREAMS)]
    results = await asyncio.gather(*(opened(t) for t in tokens), return_exceptions=True)
    streams = [r for r in results if isinstance(r, RawStream)]
    try:
        failures = [r for r in results if not isinstance(r, RawStream)]
        assert not failures, failures[:3]
        assert len(hub.subscriptions) == before + STREAMS

        # Redis sees one subscriber on the feed channel, and this process's connections stay
        # as they were (each stream used to take one of the pool's 100).
        numsub = await inspector.pubsub_numsub(channel)
        assert int(numsub[0][1]) == 1
        assert await _connections_named(inspector, name) <= max(connections, 1) + 1

        resp = await client.get("/readyz")
        assert resp.status == 200, await resp.text()

        # An alert raised now reaches every stream of its station, and none of the others:
        # their first event is their own station's alert, raised after.
        await send(client, mine, track(recent(), OUT_AND_BACK))
        mine_streams, their_streams = streams[0::2], streams[1::2]
        seen = await asyncio.wait_for(
            asyncio.gather(*(s.first_opened_subject() for s in mine_streams)), 30
        )
        assert set(seen) == {mine.subject_id}
        await send(client, theirs, track(recent(), OUT_AND_BACK))
        seen = await asyncio.wait_for(
            asyncio.gather(*(s.first_opened_subject() for s in their_streams)), 30
        )
        assert set(seen) == {theirs.subject_id}

        assert await _connections_named(inspector, name) <= max(connections, 1) + 1
        resp = await client.get("/readyz")
        assert resp.status == 200, await resp.text()
    finally:
        for stream in streams:
            stream.close()
    # Closed streams leave the hub promptly (not at their next keep-alive).
    for _ in range(200):
        if len(hub.subscriptions) == before:
            break
        await asyncio.sleep(0.05)
    assert len(hub.subscriptions) == before, "streams outlived their clients"


async def _rest_of_stream(resp: ClientResponse, timeout_s: float = 10.0) -> list[str]:
    """Every line the stream sends until it ends."""
    lines: list[str] = []
    while True:
        line = await asyncio.wait_for(resp.content.readline(), timeout_s)
        if not line:
            return lines
        lines.append(line.decode().rstrip("\n"))


async def test_logout_revokes_the_token_and_ends_its_streams_at_once(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    world = await make_world(client, officers, in_county=county)
    _, token = await officers.create("officer", world.station)
    _, colleague = await officers.create("officer", world.station)
    stream = await open_stream(client, token)
    other = await open_stream(client, colleague)
    try:
        resp = await client.post("/api/v1/auth/logout", headers=bearer(token))
        assert resp.status == 204, await resp.text()
        # The process that revoked it ends its streams without waiting for the token check.
        assert ": end token_revoked" in await _rest_of_stream(stream, timeout_s=1.0)

        for method, path in (("GET", "/api/v1/alerts"), ("POST", "/api/v1/auth/logout")):
            resp = await client.request(method, path, headers=bearer(token))
            assert resp.status == 401, (method, path)
            assert (await resp.json())["error"]["code"] == "unauthorized"
        resp = await client.get(STREAM, headers=bearer(token))
        assert resp.status == 401

        # A colleague's stream carries on and still receives the station's alerts.
        await send(client, world, track(recent(), OUT_AND_BACK))
        while True:
            line = (await asyncio.wait_for(other.content.readline(), 10)).decode()
            assert line, "the colleague's stream ended"
            if line.startswith("event: "):
                assert line.strip() == "event: opened"
                break
    finally:
        stream.close()
        other.close()
    resp = await client.post("/api/v1/auth/logout")
    assert resp.status == 401


async def test_a_token_revoked_by_another_process_ends_its_streams(
    client: TestClient[Any, Any], officers: Officers, database_url: str
) -> None:
    county = await make_county(officers)
    stream = await open_stream(client, county.admin_token)
    try:
        # Another process's logout is only a deleted row here; the hub's token check finds it.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "DELETE FROM officer_tokens WHERE token_hash = $1", token_hash(county.admin_token)
            )
        finally:
            await conn.close()
        assert ": end token_revoked" in await _rest_of_stream(stream)
    finally:
        stream.close()


async def test_a_stream_ends_when_its_token_expires(
    client: TestClient[Any, Any], settings: Settings, officers: Officers
) -> None:
    county = await make_county(officers)
    world = await make_world(client, officers, in_county=county)
    async with client.app[POOL].acquire() as conn:
        before = await alerts.last_event_id(conn)
    await send(client, world, track(recent(), OUT_AND_BACK))
    short = settings.model_copy(update={"token_ttl_s": 2})
    async with TestClient(FrontTestServer(init_app(short))) as short_client:
        # A token that lives two seconds; its stream replays the alert raised before it.
        _, token = await Officers(officers.database_url, short_client).create(
            "officer", world.station
        )
        stream = await open_stream(short_client, token, last_event_id=str(before))
        try:
            lines = await _rest_of_stream(stream)
        finally:
            stream.close()
        assert "event: opened" in lines
        # It ends at the expiry moment, on its own, and the token opens no new one.
        assert lines[-2:] == [": end token_expired", ""]
        resp = await short_client.get(STREAM, headers=bearer(token))
        assert resp.status == 401
