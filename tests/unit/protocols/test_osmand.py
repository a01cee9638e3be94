"""The OsmAnd (Traccar Client) decoder against Traccar's own test requests and edge cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import orjson
import pytest

from correction_monitor.domain.fixes import RawFix, Rejection
from correction_monitor.ingest.protocols import DecodeError, decode_osmand_json, decode_osmand_query

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data"
KNOT = 1852 / 3600
RECEIVED = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


def load_requests() -> list[dict[str, Any]]:
    lines = (DATA / "traccar_osmand_requests.jsonl").read_text().splitlines()
    return [orjson.loads(line) for line in lines if line and not line.startswith("#")]


REQUESTS = load_requests()
QUERIES = [r for r in REQUESTS if r["http_method"] == "GET"]
JSON_POSTS = [r for r in REQUESTS if r["http_method"] == "POST"]


def query_params(path: str) -> dict[str, str]:
    # parse_qsl decodes "+" to a space, as aiohttp does for request.query.
    return dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# What Traccar's test expects of each query request, read off the request string itself:
# device, and (for verifyPosition) the fix. Speed is in knots in this form.
QUERY_EXPECTED: dict[str, tuple[str | None, RawFix | None]] = {
    "/?id=123456&timestamp=1377177267&cell=257,02,16,2224&cell=257,02,16,2223,-90"
    "&wifi=00-14-22-01-23-45,-80&wifi=00-1C-B3-09-85-15,-70": ("123456", None),
    "/?timestamp=1377177267&lat=60.0&lon=30.0": (
        None,
        RawFix(ts=ts("2013-08-22T13:14:27Z"), lat=60.0, lon=30.0),
    ),
    "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z"
    "&hdop=6.0&altitude=224.0&speed=0.0": (
        "902064",
        RawFix(
            ts=ts("2016-01-27T18:55:47Z"),
            lat=42.06288,
            lon=-88.23412,
            accuracy_m=6.0,
            altitude_m=224.0,
            speed_mps=0.0,
        ),
    ),
    "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=1442068686579"
    "&hdop=6.0&altitude=224.0&speed=0.0": (
        "902064",
        RawFix(
            ts=ts("2015-09-12T14:38:06.579Z"),
            lat=42.06288,
            lon=-88.23412,
            accuracy_m=6.0,
            altitude_m=224.0,
            speed_mps=0.0,
        ),
    ),
    "/?lat=49.60688&lon=6.15788&timestamp=2014-06-04+09%3A10%3A11&altitude=384.7"
    "&speed=0.0&id=353861053849681": (
        "353861053849681",
        RawFix(
            ts=ts("2014-06-04T09:10:11Z"),
            lat=49.60688,
            lon=6.15788,
            altitude_m=384.7,
            speed_mps=0.0,
        ),
    ),
    "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0&speed=0.0&bearing=0.0"
    "&altitude=0&hdop=0.0": (
        "123456",
        RawFix(
            ts=ts("2013-08-22T13:14:27Z"),
            lat=60.0,
            lon=30.0,
            speed_mps=0.0,
            bearing=0.0,
            altitude_m=0.0,
        ),
    ),
    "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0": (
        "123456",
        RawFix(ts=ts("2013-08-22T13:14:27Z"), lat=60.0, lon=30.0),
    ),
    "/?lat=60.0&lon=30.0&speed=0.0&heading=0.0&vacc=0&hacc=0&altitude=0&deviceid=123456": (
        "123456",
        RawFix(ts=RECEIVED, lat=60.0, lon=30.0, speed_mps=0.0, bearing=0.0, altitude_m=0.0),
    ),
    "/?id=861001000719969&lat=41.666667&lon=-0.883333&altitude=350.059479&speed=0.000000&batt=87": (
        "861001000719969",
        RawFix(
            ts=RECEIVED,
            lat=41.666667,
            lon=-0.883333,
            altitude_m=350.059479,
            speed_mps=0.0,
            battery_pct=87.0,
        ),
    ),
    "/?id=123456&timestamp=1377177267&location=60.0,30.0": (
        "123456",
        RawFix(ts=ts("2013-08-22T13:14:27Z"), lat=60.0, lon=30.0),
    ),
    "/?id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571"
    "&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24": (
        "123456789012345",
        RawFix(
            ts=ts("2017-09-07T05:56:50Z"),
            lat=40.7232948571,
            lon=-74.0061408571,
            bearing=7.19889788244,
            speed_mps=40 * KNOT,
        ),
    ),
}


def test_every_traccar_request_is_covered() -> None:
    assert len(REQUESTS) == 15
    assert sorted(r["path"] for r in QUERIES) == sorted(QUERY_EXPECTED)
    assert len(JSON_POSTS) == 4


@pytest.mark.parametrize("request_", QUERIES, ids=[r["path"][:48] for r in QUERIES])
def test_traccar_query_requests(request_: dict[str, Any]) -> None:
    device_ref, expected = QUERY_EXPECTED[request_["path"]]
    decoded = decode_osmand_query(query_params(request_["path"]), received_at=RECEIVED)
    assert decoded.device_ref == device_ref
    if expected is None:
        # Cell/Wi-Fi only: the device reports, but there is no position to keep.
        assert request_["verify"] == "verifyNotNull"
        assert decoded.fixes == []
        assert decoded.rejected == [Rejection(0, "missing_field")]
        return
    assert decoded.rejected == []
    assert decoded.indexes == [0]
    [fix] = decoded.fixes
    # Knots to m/s is inexact in binary; compare speed with a tolerance, the rest exactly.
    assert fix.speed_mps == pytest.approx(expected.speed_mps)
    assert fix == replace(expected, speed_mps=fix.speed_mps)
    if device_ref is None:
        # Traccar refuses it (verifyNull) because no device is named; so must the caller.
        assert request_["verify"] == "verifyNull"
    else:
        assert request_["verify"] == "verifyPosition"


def test_speed_in_knots_is_converted() -> None:
    decoded = decode_osmand_query({"id": "1", "lat": "1", "lon": "2", "speed": "40"})
    assert decoded.fixes[0].speed_mps == pytest.approx(20.5778, abs=1e-4)


JSON_EXPECTED: dict[str, RawFix] = {
    "48241179": RawFix(
        ts=ts("2025-06-15T13:45:12.862Z"),
        lat=37.4219983,
        lon=-122.084,
        accuracy_m=5.0,
        speed_mps=0.0,
        altitude_m=5.0,
        battery_pct=100.0,
    ),
    "658765": RawFix(
        ts=ts("2025-05-09T04:11:30.579Z"),
        lat=37.785834,
        lon=-122.406417,
        accuracy_m=5.0,
        client_id="2FB04C65-99CF-42AB-8DD3-EBCB4B108BF8",
        altitude_m=0.0,
        mock=True,
    ),
    "8737767034": RawFix(
        ts=ts("2021-07-21T08:06:34.444Z"),
        lat=-6.1148096,
        lon=106.6837015,
        accuracy_m=3.8,
        client_id="0e9a2473-a9a7-4c00-997b-fb97d2154e75",
        speed_mps=18.67,
        bearing=63.0,
        altitude_m=35.7,
        battery_pct=79.0,
    ),
}


@pytest.mark.parametrize("request_", JSON_POSTS, ids=[str(i) for i in range(len(JSON_POSTS))])
def test_traccar_json_requests(request_: dict[str, Any]) -> None:
    assert request_["content_type"] == "application/json"
    decoded = decode_osmand_json(request_["body"].encode())
    assert decoded.device_ref is not None
    assert decoded.rejected == []
    assert decoded.indexes == [0]
    assert decoded.fixes == [JSON_EXPECTED[decoded.device_ref]]


def json_body(location: Any, **root: Any) -> bytes:
    return orjson.dumps({"device_id": "d1", "location": location, **root})


LOCATION: dict[str, Any] = {
    "timestamp": "2024-05-01T08:00:00Z",
    "coords": {"latitude": 39.9, "longitude": 116.4, "accuracy": 8, "speed": 2, "heading": 90},
}


def test_json_location_list_reports_each_index() -> None:
    bad = {**LOCATION, "coords": {"latitude": "39.9", "longitude": 116.4}}
    decoded = decode_osmand_json(json_body([LOCATION, bad, {**LOCATION, "uuid": "u3"}]))
    assert decoded.indexes == [0, 2]
    assert decoded.rejected == [Rejection(1, "bad_type")]
    assert decoded.fixes[1].client_id == "u3"


def test_json_location_at_the_root() -> None:
    decoded = decode_osmand_json(orjson.dumps({**LOCATION, "device_id": 42}))
    assert decoded.device_ref == "42"
    assert decoded.fixes[0].lat == 39.9


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ({"coords": LOCATION["coords"]}, "missing_field"),
        ({"timestamp": LOCATION["timestamp"]}, "missing_field"),
        ({**LOCATION, "timestamp": "soon"}, "bad_timestamp"),
        ({**LOCATION, "timestamp": 1.5}, "bad_timestamp"),
        ({**LOCATION, "coords": {"latitude": 39.9}}, "missing_field"),
        ({**LOCATION, "coords": {"latitude": 39.9, "longitude": 200}}, "bad_coordinates"),
        ({**LOCATION, "coords": [39.9, 116.4]}, "bad_type"),
        ("here", "bad_type"),
    ],
)
def test_json_bad_location(location: Any, reason: str) -> None:
    decoded = decode_osmand_json(json_body(location))
    assert decoded.rejected == [Rejection(0, reason)]
    assert decoded.fixes == []


def test_json_unknown_values_are_dropped_not_the_fix() -> None:
    coords = {"latitude": 1.0, "longitude": 2.0, "accuracy": -1, "speed": -1, "heading": -1}
    location = {**LOCATION, "coords": {**coords, "altitude": "high", "mock": True}}
    decoded = decode_osmand_json(json_body({**location, "battery": {"level": 3}}))
    [fix] = decoded.fixes
    assert (fix.accuracy_m, fix.speed_mps, fix.bearing, fix.altitude_m) == (None, None, None, None)
    assert fix.battery_pct is None
    assert fix.mock is True


def test_json_epoch_timestamp_follows_traccar_seconds_rule() -> None:
    seconds = decode_osmand_json(json_body({**LOCATION, "timestamp": 1377177267}))
    millis = decode_osmand_json(json_body({**LOCATION, "timestamp": 1377177267000}))
    assert seconds.fixes[0].ts == millis.fixes[0].ts == ts("2013-08-22T13:14:27Z")


def test_json_without_location_is_a_report_without_fix() -> None:
    decoded = decode_osmand_json(b'{"device_id": "d1", "battery": {"level": 0.5}}')
    assert decoded.device_ref == "d1"
    assert decoded.rejected == [Rejection(0, "missing_field")]


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"location=1", "malformed_json"), (b"[1]", "invalid_body"), (b'"x"', "invalid_body")],
)
def test_json_unusable_body(raw: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_osmand_json(raw)
    assert caught.value.code == code


def test_json_too_many_locations() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_osmand_json(json_body([LOCATION] * 3), max_fixes=2)
    assert caught.value.code == "too_many_fixes"


BASE = {"id": "7", "lat": "39.9", "lon": "116.4", "timestamp": "1700000000"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"lat": "north"}, "bad_coordinates"),
        ({"lon": "190"}, "bad_coordinates"),
        ({"lat": "nan"}, "bad_coordinates"),
        ({"lat": "", "lon": ""}, "missing_field"),
        ({"location": "39.9"}, "bad_coordinates"),
        ({"valid": "false"}, "bad_coordinates"),
        ({"valid": "0"}, "bad_coordinates"),
        ({"timestamp": "2014-06-04"}, "bad_timestamp"),
        ({"timestamp": "04/06/2014 09:10:11"}, "bad_timestamp"),
        ({"timestamp": "2014-06-04Tnoon"}, "bad_timestamp"),
        ({"timestamp": "99999999999999999999"}, "bad_timestamp"),
    ],
)
def test_query_refused(change: dict[str, str], reason: str) -> None:
    params = {**BASE, **change}
    if "location" in change:
        del params["lat"], params["lon"]
    decoded = decode_osmand_query(params)
    assert decoded.device_ref == "7"
    assert decoded.rejected == [Rejection(0, reason)]
    assert decoded.fixes == []


@pytest.mark.parametrize(
    ("change", "attribute", "expected"),
    [
        ({"valid": "true"}, "lat", 39.9),
        ({"valid": "1"}, "lat", 39.9),
        ({"mock": "true"}, "mock", True),
        ({"is_mock": "1"}, "mock", True),
        ({"mock": "false"}, "mock", False),
        ({"battery": "55"}, "battery_pct", 55.0),
        ({"batt": "-1"}, "battery_pct", None),
        ({"accuracy": "12", "hdop": "3"}, "accuracy_m", 12.0),
        ({"hdop": "3"}, "accuracy_m", 3.0),
        ({"speed": "fast"}, "speed_mps", None),
        ({"heading": "-1"}, "bearing", None),
        ({"timestamp": "-1"}, "ts", ts("1969-12-31T23:59:59Z")),
        ({"lat": "", "location": "61.5,31.5,100"}, "lat", 61.5),
        ({"timestamp": "2016-01-27T18:55:47+08:00"}, "ts", ts("2016-01-27T10:55:47Z")),
    ],
)
def test_query_fields(change: dict[str, str], attribute: str, expected: object) -> None:
    decoded = decode_osmand_query({**BASE, **change})
    assert getattr(decoded.fixes[0], attribute) == expected


@pytest.mark.parametrize(
    ("params", "device_ref"),
    [
        ({"id": "a", "deviceid": "b"}, "a"),
        ({"id": "", "deviceid": "b"}, "b"),
        ({"device_id": "c"}, "c"),
        ({"id": ""}, None),
    ],
)
def test_query_device_keys(params: dict[str, str], device_ref: str | None) -> None:
    assert decode_osmand_query({**params, "lat": "1", "lon": "1"}).device_ref == device_ref


def test_form_body_decodes_like_the_query() -> None:
    form = b"id=902064&lat=42.06288&lon=-88.23412&timestamp=2014-06-04+09%3A10%3A11&speed=1"
    as_form = decode_osmand_query(dict(parse_qsl(form.decode())))
    as_query = decode_osmand_query(query_params("/?" + form.decode()))
    assert as_form == as_query
    assert as_form.fixes[0].ts == ts("2014-06-04T09:10:11Z")


def test_local_time_zone_for_naive_timestamps() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    decoded = decode_osmand_query({**BASE, "timestamp": "2014-06-04 09:10:11"}, naive_tz=shanghai)
    assert decoded.fixes[0].ts == ts("2014-06-04T01:10:11Z")
    assert decoded.fixes[0].ts.tzinfo is UTC


def test_missing_timestamp_defaults_to_now() -> None:
    params = {k: v for k, v in BASE.items() if k != "timestamp"}
    before = datetime.now(UTC)
    [fix] = decode_osmand_query(params).fixes
    assert before <= fix.ts <= datetime.now(UTC) + timedelta(seconds=1)
    local = datetime(2026, 3, 1, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    [fix] = decode_osmand_query(params, received_at=local).fixes
    assert fix.ts == RECEIVED
    assert fix.ts.tzinfo is UTC
