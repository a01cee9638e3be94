"""The ingest front: phones' native uploads answered without aiohttp's request machinery.

Every connection the service accepts starts here. A phone's connection carries nothing but
``POST /api/v1/fixes``, one after another, and those are answered by this module directly:
the request head is recognised with a few byte operations, the upload goes to the same
service as the aiohttp route's (``service.ingest.Ingest``, its ``submit_native``), and the
answer is written as one buffer with the same status, headers and JSON the aiohttp route
would give (``routes.ingest.receipt_json`` and ``ingest_error``). Per
request that saves aiohttp's request and response objects, its router and the middleware
chain, most of the web stack's cost for a request whose work is a few microseconds.

Anything else is not interpreted here at all: the connection is handed, with every byte it
has sent since the last answered request, to an aiohttp ``RequestHandler``, which serves it
from then on (the console, the officer API, the live feed, the other phone protocols). This
includes every native upload outside the plainest shape — a chunked or compressed body,
``Expect: 100-continue``, an upgrade, HTTP/1.0, a repeated or malformed framing header, a
head or body beyond this module's limits — so framing and refusals of anything unusual are
aiohttp's. This module's recogniser may only say "this request is exactly what I take" or
"not mine"; it never answers a request it did not fully recognise.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

import orjson
import structlog
from aiohttp import web

from correction_monitor.service.ingest import SubmitNative, SubmitOsmAnd
from correction_monitor.web.auth import parse_bearer
from correction_monitor.web.keys import INGEST
from correction_monitor.web.limits import body_limit
from correction_monitor.web.middlewares import (
    REQUEST_ID_HEADER,
    error_for,
    new_request_id,
    record_request,
)
from correction_monitor.web.routes.ingest import NATIVE_ROUTE, ingest_error, receipt_json

# The request lines taken, HTTP/1.1 only; anything else on the line is aiohttp's.
# - The native route, with an optional query (ignored, as by the route).
_NATIVE_LINE = re.compile(rb"POST /api/v1/fixes(?:\?[!-~]*)? HTTP/1\.1")
# - Traccar Client's report as a GET query of plain characters: no percent-escape, "+" or
#   ";", so the parameters are the text between "&" and "=" with nothing to decode (any
#   other query is decoded by aiohttp). Traccar Client sends one fix per request this way.
_OSMAND_LINE = re.compile(rb"GET (/osmand/?)\?([A-Za-z0-9_.,:=&-]+) HTTP/1\.1")
_PREFIXES = (b"POST /api/v1/fixes", b"GET /osmand")
_PREFIX_BYTES = max(len(prefix) for prefix in _PREFIXES)
# A header field: a token name, a colon, a value of visible ASCII, spaces and tabs.
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([ -~\t]*?)[ \t]*")
# Headers that change how the body is framed or read: such a request is aiohttp's.
_NOT_TAKEN = frozenset({b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"})
# Headers that may appear once here; a repeat is left for aiohttp to judge.
_SINGLE = frozenset({b"content-length", b"authorization", b"connection", b"x-request-id"})
MAX_HEAD_BYTES = 8190  # aiohttp's own limit on a request line or header field
# A native body over its route's limit goes to aiohttp, which refuses it (413) unread.
MAX_BODY_BYTES = body_limit(NATIVE_ROUTE)
# Bytes received while a request is being answered before the socket stops being read.
MAX_PENDING_BYTES = 2 * MAX_BODY_BYTES
KEEPALIVE_S = 75.0  # aiohttp's keep-alive timeout: idle connections are closed after it
_SWEEP_EVERY_S = 15.0

log = structlog.get_logger("correction_monitor.http")


@dataclass(frozen=True, slots=True)
class _Head:
    """What the front needs of a recognised request head: the route (as the metrics name
    it), an OsmAnd report's parameters (None for a native upload), the headers used."""

    route: str
    params: dict[str, str] | None
    authorization: str
    request_id: str
    length: int
    close: bool


def _query_params(query: bytes) -> dict[str, str] | None:
    """``a=1&b=2`` as aiohttp reads it (the first of repeated names), or None when a part
    is empty or has no name."""
    params: dict[str, str] = {}
    for part in query.decode("ascii").split("&"):
        name, _, value = part.partition("=")
        if not name:
            return None
        params.setdefault(name, value)
    return params


