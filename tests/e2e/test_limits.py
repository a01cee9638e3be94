"""Request limits and hostile bodies over HTTP, through the ingest front as in production.

A body over its route's limit is refused with 413 before it is read whole (a declared
length at once, a chunked body as soon as it passes the limit); invalid UTF-8 and nesting
past the JSON parser's limit are 400s with codes of their own on every route that reads a
body; and no body at all makes any route answer 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correction_monitor.web.limits import (
    BODY_LIMITS,
    DEFAULT_BODY_LIMIT,
    MIB,
    PHONE_BODY_LIMIT,
    body_limit,
)
from tests.conftest import Officers, shared_data
from tests.e2e.helpers import INSIDE, County, World, make_county, make_world, recent, track
from tests.unit.protocols.hostile import (
    fix_shaped,
    hostile_bytes,
    native_bodies,
    num,
    osmand_bodies,
    owntracks_bodies,
)

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]

PHONE_ROUTES = ("/api/v1/fixes", "/osmand", "/owntracks", "/api/v1/me")
DATAV_BEIJING = ("boundaries", "datav_GeoMapData_CN", "province", "110000.json")


class Raw:
    """One connection speaking bytes, to send heads and bodies in pieces."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], Any]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split(" ")[1]), headers, orjson.loads(body)


@pytest.fixture
async def raw(client: Client) -> AsyncIterator[Raw]:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    yield Raw(reader, writer)
    writer.close()


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


@pytest.fixture(scope="module")
async def world(client: Client, officers: Officers, county: County) -> World:
    return await make_world(client, officers, level="normal", in_county=county)


def basic(world: World) -> str:
    return "Basic " + base64.b64encode(f"{world.osmand_id}:{world.device_token}".encode()).decode()


def request_head(
    route: str, authorization: str, *fields: str, method: str = "POST", path: str = ""
) -> bytes:
    lines = [
        f"{method} {path or route} HTTP/1.1",
        "Host: test",
        "Content-Type: application/json",
        f"Authorization: {authorization}",
        *fields,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def authorization_for(route: str, world: World, county: County) -> str:
    if route == "/api/v1/fixes":
        return f"Bearer {world.device_token}"
    if route == "/owntracks":
        return basic(world)
    return f"Bearer {county.admin_token}"


def native_body(minute: int, count: int = 1) -> bytes:
    return orjson.dumps({"fixes": track(recent(minutes=200 - minute), [INSIDE] * count)})


def padded(body: bytes, size: int) -> bytes:
    """``body`` (a JSON object) with blanks before its closing brace, ``size`` bytes long."""
    return body[:-1] + b" " * (size - len(body)) + b"}"


# -- the table -------------------------------------------------------------------------------


def test_every_phone_route_takes_at_most_the_contracts_limit(client: Client) -> None:
    routes = {r.canonical for r in client.app.router.resources()}
    phone = {r for r in routes if r.startswith(PHONE_ROUTES)}
    assert {"/api/v1/fixes", "/osmand/", "/osmand", "/owntracks"} <= phone
    assert PHONE_BODY_LIMIT == MIB
    assert all(body_limit(route) <= PHONE_BODY_LIMIT for route in phone)
    assert body_limit("/api/v1/boundaries/import") == 32 * MIB
    assert set(BODY_LIMITS) <= routes  # no entry for a route that does not exist
    assert DEFAULT_BODY_LIMIT == MIB


# -- over the limit --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route",
    [
        "/api/v1/fixes",
        "/osmand/",
        "/owntracks",
        "/api/v1/org-units",
        "/api/v1/geofences",
        "/api/v1/boundaries/import",
    ],
)
async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    raw: Raw, world: World, county: County, route: str
) -> None:
    limit = body_limit(route)
    head = request_head(
        route, authorization_for(route, world, county), f"Content-Length: {limit + 1}"
    )
    await raw.send(head + b'{"fixes": [')  # the body barely begun
    status, headers, body = await raw.response()
    assert status == 413
    assert body["error"]["code"] == "body_too_large"
    assert f"{limit} bytes" in body["error"]["message"]
    assert headers["connection"] == "close"
    assert headers["x-request-id"]


async def test_the_issues_eight_megabytes_of_blanks_are_refused(
    raw: Raw, world: World, county: County
) -> None:
    blanks = padded(native_body(0), 8_000_000)
    await raw.send(
        request_head(
            "/api/v1/fixes", f"Bearer {world.device_token}", f"Content-Length: {len(blanks)}"
        )
    )
    status, _, body = await raw.response()
    assert (status, body["error"]["code"]) == (413, "body_too_large")


