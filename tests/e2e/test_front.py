"""The ingest front over raw sockets: what it answers itself, and what it hands to aiohttp.

Native uploads in their plain shape are answered by the front (its answers carry no
``Server`` header, aiohttp's do); everything else, on any connection, at any point, must
reach aiohttp with its bytes intact and get aiohttp's answer.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from tests.conftest import FrontTestServer, Officers
from tests.e2e.helpers import INSIDE, World, make_world, recent, track

pytestmark = pytest.mark.e2e


class Raw:
    """One keep-alive connection speaking bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes, *, step: int = 0) -> None:
        if step:
            for i in range(0, len(data), step):
                self.writer.write(data[i : i + step])
                await self.writer.drain()
                await asyncio.sleep(0)
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""


@pytest.fixture
async def raw(client: TestClient[Any, Any]) -> AsyncIterator[Raw]:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    yield Raw(reader, writer)
    writer.close()


@pytest.fixture
async def world(client: TestClient[Any, Any], officers: Officers) -> World:
    return await make_world(client, officers, level="normal")


def upload(
    world: World, fixes: list[dict[str, Any]], *extra: bytes, body: bytes | None = None
) -> bytes:
    payload = orjson.dumps({"fixes": fixes}) if body is None else body
    lines = [
        b"POST /api/v1/fixes HTTP/1.1",
        b"Host: test",
        b"Authorization: Bearer " + world.device_token.encode(),
        b"Content-Type: application/json",
        *extra,
    ]
    if not any(line.lower().startswith(b"transfer-encoding") for line in extra):
        lines.append(b"Content-Length: %d" % len(payload))
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def fixes_from(minute: int, count: int = 1) -> list[dict[str, Any]]:
    return track(recent(minutes=100 - minute), [INSIDE] * count, step_s=5)


async def test_uploads_on_one_connection_are_answered_by_the_front_in_order(
    raw: Raw, world: World
) -> None:
    first, second = fixes_from(0, 3), fixes_from(10, 2)
    await raw.send(upload(world, first))
    status, headers, body = await raw.response()
    assert (status, orjson.loads(body)) == (200, {"accepted": 3, "duplicates": 0, "rejected": []})
    assert "server" not in headers  # the front's answer, not aiohttp's
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"]
    # Pipelined: both requests in one write, answered in order.
    await raw.send(upload(world, second) + upload(world, first))
    answers = [await raw.response() for _ in range(2)]
    assert [orjson.loads(b) for _, _, b in answers] == [
        {"accepted": 2, "duplicates": 0, "rejected": []},
        {"accepted": 0, "duplicates": 3, "rejected": []},
    ]


async def test_a_request_sent_byte_by_byte_is_answered(raw: Raw, world: World) -> None:
    await raw.send(upload(world, fixes_from(20, 2), b"X-Request-ID: front-slow-1"), step=1)
    status, headers, body = await raw.response()
    assert status == 200
    assert orjson.loads(body)["accepted"] == 2
    assert headers["x-request-id"] == "front-slow-1"


async def test_another_route_on_an_upload_connection_goes_to_aiohttp(
    raw: Raw, world: World
) -> None:
    await raw.send(upload(world, fixes_from(30)))
    assert (await raw.response())[0] == 200
    await raw.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    status, headers, body = await raw.response()
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})
    assert "aiohttp" in headers["server"]
    # aiohttp keeps the connection from then on, and serves uploads on it too.
    await raw.send(upload(world, fixes_from(31)))
    status, headers, body = await raw.response()
    assert (status, orjson.loads(body)["accepted"]) == (200, 1)
    assert "aiohttp" in headers["server"]


async def test_a_connection_that_starts_elsewhere_is_aiohttps(raw: Raw) -> None:
    await raw.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    status, headers, _ = await raw.response()
    assert status == 200
    assert "aiohttp" in headers["server"]