def parse_head(head: bytes) -> _Head | None:
    """The upload described by ``head`` (the bytes before the blank line), or None when the
    request is not exactly a shape this front answers.

    >>> h = parse_head(b"POST /api/v1/fixes HTTP/1.1\\r\\nContent-Length: 2\\r\\n"
    ...                b"Authorization: Bearer abc")
    >>> (h.route, h.length, h.authorization, h.close)
    ('/api/v1/fixes', 2, 'Bearer abc', False)
    >>> h = parse_head(b"GET /osmand/?id=12&lat=39.9&lon=116.3 HTTP/1.1\\r\\nHost: x")
    >>> (h.route, h.params, h.length)
    ('/osmand/', {'id': '12', 'lat': '39.9', 'lon': '116.3'}, 0)
    >>> parse_head(b"POST /api/v1/fixes HTTP/1.1\\r\\nTransfer-Encoding: chunked") is None
    True
    >>> parse_head(b"GET /healthz HTTP/1.1\\r\\nHost: x") is None
    True
    """
    lines = head.split(b"\r\n")
    params: dict[str, str] | None = None
    if _NATIVE_LINE.fullmatch(lines[0]) is not None:
        route = NATIVE_ROUTE
    else:
        osmand = _OSMAND_LINE.fullmatch(lines[0])
        if osmand is None:
            return None
        route = osmand[1].decode("ascii")
        params = _query_params(osmand[2])
        if params is None:
            return None
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:  # a bare CR or LF, a folded line, a byte outside ASCII, ...
            return None
        name = field[1].lower()
        if name in _NOT_TAKEN or (name in _SINGLE and name in fields):
            return None
        fields[name] = field[2]
    # A native upload states its length; an OsmAnd GET has no body.
    length = fields.get(b"content-length", b"" if params is None else b"0")
    if not length.isdigit() or len(length) > 8 or (params is not None and int(length) != 0):
        return None
    size = int(length)
    if size > MAX_BODY_BYTES:
        return None
    connection = fields.get(b"connection", b"keep-alive").lower()
    if connection not in (b"keep-alive", b"close"):
        return None
    return _Head(
        route,
        params,
        fields.get(b"authorization", b"").decode("ascii"),
        fields.get(b"x-request-id", b"").decode("ascii"),
        size,
        connection == b"close",
    )


_date_second = 0
_date_value = b""


def _http_date() -> bytes:
    """The ``Date`` header's value, formatted once a second."""
    global _date_second, _date_value
    now = int(time.time())
    if now != _date_second:
        _date_second, _date_value = now, formatdate(now, usegmt=True).encode("ascii")
    return _date_value


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


def response_bytes(
    status: int, body: bytes, request_id: str, headers: dict[str, str], close: bool
) -> bytes:
    """One HTTP/1.1 response, as the aiohttp route would send it."""
    lines = [
        b"HTTP/1.1 %d %b" % (status, _reason(status)),
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        b"Date: " + _http_date(),
        b"%b: %b" % (REQUEST_ID_HEADER.encode("ascii"), request_id.encode("ascii")),
    ]
    lines.extend(f"{name}: {value}".encode("latin-1") for name, value in headers.items())
    if close:
        lines.append(b"Connection: close")
    lines.append(b"")
    return b"\r\n".join(lines) + b"\r\n" + body


class FrontProtocol(asyncio.Protocol):
    """One accepted connection: answers native uploads until a request is not one, then
    hands the connection to aiohttp."""

    def __init__(self, site: FrontSite) -> None:
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being answered; later bytes wait in the buffer
        self.paused = False  # reading paused (too much pending, or the peer not reading)
        self.write_blocked = False
        self.eof = False  # the peer has finished sending
        self.task: asyncio.Task[None] | None = None
        self.last_active = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.last_active = self.site.loop.time()
        self.site.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()
        elif len(self.buffer) > MAX_PENDING_BYTES:
            self._pause()

    def eof_received(self) -> bool:
        # Half-closed while a request is being answered: keep the socket to send the answer.
        self.eof = True
        return self.busy

    def pause_writing(self) -> None:
        self.write_blocked = True
        self._pause()

    def resume_writing(self) -> None:
        self.write_blocked = False
        if not self.busy:
            self._resume()

    # -- requests ----------------------------------------------------------------------------

    def _next(self) -> None:
        """Answer the next request in the buffer when it is complete (or hand off)."""
        buffer = self.buffer
        if not buffer or self.transport is None:
            return
        opening = bytes(buffer[:_PREFIX_BYTES])
        if not any(prefix.startswith(opening[: len(prefix)]) for prefix in _PREFIXES):
            self._hand_off()  # not an upload this front takes: known from the first bytes
            return
        end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._hand_off()
            return
        head = parse_head(bytes(buffer[:end]))
        if head is None:
            self._hand_off()
            return
        start = end + 4
        if len(buffer) < start + head.length:
            return  # the body is still arriving
        body = bytes(buffer[start : start + head.length])
        del buffer[: start + head.length]
        self.busy = True
        self.task = self.site.loop.create_task(self._answer(head, body))

    async def _answer(self, head: _Head, body: bytes) -> None:
        started = time.perf_counter()
        request_id = head.request_id or new_request_id()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        headers: dict[str, str] = {}

        async def read_body() -> bytes:
            return body

        try:
            if head.params is None:
                command = SubmitNative(parse_bearer(head.authorization), read_body)
                receipt = await self.site.ingest.submit_native(command)
            else:
                receipt = await self.site.ingest.submit_osmand(SubmitOsmAnd(head.params))
            payload: Any = receipt_json(receipt)
            status = 200
        except Exception as exc:
            err = error_for(ingest_error(exc), head.route)
            status, payload, headers = err.status, err.body(), err.headers
        finally:
            self.busy = False
        method = "POST" if head.params is None else "GET"
        record_request(method, head.route, status, time.perf_counter() - started)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        close = head.close or self.eof or self.site.closing
        transport.write(response_bytes(status, orjson.dumps(payload), request_id, headers, close))
        self.last_active = self.site.loop.time()
        if close:
            transport.close()
            return
        self._resume()
        self._next()

    def _hand_off(self) -> None:
        """Give the connection, with the bytes of its unanswered request, to aiohttp."""
        transport = self.transport
        assert transport is not None
        assert not self.busy
        self.site.connections.discard(self)
        self.transport = None
        handler = self.site.web_server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.write_blocked:
            handler.pause_writing()
        if self.paused:
            transport.resume_reading()
        pending, self.buffer = bytes(self.buffer), bytearray()
        handler.data_received(pending)

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and not self.write_blocked and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def close_if_idle(self, idle_before: float) -> None:
        if not self.busy and self.transport is not None and self.last_active <= idle_before:
            self.transport.close()


