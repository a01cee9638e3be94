"""The ingest front's recogniser: it takes exactly the plainest native upload, nothing else."""

from __future__ import annotations

import pytest

from correction_monitor.web.front import MAX_BODY_BYTES, parse_head, response_bytes

pytestmark = pytest.mark.unit

LINE = b"POST /api/v1/fixes HTTP/1.1"


def head(*fields: bytes, line: bytes = LINE) -> bytes:
    return b"\r\n".join((line, *fields))


def test_a_plain_upload_is_taken_with_what_the_answer_needs() -> None:
    parsed = parse_head(
        head(
            b"Host: example",
            b"authorization:   Bearer tok-1  ",
            b"Content-Type: application/json",
            b"Content-Length: 120",
            b"X-Request-ID: abc-123",
            b"Connection: Keep-Alive",
        )
    )
    assert parsed is not None
    assert (parsed.authorization, parsed.request_id, parsed.length, parsed.close) == (
        "Bearer tok-1",
        "abc-123",
        120,
        False,
    )


def test_connection_close_and_a_query_are_taken() -> None:
    parsed = parse_head(
        head(b"Content-Length: 0", b"Connection: close", line=b"POST /api/v1/fixes?v=2 HTTP/1.1")
    )
    assert parsed is not None
    assert parsed.close
    assert parsed.authorization == ""


@pytest.mark.parametrize(
    "line",
    [
        b"GET /api/v1/fixes HTTP/1.1",
        b"post /api/v1/fixes HTTP/1.1",
        b"POST /api/v1/fixes/ HTTP/1.1",
        b"POST /api/v1/fixesX HTTP/1.1",
        b"POST /api/v1/fixes HTTP/1.0",
        b"POST http://host/api/v1/fixes HTTP/1.1",
        b"POST /api/v1/fixes  HTTP/1.1",
        b"POST /api/v1/fixes?a=\xff HTTP/1.1",
    ],
)
def test_other_request_lines_are_left_to_aiohttp(line: bytes) -> None:
    assert parse_head(head(b"Content-Length: 2", line=line)) is None


@pytest.mark.parametrize(
    "fields",
    [
        (),  # no Content-Length: a body this front cannot frame
        (b"Content-Length: 2", b"Transfer-Encoding: chunked"),
        (b"Transfer-Encoding: chunked",),
        (b"Content-Length: 2", b"Content-Encoding: gzip"),
        (b"Content-Length: 2", b"Expect: 100-continue"),
        (b"Content-Length: 2", b"Upgrade: websocket"),
        (b"Content-Length: 2", b"Content-Length: 2"),
        (b"Content-Length: 2", b"Authorization: Bearer a", b"Authorization: Bearer b"),
        (b"Content-Length: +2",),
        (b"Content-Length: 2 2",),
        (b"Content-Length: -1",),
        (b"Content-Length: 0x10",),
        (f"Content-Length: {MAX_BODY_BYTES + 1}".encode(),),
        (b"Content-Length: 123456789",),
        (b"Content-Length : 2",),  # space before the colon
        (
            b"Content-Length: 2",
            b" folded",
        ),  # obsolete line folding
        (b"Content-Length: 2", b"X-Note: caf\xc3\xa9"),  # bytes outside ASCII
        (b"Content-Length: 2", b"X-Bad\nInjected: 1"),  # a bare line feed
        (b"Content-Length: 2", b"X-Bad: a\rb"),  # a bare carriage return
        (b"Content-Length: 2", b"X-Nul: a\x00b"),
        (b"Content-Length: 2", b"Connection: upgrade"),
        (b"Content-Length: 2", b"no-colon"),
    ],
)
def test_unusual_heads_are_left_to_aiohttp(fields: tuple[bytes, ...]) -> None:
    assert parse_head(head(*fields)) is None


def test_the_answer_has_the_routes_headers() -> None:
    raw = response_bytes(401, b'{"e":1}', "rid-1", {"WWW-Authenticate": "Bearer"}, close=True)
    status_line, rest = raw.split(b"\r\n", 1)
    fields, body = rest.split(b"\r\n\r\n", 1)
    assert status_line == b"HTTP/1.1 401 Unauthorized"
    assert body == b'{"e":1}'
    names = dict(line.split(b": ", 1) for line in fields.split(b"\r\n"))
    assert names[b"Content-Type"] == b"application/json"
    assert names[b"Content-Length"] == b"7"
    assert names[b"X-Request-ID"] == b"rid-1"
    assert names[b"WWW-Authenticate"] == b"Bearer"
    assert names[b"Connection"] == b"close"
    assert names[b"Date"].endswith(b" GMT")


def test_a_plain_traccar_query_is_taken_with_the_first_of_repeated_names() -> None:
    parsed = parse_head(head(b"Host: x", line=b"GET /osmand?id=7&lat=1&lat=2&flag HTTP/1.1"))
    assert parsed is not None
    assert parsed.route == "/osmand"
    assert parsed.params == {"id": "7", "lat": "1", "flag": ""}


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        (b"GET /osmand/?id=7&lat=%2B1 HTTP/1.1", ()),  # an escape: aiohttp decodes it
        (b"GET /osmand/?id=7&t=2026-01-01+10:00 HTTP/1.1", ()),  # "+" is a space there
        (b"GET /osmand/?id=7;lat=1 HTTP/1.1", ()),
        (b"GET /osmand/?id=7&&lat=1 HTTP/1.1", ()),
        (b"GET /osmand/?=7 HTTP/1.1", ()),
        (b"GET /osmand/ HTTP/1.1", ()),  # no query: the route names what is missing
        (b"GET /osmand/?id=7 HTTP/1.1", (b"Content-Length: 5",)),  # a GET with a body
        (b"POST /osmand/?id=7 HTTP/1.1", (b"Content-Length: 0",)),
        (b"HEAD /osmand/?id=7 HTTP/1.1", ()),
        (b"GET /osmand/x?id=7 HTTP/1.1", ()),
    ],
)
def test_other_traccar_requests_are_left_to_aiohttp(line: bytes, fields: tuple[bytes, ...]) -> None:
    assert parse_head(head(*fields, line=line)) is None