@pytest.mark.parametrize(
    ("extra", "encode"),
    [
        ((b"Transfer-Encoding: chunked",), "chunked"),
        ((b"Content-Encoding: gzip",), "gzip"),
        ((b"Expect: 100-continue",), "plain"),
    ],
)
async def test_uploads_of_other_shapes_are_answered_by_aiohttp(
    raw: Raw, world: World, extra: tuple[bytes, ...], encode: str
) -> None:
    fixes = fixes_from(40 + len(encode), 4)
    payload = orjson.dumps({"fixes": fixes})
    if encode == "chunked":
        body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload)
    elif encode == "gzip":
        body = gzip.compress(payload)
    else:
        body = payload
    await raw.send(upload(world, fixes, *extra, body=body))
    if encode == "plain":  # Expect: 100-continue gets its interim answer first
        assert (await raw.reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    status, headers, answer = await raw.response()
    assert (status, orjson.loads(answer)["accepted"]) == (200, 4)
    assert "aiohttp" in headers["server"]


async def test_conflicting_lengths_are_refused_by_aiohttp(raw: Raw, world: World) -> None:
    payload = orjson.dumps({"fixes": fixes_from(50)})
    await raw.send(
        upload(world, [], b"Content-Length: %d" % (len(payload) + 5), body=payload) + b"12345"
    )
    status, headers, _ = await raw.response()
    assert status == 400
    assert "aiohttp" in headers.get("server", "aiohttp")


async def test_connection_close_is_honoured(raw: Raw, world: World) -> None:
    await raw.send(upload(world, fixes_from(60), b"Connection: close"))
    status, headers, _ = await raw.response()
    assert status == 200
    assert headers["connection"] == "close"
    assert await raw.closed()


async def test_errors_have_the_contract_shape_and_headers(raw: Raw, world: World) -> None:
    await raw.send(upload(world, [], body=b"{not json"))
    status, _, body = await raw.response()
    assert status == 400
    assert set(orjson.loads(body)["error"]) >= {"code", "message"}
    request = upload(world, fixes_from(70)).replace(
        world.device_token.encode(), b"no-such-token-000"
    )
    await raw.send(request)
    status, headers, body = await raw.response()
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert orjson.loads(body)["error"]["code"] == "unauthorized"
    too_many = [{"ts": "2026-01-01T00:00:00Z", "lat": 39.9, "lon": 116.3}] * 1001
    await raw.send(upload(world, too_many))
    status, _, body = await raw.response()
    assert (status, orjson.loads(body)["error"]["code"]) == (413, "too_many_fixes")
    # The connection is still good after errors.
    await raw.send(upload(world, fixes_from(71)))
    assert (await raw.response())[0] == 200


async def test_a_body_beyond_the_limit_is_refused_by_aiohttp(raw: Raw, world: World) -> None:
    fixes = fixes_from(80, 2)
    payload = orjson.dumps({"fixes": fixes})
    padded = payload[:-1] + b" " * (1_100_000) + b"}"
    await raw.send(upload(world, fixes, body=padded))
    status, headers, body = await raw.response()
    assert (status, orjson.loads(body)["error"]["code"]) == (413, "body_too_large")
    assert "aiohttp" in headers["server"]


async def test_front_answers_are_counted_like_the_routes(
    client: TestClient[Any, Any], raw: Raw, world: World
) -> None:
    def count(text: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("cm_http_requests_total{")
            and 'route="/api/v1/fixes"' in line
            and 'status="200"' in line
        )

    before = count(await (await client.get("/metrics")).text())
    await raw.send(upload(world, fixes_from(90)))
    assert (await raw.response())[0] == 200
    after = count(await (await client.get("/metrics")).text())
    assert after == before + 1


async def test_shutdown_lets_an_upload_being_committed_finish(
    client: TestClient[Any, Any], officers: Officers, settings: Settings, database_url: str
) -> None:
    world = await make_world(client, officers, level="normal")
    server = FrontTestServer(init_app(settings))
    await server.start_server()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    conn = Raw(reader, writer)
    await conn.send(upload(world, fixes_from(0)))  # creates the subject's state row
    assert (await conn.response())[0] == 200
    # Another session holds the subject's state row: the next commit must wait for it.
    blocker = await asyncpg.connect(database_url)
    held = blocker.transaction()
    await held.start()
    await blocker.execute(
        "SELECT 1 FROM subject_eval_state WHERE subject_id = $1 FOR UPDATE", world.subject_id
    )
    try:
        await conn.send(upload(world, fixes_from(5, 2)))
        await asyncio.sleep(0.3)
        closing = asyncio.create_task(server.close())
        await asyncio.sleep(0.5)
        assert not closing.done(), "the server stopped with an upload still being committed"
    finally:
        await held.rollback()
        await blocker.close()
    status, headers, body = await conn.response()
    assert (status, orjson.loads(body)["accepted"]) == (200, 2)
    assert headers["connection"] == "close"
    await asyncio.wait_for(closing, 10)
    writer.close()


def osmand_get(query: str, *extra: bytes) -> bytes:
    return b"\r\n".join([b"GET /osmand/?" + query.encode() + b" HTTP/1.1", b"Host: test", *extra])


async def test_a_traccar_report_is_answered_by_the_front_as_by_aiohttp(
    raw: Raw, world: World, client: TestClient[Any, Any]
) -> None:
    moment = int(recent(minutes=30).timestamp())
    query = f"id={world.osmand_id}&timestamp={moment}&lat=39.9&lon=116.3&speed=2.5&accuracy=12"
    await raw.send(osmand_get(query) + b"\r\n\r\n")
    status, headers, body = await raw.response()
    assert (status, orjson.loads(body)) == (200, {"accepted": 1, "duplicates": 0, "rejected": []})
    assert "server" not in headers
    # The same report through aiohttp (a query it must decode) counts as the same fix.
    resp = await client.get(f"/osmand/?{query.replace('lat=39.9', 'lat=%33%39.9')}")
    assert resp.headers["Server"].count("aiohttp")
    assert await resp.json() == {"accepted": 0, "duplicates": 1, "rejected": []}


async def test_traccar_refusals_at_the_front_match_the_route(raw: Raw, world: World) -> None:
    await raw.send(osmand_get("lat=39.9&lon=116.3") + b"\r\n\r\n")
    status, headers, body = await raw.response()
    assert (status, orjson.loads(body)["error"]["code"]) == (400, "missing_device_id")
    assert "server" not in headers
    await raw.send(osmand_get("id=0000000000&lat=39.9&lon=116.3") + b"\r\n\r\n")
    status, _, body = await raw.response()
    assert (status, orjson.loads(body)["error"]["code"]) == (401, "unauthorized")
    # A query with escapes is decoded by aiohttp.
    await raw.send(osmand_get(f"id={world.osmand_id}&lat=%2B39.9&lon=116.3") + b"\r\n\r\n")
    status, headers, _ = await raw.response()
    assert "aiohttp" in headers["server"]