class FrontSite(web.BaseSite):
    """An aiohttp site on a listening socket whose connections start at the ingest front.

    It registers with the runner like aiohttp's own sites, so the runner's shutdown stops it
    first: no new connections, idle ones closed, requests being answered given up to the
    runner's shutdown timeout to finish, before aiohttp's connections are shut and the
    application cleaned up (the group committer among it).
    """

    def __init__(self, runner: web.AppRunner, sock: Any, *, grace_s: float) -> None:
        super().__init__(runner)
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._name = f"http://{host}:{port}"
        assert runner.server is not None, "set the runner up before making a site"
        self.app = runner.app
        self.ingest = runner.app[INGEST]  # built by the app's start-up, done by setup()
        self.web_server = runner.server
        self.connections: set[FrontProtocol] = set()
        self.closing = False
        self.loop = asyncio.get_running_loop()
        self._sweeper: asyncio.Task[None] | None = None
        self._grace_s = grace_s

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        self._server = await self.loop.create_server(
            lambda: FrontProtocol(self), sock=self._sock, backlog=self._backlog
        )
        self._sweeper = self.loop.create_task(self._sweep(), name="front-keepalive")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_EVERY_S)
            idle_before = self.loop.time() - KEEPALIVE_S
            for conn in list(self.connections):
                conn.close_if_idle(idle_before)

    async def stop(self) -> None:
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await super().stop()
        deadline = self.loop.time() + self._grace_s
        while True:
            for conn in list(self.connections):
                conn.close_if_idle(float("inf"))  # answered requests close as they end
            if not any(conn.busy for conn in self.connections):
                break
            if self.loop.time() >= deadline:
                log.warning("ingest requests cut short by shutdown", open=len(self.connections))
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, sock: Any, *, shutdown_timeout: float, handle_signals: bool = False
) -> AsyncIterator[None]:
    """Serve ``app`` on the listening socket ``sock``, with the ingest front in front of it,
    for as long as the block runs; then shut down as described on :class:`FrontSite`.

    ``correction-monitor serve`` (through :func:`run`) and the demo both serve this way.
    """
    runner = web.AppRunner(
        app, handle_signals=handle_signals, shutdown_timeout=shutdown_timeout, access_log=None
    )
    await runner.setup()
    try:
        await FrontSite(runner, sock, grace_s=shutdown_timeout).start()
        yield
    finally:
        await runner.cleanup()


async def _serve(app: web.Application, sock: Any, shutdown_timeout: float) -> None:
    async with serving(app, sock, shutdown_timeout=shutdown_timeout, handle_signals=True):
        await asyncio.Event().wait()  # until the signal handler raises GracefulExit


def run(app: web.Application, sock: Any, *, shutdown_timeout: float) -> None:
    """Serve ``app`` on the listening socket ``sock`` until SIGTERM or SIGINT, like
    ``aiohttp.web.run_app``, with the ingest front in front of it."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve(app, sock, shutdown_timeout))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
