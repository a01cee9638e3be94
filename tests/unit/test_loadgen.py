"""The load generator's client side: request bodies, response reading and the send loop."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from correction_monitor.ingest.protocols.native import decode_native
from correction_monitor.loadgen import (
    OUTSIDE_LON,
    STEP_DEG,
    WALK_HIGH,
    WALK_LOW,
    HttpConnection,
    Phone,
    Run,
    Slot,
    http_floor,
)

pytestmark = pytest.mark.unit

START = 1_700_000_000.25  # epoch seconds of a phone's first fix
OK = b'{"accepted": 1, "duplicates": 0, "rejected": []}'


def phone(lon: float = 112.95, lat: float = 28.15, *, breaches: bool = False) -> Phone:
    return Phone(7, "device-token", lon, lat, breaches, START, 1.0)


def fixes_of(body: bytes) -> list[dict[str, object]]:
    fixes: list[dict[str, object]] = orjson.loads(body)["fixes"]
    return fixes


@pytest.mark.parametrize("n", [1, 5, 100, 1000])
@pytest.mark.parametrize("breaches", [False, True])
def test_bodies_are_native_fixes_the_server_accepts(n: int, breaches: bool) -> None:
    random.seed(1)
    rng = np.random.default_rng(1)
    p = phone(breaches=breaches)
    p.seq = 150  # the next 1,000 fixes cross a breaching phone's time away
    body, newest = p.next_body(n, rng)
    decoded = decode_native(body)
    assert decoded.rejected == []
    assert len(decoded.fixes) == n
    fixes = fixes_of(body)
    assert [f["id"] for f in fixes] == [str(151 + i) for i in range(n)]
    assert [f["ts"] for f in fixes] == [int(START * 1000) + 1000 * i for i in range(n)]
    assert newest == fixes[-1]["ts"]
    assert [f["accuracy_m"] for f in fixes] == [8 + (151 + i) % 17 for i in range(n)]
    assert (p.seq, p.clock) == (150 + n, START + n)


@pytest.mark.parametrize("n", [1, 100])
def test_coordinates_have_seven_decimals(n: int) -> None:
    body, _ = phone().next_body(n, np.random.default_rng(2))
    for text in body.split(b'"lat":')[1:] + body.split(b'"lon":')[1:]:
        number = text.split(b",")[0]
        assert len(number.split(b".")[1]) == 7, number


@pytest.mark.parametrize("n", [1, 100])
def test_breaching_phones_leave_and_come_back_where_they_were(n: int) -> None:
    random.seed(3)
    rng = np.random.default_rng(3)
    p = phone(breaches=True)
    fixes = []
    while p.seq < 1600:
        fixes += fixes_of(p.next_body(n, rng)[0])
    away = [200 <= int(str(f["id"])) % 1000 < 500 for f in fixes]
    assert [f["lon"] == round(OUTSIDE_LON, 7) for f in fixes] == away
    lats = [float(str(f["lat"])) for f in fixes]
    for i in range(1, len(fixes)):
        if away[i]:  # the walk pauses while the phone is away
            assert lats[i] == lats[i - 1]
        else:  # and resumes from there on return
            assert abs(lats[i] - lats[i - 1]) <= STEP_DEG + 2e-7
    assert away.count(True) == 600


@pytest.mark.parametrize("n", [1, 100])
def test_the_walk_stays_in_the_county_in_small_steps(n: int) -> None:
    random.seed(4)
    rng = np.random.default_rng(4)
    p = phone(*WALK_LOW)  # on the county's south-west edge
    fixes = []
    for _ in range(2000 // n):
        fixes += fixes_of(p.next_body(n, rng)[0])
    lons = np.array([f["lon"] for f in fixes])
    lats = np.array([f["lat"] for f in fixes])
    slack = 1e-7  # the 7th decimal's rounding
    assert lons.min() >= WALK_LOW[0] - slack
    assert lons.max() <= WALK_HIGH[0] + slack
    assert lats.min() >= WALK_LOW[1] - slack
    assert lats.max() <= WALK_HIGH[1] + slack
    assert np.abs(np.diff(lons)).max() <= STEP_DEG + 2 * slack
    assert np.abs(np.diff(lats)).max() <= STEP_DEG + 2 * slack
    assert (p.lon, p.lat) == pytest.approx((lons[-1], lats[-1]), abs=slack)


class Downhill:
    """Random steps that always go south-west as far as a step can."""

    def uniform(self, low: float, high: float, size: tuple[int, int]) -> np.ndarray:
        return np.full(size, low)


@pytest.mark.parametrize("n", [1, 100])
def test_the_walk_stops_at_the_county_edge(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    p = phone(WALK_LOW[0] + 5.5 * STEP_DEG, WALK_LOW[1] + 2.5 * STEP_DEG)
    fixes = []
    for _ in range(100 // n):
        fixes += fixes_of(p.next_body(n, Downhill())[0])  # type: ignore[arg-type]
    lons = [f["lon"] for f in fixes]
    lats = [f["lat"] for f in fixes]
    assert lons[:7] == pytest.approx(
        [WALK_LOW[0] + k * STEP_DEG for k in (4.5, 3.5, 2.5, 1.5, 0.5, 0, 0)]
    )
    assert lats[:4] == pytest.approx(
        [WALK_LOW[1] + k * STEP_DEG for k in (1.5, 0.5, 0, 0)], abs=2e-7
    )
    assert lons[-1] == round(WALK_LOW[0], 7)
    assert lats[-1] == round(WALK_LOW[1], 7)
    assert (p.lon, p.lat) == WALK_LOW


# --- response reading ----------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


class Recorder(HttpConnection):
    def __init__(self) -> None:
        super().__init__()
        self.transport_ = FakeTransport()
        self.connection_made(self.transport_)  # type: ignore[arg-type]
        self.responses: list[tuple[int, bytes]] = []
        self.losses = 0

    def response(self, status: int, body: bytes) -> None:
        self.responses.append((status, body))

    def lost(self) -> None:
        self.losses += 1


def response(status: int, body: bytes, *headers: bytes) -> bytes:
    head = [b"HTTP/1.1 %d X" % status, b"Content-Type: application/json"]
    head += [*headers, b"Content-Length: %d" % len(body)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_a_response_is_read_whatever_way_it_is_cut() -> None:
    data = response(200, OK) + response(503, b'{"error": "overloaded"}')
    first = len(response(200, OK))
    for cut in range(1, first):
        conn = Recorder()
        conn.send(b"request")
        conn.data_received(data[:cut])
        assert conn.responses == []
        conn.data_received(data[cut:first])
        assert conn.responses == [(200, OK)]
        conn.send(b"request")
        conn.data_received(data[first:])
        assert conn.responses[1] == (503, b'{"error": "overloaded"}')
        assert conn.reusable
        assert not conn.transport_.closed


def test_connection_close_is_honoured_after_the_response() -> None:
    conn = Recorder()
    conn.send(b"request")
    conn.data_received(response(200, OK, b"Connection: close"))
    assert conn.responses == [(200, OK)]
    assert not conn.reusable
    assert conn.transport_.closed


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
    ],
)
def test_responses_it_cannot_read_close_the_connection(data: bytes) -> None:
    conn = Recorder()
    conn.send(b"request")
    conn.data_received(data)
    assert conn.responses == []
    assert conn.transport_.closed
    assert not conn.reusable
    conn.connection_lost(None)
    assert conn.losses == 1


def test_a_response_nobody_asked_for_closes_the_connection() -> None:
    conn = Recorder()
    conn.data_received(response(408, b""))
    assert conn.responses == []
    assert conn.transport_.closed
    conn.connection_lost(None)
    assert conn.losses == 0  # no request was lost


# --- the send loop ---------------------------------------------------------------------------


class LocalRun(Run):
    """A run whose connections are fake transports."""

    def __init__(
        self,
        phones: list[Phone],
        per_request: int = 1,
        concurrency: int = 1,
        rate: float = 0.0,
    ) -> None:
        super().__init__("http://127.0.0.1:8080", phones, per_request, 60.0, concurrency, rate)
        self.made: list[tuple[Slot, FakeTransport]] = []

    def connect(self) -> None:
        slot, transport = Slot(self), FakeTransport()
        self.made.append((slot, transport))
        slot.connection_made(transport)  # type: ignore[arg-type]

    def last_request(self) -> tuple[bytes, bytes]:
        head, _, body = self.made[-1][1].written[-1].partition(b"\r\n\r\n")
        return head, body


async def test_requests_carry_the_device_token_and_the_fixes() -> None:
    run = LocalRun([phone()], per_request=100)
    run.start()
    head, body = run.last_request()
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/fixes HTTP/1.1"
    assert b"Host: 127.0.0.1:8080" in lines
    assert b"Authorization: Bearer device-token" in lines
    assert b"Content-Type: application/json" in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert len(decode_native(body).fixes) == 100
    assert run.requests == 1


async def test_a_503_sends_the_same_fixes_again_and_a_200_moves_on() -> None:
    run = LocalRun([phone()])
    run.start()
    slot, _ = run.made[0]
    _, first = run.last_request()
    slot.data_received(response(503, b'{"error": "overloaded"}'))
    assert run.overload == 1
    assert run.last_request()[1] == first
    slot.data_received(response(200, OK))
    _, second = run.last_request()
    assert fixes_of(second)[0]["id"] == "2"
    assert (run.accepted, run.errors, run.requests, len(run.latencies)) == (1, 0, 3, 1)
    ((subject, newest, _),) = run.sent_log
    assert (subject, newest) == (7, fixes_of(first)[0]["ts"] / 1000)  # type: ignore[operator]


async def test_lost_and_closed_connections_are_reopened() -> None:
    run = LocalRun([phone()])
    run.start()
    slot, transport = run.made[0]
    slot.data_received(response(200, OK, b"Connection: close"))
    assert transport.closed
    assert run.reconnects == 1
    assert len(run.made) == 2
    slot, transport = run.made[1]
    assert len(transport.written) == 1
    slot.connection_lost(ConnectionResetError())
    assert run.errors == 1
    assert run.reconnects == 2
    assert len(run.made) == 3
    assert run.accepted == 1
    assert run.requests == 3


async def test_the_run_ends_when_the_last_response_after_the_deadline_is_read() -> None:
    run = LocalRun([phone()], concurrency=3)  # two connections wait for the only phone
    done = run.start()
    assert len(run.parked) == 2
    run.deadline = 0.0
    slot, _transport = run.made[0]
    slot.data_received(response(200, OK))
    await asyncio.sleep(0)  # the waiting connections learn that time is up
    assert done.done()
    assert run.active == 0
    assert all(t.closed for _, t in run.made)
    assert run.requests == 1
    assert run.accepted == 1


async def test_a_rate_spaces_the_requests_out() -> None:
    run = LocalRun([phone()], per_request=2, rate=10.0)  # a request each 0.2 s
    run.start()
    slot, transport = run.made[0]
    slot.data_received(response(200, OK))
    assert len(transport.written) == 1
    await asyncio.sleep(0.1)
    assert len(transport.written) == 1
    await asyncio.sleep(0.3)
    assert len(transport.written) == 2


async def test_the_http_floor_counts_answers_of_the_cheapest_route() -> None:
    asked: list[str] = []

    async def healthz(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    async with TestServer(app) as server:
        out = await http_floor(str(server.make_url("/")).rstrip("/"), 0.3, 3)
    assert out["errors"] == 0
    assert out["ok"] == len(asked) > 3  # keep-alive connections asking again and again
    assert set(asked) == {"/healthz"}
    assert 0.3 <= out["wall_s"] < 5.0