async def test_the_limit_itself_is_accepted_on_either_path(raw: Raw, world: World) -> None:
    at_limit = padded(native_body(10, 2), PHONE_BODY_LIMIT)
    auth = f"Bearer {world.device_token}"
    # Plain: answered by the front itself (no Server header).
    await raw.send(
        request_head("/api/v1/fixes", auth, f"Content-Length: {len(at_limit)}") + at_limit
    )
    status, headers, body = await raw.response()
    assert (status, body["accepted"]) == (200, 2)
    assert "server" not in headers
    # Chunked: aiohttp's, with the same limit.
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(at_limit), at_limit)
    await raw.send(request_head("/api/v1/fixes", auth, "Transfer-Encoding: chunked") + chunked)
    status, headers, body = await raw.response()
    assert (status, body["duplicates"]) == (200, 2)
    assert "aiohttp" in headers["server"]
    # One byte more is refused.
    over = at_limit + b" "
    await raw.send(request_head("/api/v1/fixes", auth, f"Content-Length: {len(over)}") + over)
    status, _, body = await raw.response()
    assert (status, body["error"]["code"]) == (413, "body_too_large")


@pytest.mark.parametrize("route", ["/api/v1/fixes", "/owntracks", "/api/v1/org-units"])
async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    raw: Raw, world: World, county: County, route: str
) -> None:
    await raw.send(
        request_head(route, authorization_for(route, world, county), "Transfer-Encoding: chunked")
    )
    chunk = b" " * (64 * 1024)
    for _ in range(body_limit(route) // len(chunk) + 1):
        await raw.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
    # The body has not ended (no last chunk), and the answer is already there.
    status, headers, body = await raw.response()
    assert (status, body["error"]["code"]) == (413, "body_too_large")
    assert headers["connection"] == "close"


async def test_a_compressed_body_is_measured_as_it_inflates(raw: Raw, world: World) -> None:
    # 4 MiB of blanks in 4 KB of gzip: the limit applies to what the body decompresses to.
    bomb = gzip.compress(padded(native_body(20), 4 * MIB))
    head = request_head(
        "/api/v1/fixes",
        f"Bearer {world.device_token}",
        "Content-Encoding: gzip",
        f"Content-Length: {len(bomb)}",
    )
    await raw.send(head + bomb)
    status, _, body = await raw.response()
    assert (status, body["error"]["code"]) == (413, "body_too_large")


async def test_the_boundaries_import_takes_files_over_a_mebibyte(
    client: Client, county: County
) -> None:
    datav = shared_data(*DATAV_BEIJING).read_bytes()
    body = padded(datav.strip(), 3 * MIB)
    resp = await client.post(
        "/api/v1/boundaries/import?crs=gcj02",
        data=io.BytesIO(body),
        headers={
            "Authorization": f"Bearer {county.admin_token}",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["imported"] == 16


# -- invalid UTF-8 and deep nesting ----------------------------------------------------------

GOOD_FIX = b'"ts":%d,"lat":39.9,"lon":116.3'


def bad_utf8_fix(ms: int) -> bytes:
    return b'{"fixes":[{' + GOOD_FIX % ms + b',"id":"a\xff\xfe"}]}'


def deep_fix(ms: int) -> bytes:
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    return b'{"fixes":[{' + GOOD_FIX % ms + b',"extra":' + deep + b"}]}"


def recent_ms() -> int:
    return int(recent(minutes=30).timestamp() * 1000)


@pytest.mark.parametrize(
    ("make", "code"), [(bad_utf8_fix, "invalid_utf8"), (deep_fix, "too_deeply_nested")]
)
async def test_native_uploads_name_the_fault_at_the_front_and_in_aiohttp(
    raw: Raw, world: World, make: Any, code: str
) -> None:
    body = make(recent_ms())
    auth = f"Bearer {world.device_token}"
    await raw.send(request_head("/api/v1/fixes", auth, f"Content-Length: {len(body)}") + body)
    status, headers, answer = await raw.response()
    assert (status, answer["error"]["code"]) == (400, code)
    assert "server" not in headers  # the front's own answer
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    await raw.send(request_head("/api/v1/fixes", auth, "Transfer-Encoding: chunked") + chunked)
    status, headers, answer = await raw.response()
    assert (status, answer["error"]["code"]) == (400, code)
    assert "aiohttp" in headers["server"]


def osmand_location(fault: bytes, world: World) -> bytes:
    return (
        b'{"device_id":"%b","location":{"timestamp":"2026-01-01T00:00:00Z",'
        b'"coords":{"latitude":39.9,"longitude":116.3},"extra":%b}}'
        % (world.osmand_id.encode(), fault)
    )


def owntracks_message(fault: bytes, world: World) -> bytes:
    return b'{"_type":"location","lat":39.9,"lon":116.3,"tst":1767225600,"x":%b}' % fault


def officer_document(fault: bytes, world: World) -> bytes:
    return b'{"code":"x","name":%b}' % fault


FAULTS = {
    "invalid_utf8": b'"caf\xe9"',
    "too_deeply_nested": b"[" * 5000 + b"]" * 5000,
}
BODY_ROUTES = [
    ("/osmand/", osmand_location),
    ("/owntracks", owntracks_message),
    ("/api/v1/auth/token", officer_document),
    ("/api/v1/org-units", officer_document),
    ("/api/v1/geofences", officer_document),
    ("/api/v1/subjects", officer_document),
    ("/api/v1/boundaries/import", officer_document),
]


@pytest.mark.parametrize("code", sorted(FAULTS))
@pytest.mark.parametrize(("route", "make"), BODY_ROUTES, ids=[r for r, _ in BODY_ROUTES])
async def test_every_route_reading_a_body_names_the_fault(
    client: Client, world: World, county: County, route: str, make: Any, code: str
) -> None:
    resp = await client.post(
        route,
        data=make(FAULTS[code], world),
        headers={
            "Authorization": authorization_for(route, world, county),
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == code


async def test_a_timestamp_of_thousands_of_digits_is_a_refused_fix(raw: Raw, world: World) -> None:
    # A plain query: the front answers it (it used to end in a 500 there and in aiohttp).
    path = f"/osmand/?id={world.osmand_id}&lat=39.9&lon=116.3&timestamp={'1' * 4400}"
    await raw.send(request_head("/osmand/", "", method="GET", path=path))
    status, headers, body = await raw.response()
    assert (status, body["rejected"]) == (200, [{"index": 0, "reason": "bad_timestamp"}])
    assert "server" not in headers


# -- no body makes a 5xx ---------------------------------------------------------------------


async def fuzz_route(
    client: Client,
    route: str,
    headers: dict[str, str],
    bodies: st.SearchStrategy[bytes],
    examples: int = 40,
) -> None:
    """Post ``bodies`` drawn by hypothesis (run in a worker thread, so this loop serves the
    requests) and require an answer below 500 in the error shape."""
    loop = asyncio.get_running_loop()

    async def post(body: bytes) -> tuple[int, bytes]:
        resp = await client.post(route, data=body, headers=headers)
        return resp.status, await resp.read()

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bodies)
    def never_5xx(body: bytes) -> None:
        status, answer = asyncio.run_coroutine_threadsafe(post(body), loop).result(30)
        assert status < 500, (status, answer)
        if status >= 400:
            error = orjson.loads(answer)["error"]
            assert isinstance(error["code"], str)
            assert isinstance(error["message"], str)

    await asyncio.to_thread(never_5xx)


async def test_no_native_body_is_a_5xx(client: Client, world: World) -> None:
    headers = {"Authorization": f"Bearer {world.device_token}", "Content-Type": "application/json"}
    await fuzz_route(client, "/api/v1/fixes", headers, st.one_of(native_bodies, hostile_bytes))


async def test_no_osmand_body_is_a_5xx(client: Client, world: World) -> None:
    json_bodies = st.one_of(osmand_bodies, hostile_bytes)
    await fuzz_route(client, "/osmand/", {"Content-Type": "application/json"}, json_bodies)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    await fuzz_route(client, "/osmand/", form, hostile_bytes)


async def test_no_owntracks_body_is_a_5xx(client: Client, world: World) -> None:
    headers = {"Authorization": basic(world), "Content-Type": "application/json"}
    await fuzz_route(client, "/owntracks", headers, st.one_of(owntracks_bodies, hostile_bytes))


def quoted(*texts: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from([orjson.dumps(text) for text in texts])


def array_of(
    items: st.SearchStrategy[bytes], max_size: int, min_size: int = 1
) -> st.SearchStrategy[bytes]:
    return st.lists(items, min_size=min_size, max_size=max_size).map(
        lambda xs: b"[" + b",".join(xs) + b"]"
    )


position = st.one_of(
    st.tuples(st.floats(116, 117), st.floats(39, 41)).map(lambda p: orjson.dumps(list(p))),
    array_of(num(-200, 200), 3, min_size=2),
)


@st.composite
def square(draw: st.DrawFn) -> bytes:
    """A closed ring around a point near Beijing, of any size (a degenerate one included)."""
    lon, lat = draw(st.floats(116, 117)), draw(st.floats(39, 41))
    side = draw(st.one_of(st.floats(0.001, 0.5), st.floats(0, 1e6)))
    corners = [(lon, lat), (lon + side, lat), (lon + side, lat + side), (lon, lat + side)]
    return orjson.dumps([[list(c) for c in [*corners, corners[0]]]])


window = fix_shaped(
    {
        "days": array_of(st.integers(1, 7).map(lambda n: str(n).encode()), 8),
        "start": quoted("08:00", "24:00", "7:5", "23:59:60"),
        "end": quoted("18:00", "00:00", "-1"),
    },
    extras=0,
)
schedule = fix_shaped({"windows": array_of(window, 3)}, extras=0)
crs = quoted("wgs84", "gcj02", "bd09", "utm")


def officer_documents(world: World) -> dict[str, st.SearchStrategy[bytes]]:
    """Org units, fences and subjects close to their shapes, with hostile values among them,
    by the route that takes them."""
    county, station = quoted(world.county), quoted(world.station)
    fence = {"name": quoted("区域"), "org_unit": county, "crs": crs}
    return {
        "/api/v1/org-units": fix_shaped(
            {
                "code": st.from_regex(r"[A-Za-z0-9_.-]{1,70}", fullmatch=True).map(orjson.dumps),
                "name": st.text(max_size=10).map(orjson.dumps),
                "parent_code": county,
                "timezone": quoted("Asia/Shanghai", "UTC", "Mars/Olympus", "../../etc/passwd", ""),
            }
        ),
        "/api/v1/geofences": st.one_of(
            fix_shaped(
                fence
                | {
                    "kind": quoted("activity_area", "exclusion"),
                    "geometry": fix_shaped(
                        {
                            "type": quoted("Polygon", "MultiPolygon", "LineString"),
                            "coordinates": st.one_of(square(), array_of(square(), 2)),
                        },
                        extras=0,
                    ),
                    "schedule": schedule,
                }
            ),
            fix_shaped(
                fence
                | {
                    "kind": quoted("home", "exclusion"),
                    "geometry": fix_shaped(
                        {"type": quoted("Point"), "coordinates": position}, extras=0
                    ),
                    "radius_m": st.one_of(num(1, 5000), num(-10, 1e7), quoted("5")),
                }
            ),
            fix_shaped(
                fence
                | {
                    "kind": quoted("activity_area", "exclusion"),
                    "adcodes": array_of(quoted("110101", "999999", "110000", ""), 3),
                }
            ),
        ),
        "/api/v1/subjects": fix_shaped(
            {
                "name": quoted("张三"),
                "org_unit": station,
                "supervision_level": quoted("strict", "normal", "lenient"),
                "category": quoted("probation", "parole", "control"),
                "term_start": st.one_of(
                    quoted("2026-01-01", "2026-02-30", "0000-01-01"), num(-1e20, 1e20)
                ),
                "term_end": st.one_of(
                    quoted("2027-12-31", "9999-12-31T23:59:59+14:00"), num(-1e20, 1e20)
                ),
                "activity_area_id": st.sampled_from(
                    [str(world.area_id).encode(), b"-1", b"9223372036854775808"]
                ),
                "exclusion_zone_ids": array_of(st.sampled_from([b"1", b"2", b"1e3"]), 3, 0),
                "home": fix_shaped(
                    {
                        "lat": num(-100, 100),
                        "lon": num(-200, 200),
                        "crs": crs,
                        "radius_m": st.one_of(num(1, 5000), num(-1, 6000)),
                    },
                    extras=0,
                ),
                "curfew": window,
            }
        ),
    }


async def test_no_officer_body_is_a_5xx(client: Client, county: County, world: World) -> None:
    headers = {"Authorization": f"Bearer {county.admin_token}", "Content-Type": "application/json"}
    for route, documents in officer_documents(world).items():
        await fuzz_route(client, route, headers, documents, examples=60)
    await fuzz_route(client, "/api/v1/org-units", headers, hostile_bytes)


async def fuzz_method(
    client: Client,
    method: str,
    route: str,
    headers: dict[str, str],
    bodies: st.SearchStrategy[bytes],
    examples: int = 40,
) -> None:
    """:func:`fuzz_route` for any method (PUT, PATCH): every answer below 500, in the error
    shape."""
    loop = asyncio.get_running_loop()

    async def send(body: bytes) -> tuple[int, bytes]:
        resp = await client.request(method, route, data=body, headers=headers)
        return resp.status, await resp.read()

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bodies)
    def never_5xx(body: bytes) -> None:
        status, answer = asyncio.run_coroutine_threadsafe(send(body), loop).result(30)
        assert status < 500, (status, answer)
        if status >= 400:
            error = orjson.loads(answer)["error"]
            assert isinstance(error["code"], str)
            assert isinstance(error["message"], str)

    await asyncio.to_thread(never_5xx)


instant = st.one_of(
    quoted("2026-12-06T08:00:00+08:00", "2026-02-30", "2026-12-06", "9999-12-31T23:59:59Z", ""),
    num(-1e20, 1e20),
)


async def test_no_app_body_is_a_5xx(client: Client, county: County, world: World) -> None:
    """The subject's app: answers, leave applications and reports, message receipts."""
    officer = {"Authorization": f"Bearer {county.admin_token}"}
    resp = await client.post(
        f"/api/v1/subjects/{world.subject_id}/challenges",
        json={"answer_within_s": 3600},
        headers=officer,
    )
    assert resp.status == 201, await resp.text()
    challenge = (await resp.json())["id"]
    headers = {"Authorization": f"Bearer {world.device_token}", "Content-Type": "application/json"}
    point = {"lat": num(-100, 100), "lon": num(-200, 200), "accuracy_m": num(-1, 1e9)}
    documents = {
        f"/api/v1/me/checkins/{challenge}": fix_shaped(
            point
            | {
                "ts": instant,
                "crs": crs,
                "mock": st.sampled_from([b"true", b"false", b"1", b"null"]),
                "face": fix_shaped(
                    {
                        "score": num(-1, 2),
                        "liveness": st.sampled_from([b"true", b"false", b'"yes"']),
                        "vendor": quoted("demo", ""),
                    },
                    extras=0,
                ),
                "photo_sha256": quoted("a" * 64, "z" * 64, "abc", ""),
            }
        ),
        "/api/v1/me/leave": fix_shaped(
            {
                "destination": st.one_of(
                    fix_shaped({"adcodes": array_of(quoted("120000", "999999", ""), 3)}, extras=0),
                    fix_shaped({"geometry": fix_shaped({"type": quoted("Polygon", "Point")})}),
                ),
                "reason": quoted("medical", "family", "holiday"),
                "note": quoted("复诊", ""),
                "start": instant,
                "end": instant,
            }
        ),
        "/api/v1/me/leave/1/reports": fix_shaped(
            point | {"kind": quoted("arrival", "departure", "lunch"), "ts": instant}
        ),
    }
    for route, bodies in documents.items():
        await fuzz_route(client, route, headers, st.one_of(bodies, hostile_bytes), examples=50)
    await fuzz_route(client, "/api/v1/me/messages/1/read", headers, hostile_bytes, examples=20)


async def test_no_new_officer_body_is_a_5xx(client: Client, county: County, world: World) -> None:
    """Officers, a subject's changes and schedule, challenges, reviews, leave decisions."""
    headers = {"Authorization": f"Bearer {county.admin_token}", "Content-Type": "application/json"}
    subject = f"/api/v1/subjects/{world.subject_id}"
    ids = st.sampled_from([b"1", b"-1", b"null", b'"7"', b"9223372036854775808"])
    posts = {
        "/api/v1/officers": fix_shaped(
            {
                "username": quoted("ofc", "", "a" * 300),
                "password": quoted("long-enough-pass", "short"),
                "role": quoted("officer", "king"),
                "org_unit": quoted(world.station, "nowhere"),
                "phone": quoted("13800138000", "x"),
            }
        ),
        f"{subject}/challenges": fix_shaped({"answer_within_s": num(-1, 1e12)}),
        "/api/v1/checkins/1/review": fix_shaped({"decision": quoted("passed", "maybe")}),
        "/api/v1/leave/1/approve": fix_shaped({"note": quoted("同意", "")}),
        "/api/v1/leave/1/reject": fix_shaped({"note": quoted("不同意", "")}),
        f"{subject}/messages": fix_shaped({"text": quoted("请回电", "")}),
    }
    for route, bodies in posts.items():
        await fuzz_route(client, route, headers, st.one_of(bodies, hostile_bytes), examples=30)
    patch = fix_shaped(
        {
            "supervision_level": quoted("strict", "harsh"),
            "responsible_officer_id": ids,
            "responsible_supervisor_id": ids,
            "reason": quoted("复查", ""),
        }
    )
    await fuzz_method(client, "PATCH", subject, headers, st.one_of(patch, hostile_bytes), 30)
    await fuzz_method(
        client,
        "PUT",
        f"{subject}/checkin-schedule",
        headers,
        st.one_of(schedule, hostile_bytes),
        30,
    )
