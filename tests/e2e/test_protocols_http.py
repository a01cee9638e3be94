"""Phone protocols over HTTP: Traccar Client (OsmAnd), OwnTracks and the native batch API.

The OsmAnd requests are Traccar's own decoder test strings (tests/unit/protocols/data, see
its README for source and licence), replayed against ``/osmand/`` with the device id
replaced by an enrolled one. Their timestamps are years old and the policy refuses fixes
older than ``max_age_s`` (7 days), so each request is replayed twice: as sent (the fix must
be refused as ``too_old``) and with its timestamp rewritten to a recent instant in the same
notation (the fix must then be stored where and when the request says).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers
from tests.e2e.helpers import (
    INSIDE,
    World,
    make_world,
    post_fixes,
    recent,
    track,
    track_of,
)

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "unit" / "protocols" / "data"
OWNTRACKS = DATA / "owntracks_json_schema"
DEVICE_KEYS = ("id", "deviceid", "device_id")


@dataclass(frozen=True)
class TraccarRequest:
    """One request string of Traccar's OsmAnd decoder test."""

    number: int
    method: str
    query: list[tuple[str, str]]  # decoded query parameters, repeated names kept
    body: dict[str, Any] | None  # the JSON body of a JSON POST

    @property
    def is_json(self) -> bool:
        return self.body is not None

    def params(self) -> dict[str, str]:
        return dict(self.query)

    @property
    def names_device(self) -> bool:
        if self.body is not None:
            return any(k in self.body for k in DEVICE_KEYS)
        return any(k in self.params() for k in DEVICE_KEYS)

    @property
    def position(self) -> tuple[float, float] | None:
        """(lat, lon) the request reports, None when it has no coordinates."""
        if self.body is not None:
            coords = self.body["location"]["coords"]
            return float(coords["latitude"]), float(coords["longitude"])
        p = self.params()
        if "lat" in p and "lon" in p:
            return float(p["lat"]), float(p["lon"])
        if "location" in p:
            lat, lon = p["location"].split(",")[:2]
            return float(lat), float(lon)
        return None

    @property
    def has_timestamp(self) -> bool:
        if self.body is not None:
            return "timestamp" in self.body["location"]
        return "timestamp" in self.params()

    def with_device(self, device: str) -> TraccarRequest:
        if self.body is not None:
            body = dict(self.body)
            for key in DEVICE_KEYS:
                if key in body:
                    body[key] = device
            return TraccarRequest(self.number, self.method, self.query, body)
        query = [(k, device if k in DEVICE_KEYS else v) for k, v in self.query]
        return TraccarRequest(self.number, self.method, query, None)

    def at(self, moment: datetime) -> TraccarRequest:
        """The same request with its timestamp moved to ``moment``, in the same notation."""
        if self.body is not None:
            location = dict(self.body["location"])
            location["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            return TraccarRequest(
                self.number, self.method, self.query, self.body | {"location": location}
            )
        query = [(k, _same_notation(v, moment) if k == "timestamp" else v) for k, v in self.query]
        return TraccarRequest(self.number, self.method, query, None)


def _same_notation(original: str, moment: datetime) -> str:
    if original.isdigit():
        # Traccar reads integers below 2**31 - 1 as seconds, larger ones as milliseconds.
        if int(original) < 2**31 - 1:
            return str(int(moment.timestamp()))
        return str(int(moment.timestamp() * 1000))
    if "T" in original:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%d %H:%M:%S")  # the decoder reads it as UTC


def _load_traccar() -> list[TraccarRequest]:
    path = DATA / "traccar_osmand_requests.jsonl"
    requests = []
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    for number, line in enumerate(lines):
        raw = json.loads(line)
        if raw["http_method"] == "POST":
            requests.append(TraccarRequest(number, "POST", [], json.loads(raw["body"])))
        else:
            _, _, query = raw["path"].partition("?")
            requests.append(
                TraccarRequest(number, "GET", parse_qsl(query, keep_blank_values=True), None)
            )
    return requests


TRACCAR = _load_traccar()
# Each query-form request goes as a GET query and as a url-encoded POST form.
FORMS = [
    (req, form) for req in TRACCAR for form in (["json"] if req.is_json else ["get", "post_form"])
]


async def _osmand(client: TestClient[Any, Any], req: TraccarRequest, form: str) -> Any:
    if form == "json":
        return await client.post("/osmand/", json=req.body)
    if form == "get":
        return await client.get("/osmand/?" + urlencode(req.query))
    return await client.post("/osmand/", data=req.query)


@pytest.fixture(scope="module")
async def phone(client: TestClient[Any, Any], officers: Officers) -> World:
    """One enrolled phone shared by the protocol tests (each uses its own fix times)."""
    return await make_world(client, officers)


def _slot(req: TraccarRequest, form: str) -> datetime:
    """A distinct recent second for each (request, form), so no replay is a duplicate."""
    offset = req.number * 3 + ["json", "get", "post_form"].index(form)
    return recent(minutes=300) + timedelta(minutes=offset)


def test_all_traccar_requests_loaded() -> None:
    assert len(TRACCAR) == 15
    assert len(FORMS) == 26


@pytest.mark.parametrize(("req", "form"), FORMS, ids=[f"{r.number}-{f}" for r, f in FORMS])
async def test_traccar_request_with_recent_time_is_stored(
    client: TestClient[Any, Any], phone: World, req: TraccarRequest, form: str
) -> None:
    moment = _slot(req, form)
    sent = req.with_device(phone.osmand_id).at(moment)
    before = datetime.now(UTC)
    resp = await _osmand(client, sent, form)
    after = datetime.now(UTC)
    body = await resp.json()
    if not req.names_device:
        assert resp.status == 400, body
        assert body["error"]["code"] == "missing_device_id"
        return
    assert resp.status == 200, body
    if req.position is None:
        # Cell/Wi-Fi only: the device reports, but there is no position to store.
        assert body == {
            "accepted": 0,
            "duplicates": 0,
            "rejected": [{"index": 0, "reason": "missing_field"}],
        }
        return
    assert body == {"accepted": 1, "duplicates": 0, "rejected": []}
    lat, lon = req.position
    # Without a timestamp the fix is as old as the request, as Traccar does it.
    window = (moment, moment + timedelta(seconds=1)) if req.has_timestamp else (before, after)
    stored = [
        f
        for f in await track_of(client, phone, *window)
        if f["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-7)
    ]
    assert len(stored) == 1, stored
    ts = datetime.fromisoformat(stored[0]["properties"]["ts"].replace("Z", "+00:00"))
    assert window[0] <= ts < window[1]


async def test_original_traccar_requests_are_too_old(
    client: TestClient[Any, Any], phone: World
) -> None:
    """As recorded upstream (years ago) every dated fix is refused, not stored."""
    checked = 0
    for req in TRACCAR:
        if not (req.names_device and req.position and req.has_timestamp):
            continue
        sent = req.with_device(phone.osmand_id)
        resp = await _osmand(client, sent, "json" if req.is_json else "get")
        body = await resp.json()
        assert resp.status == 200, body
        assert body == {
            "accepted": 0,
            "duplicates": 0,
            "rejected": [{"index": 0, "reason": "too_old"}],
        }, req
        checked += 1
    assert checked == 11


async def test_osmand_unknown_device_is_unauthorized(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/osmand/?id=no-such-phone-77&lat=39.9&lon=116.3")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_osmand_without_device_id_is_bad_request(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/osmand/", data={"lat": "39.9", "lon": "116.3"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "missing_device_id"


# -- OwnTracks -------------------------------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _owntracks_payload(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((OWNTRACKS / name).read_text())
    return payload


async def test_owntracks_location_is_stored(client: TestClient[Any, Any], phone: World) -> None:
    moment = recent(minutes=20)
    message = _owntracks_payload("location-5s.json") | {"tst": int(moment.timestamp())}
    resp = await client.post(
        "/owntracks", json=message, headers=_basic(phone.osmand_id, phone.device_token)
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == []
    stored = await track_of(client, phone, moment, moment + timedelta(seconds=1))
    assert len(stored) == 1
    assert stored[0]["geometry"]["coordinates"] == pytest.approx(
        [message["lon"], message["lat"]], abs=1e-7
    )
    assert stored[0]["properties"]["accuracy_m"] == message["acc"]

    # The app resends after a network failure: a 200 again, and still one stored fix.
    resp = await client.post(
        "/owntracks", json=message, headers=_basic(phone.osmand_id, phone.device_token)
    )
    assert resp.status == 200
    assert len(await track_of(client, phone, moment, moment + timedelta(seconds=1))) == 1


async def test_owntracks_lwt_is_acknowledged(client: TestClient[Any, Any], phone: World) -> None:
    resp = await client.post(
        "/owntracks",
        json=_owntracks_payload("lwt.json"),
        headers=_basic(phone.osmand_id, phone.device_token),
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == []


async def test_owntracks_wrong_password_is_unauthorized(
    client: TestClient[Any, Any], phone: World
) -> None:
    message = _owntracks_payload("location-5s.json") | {"tst": int(recent(10).timestamp())}
    for headers in (_basic(phone.osmand_id, "not-the-token"), _basic("nobody-here", "x"), {}):
        resp = await client.post("/owntracks", json=message, headers=headers)
        assert resp.status == 401, headers
        # The challenge must name the scheme this endpoint takes, or the app cannot answer it.
        assert resp.headers["WWW-Authenticate"].lower().startswith("basic"), headers


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"lat": 200.0}, "bad_coordinates"),
        ({"lat": "61.195709"}, "bad_type"),
        ({"lat": None}, "missing_field"),
    ],
)
async def test_owntracks_invalid_location_is_refused(
    client: TestClient[Any, Any], phone: World, patch: dict[str, Any], reason: str
) -> None:
    moment = recent(minutes=15)
    message = _owntracks_payload("location-5s.json") | {"tst": int(moment.timestamp())} | patch
    resp = await client.post(
        "/owntracks", json=message, headers=_basic(phone.osmand_id, phone.device_token)
    )
    assert 400 <= resp.status < 500
    assert (await resp.json())["error"]["code"] == reason
    assert await track_of(client, phone, moment, moment + timedelta(seconds=1)) == []


# -- native ----------------------------------------------------------------------------------


async def test_native_more_than_1000_fixes_is_413(
    client: TestClient[Any, Any], phone: World
) -> None:
    fixes = track(recent(minutes=1500), [INSIDE] * 1001, step_s=1)
    status, body = await post_fixes(client, phone.device_token, fixes)
    assert status == 413
    assert body["error"]["code"] == "too_many_fixes"
    # Exactly 1000 is within the limit.
    status, body = await post_fixes(client, phone.device_token, fixes[:1000])
    assert status == 200, body
    assert body["accepted"] + body["duplicates"] == 1000


async def test_native_malformed_json_is_400(client: TestClient[Any, Any], phone: World) -> None:
    resp = await client.post(
        "/api/v1/fixes",
        data=b'{"fixes": [{"ts": ',
        headers={
            "Authorization": f"Bearer {phone.device_token}",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"


async def test_native_bad_token_is_401(client: TestClient[Any, Any]) -> None:
    fixes = track(recent(), [INSIDE])
    status, body = await post_fixes(client, "not-a-device-token", fixes)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    resp = await client.post("/api/v1/fixes", json={"fixes": fixes})
    assert resp.status == 401


async def test_native_rejections_carry_index_and_reason(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers)
    now = datetime.now(UTC).replace(microsecond=0)
    good = track(recent(minutes=30), [INSIDE] * 3)
    future = track(now + timedelta(hours=1), [INSIDE])[0]
    too_old = track(now - timedelta(days=8), [INSIDE])[0]
    bad_lat = track(recent(minutes=25), [(116.3, 91.0)])[0]
    bad_crs = track(recent(minutes=24), [INSIDE])[0] | {"crs": "utm50n"}
    batch = [good[0], future, good[1], too_old, bad_lat, good[2], bad_crs]
    status, body = await post_fixes(client, world.device_token, batch)
    assert status == 200, body
    assert body == {
        "accepted": 3,
        "duplicates": 0,
        "rejected": [
            {"index": 1, "reason": "future_timestamp"},
            {"index": 3, "reason": "too_old"},
            {"index": 4, "reason": "bad_coordinates"},
            {"index": 6, "reason": "bad_crs"},
        ],
    }
    stored = await track_of(client, world)
    assert [f["properties"]["ts"] for f in stored] == [f["ts"].replace("+00:00", "Z") for f in good]


async def test_device_ids_with_nul_are_unknown_not_errors(
    client: TestClient[Any, Any], phone: World
) -> None:
    """A NUL can be written in a URL or a Basic header but never in a stored id."""
    resp = await client.get(f"/osmand/?id={phone.osmand_id}%00&lat=39.9&lon=116.3")
    assert resp.status == 401
    resp = await client.post(
        "/owntracks",
        json=_owntracks_payload("lwt.json"),
        headers=_basic(f"{phone.osmand_id}\x00", phone.device_token),
    )
    assert resp.status == 401


async def test_osmand_unreadable_form_is_bad_request(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/osmand/",
        data=b"--x\r\nContent-Disposition: form-data\r\n\r\n1\r\n--x--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_body"


async def test_osmand_json_batch_reports_each_location_by_index(
    client: TestClient[Any, Any], phone: World
) -> None:
    """Background-geolocation batch sync: a list of locations in one JSON POST."""
    template = TRACCAR[3].body
    assert template is not None
    start = recent(minutes=90)
    locations = []
    for i in range(4):
        location = dict(template["location"])
        location["timestamp"] = (start + timedelta(seconds=60 * i)).isoformat()
        location["uuid"] = f"batch-{start.timestamp():.0f}-{i}"
        locations.append(location)
    locations[2] = {"timestamp": locations[2]["timestamp"], "coords": {"latitude": 95.0}}
    body = {"device_id": phone.osmand_id, "location": locations}
    resp = await client.post("/osmand/", json=body)
    assert resp.status == 200
    assert await resp.json() == {
        "accepted": 3,
        "duplicates": 0,
        "rejected": [{"index": 2, "reason": "missing_field"}],
    }
    resp = await client.post("/osmand/", json=body)
    assert (await resp.json())["duplicates"] == 3
    stored = await track_of(client, phone, start, start + timedelta(minutes=4))
    assert len(stored) == 3


async def test_owntracks_array_stores_its_locations(
    client: TestClient[Any, Any], phone: World
) -> None:
    """Recorder-style arrays mix message types; every location in them is stored."""
    start = recent(minutes=100)
    location = _owntracks_payload("location-5s.json")
    messages = [
        location | {"tst": int(start.timestamp())},
        _owntracks_payload("lwt.json"),
        _owntracks_payload("transition.json"),
        location | {"tst": int(start.timestamp()) + 60},
    ]
    resp = await client.post(
        "/owntracks", json=messages, headers=_basic(phone.osmand_id, phone.device_token)
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == []
    stored = await track_of(client, phone, start, start + timedelta(minutes=2))
    assert len(stored) == 2
