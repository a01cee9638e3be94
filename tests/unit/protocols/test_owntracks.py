"""The OwnTracks HTTP-mode decoder on upstream schema payloads and a real iPhone recording."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from correction_monitor.domain.fixes import RawFix, Rejection
from correction_monitor.ingest.protocols import DecodeError, decode_owntracks

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data"
SCHEMA_TESTS = DATA / "owntracks_json_schema"
SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
SHARED_SCHEMA_TESTS = SHARED_DATA / "protocols" / "owntracks_json_schema"
IPHONE_RECORDING = SHARED_DATA / "protocols" / "owntracks_recorder" / "demo-iphone.rec"


def read_expectations(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return {
        row["file"].removeprefix("test/"): row["expected"]
        for row in csv.DictReader(lines, delimiter="\t")
    }


EXPECTATIONS = read_expectations(SCHEMA_TESTS / "EXPECTATIONS.tsv")

# Why upstream finds each copied invalid payload invalid, as our rejection reason.
INVALID_REASONS = {
    "location-lat-missing.json": "missing_field",
    "transition-illegal-lat.json": "bad_type",
    "lwt-notst.json": "missing_field",
    "object-empty.json": "missing_field",
}


def location_messages(raw: bytes) -> list[dict[str, Any]]:
    """The location messages of a payload, read independently of the decoder."""
    if not raw.strip():
        return []
    parsed = orjson.loads(raw)
    messages = parsed if isinstance(parsed, list) else [parsed]
    return [m for m in messages if m.get("_type") == "location"]


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_schema_payloads(name: str) -> None:
    raw = (SCHEMA_TESTS / name).read_bytes()
    decoded = decode_owntracks(raw)
    assert decoded.device_ref is None
    if EXPECTATIONS[name] == "invalid":
        assert decoded.rejected == [Rejection(0, INVALID_REASONS[name])]
        assert decoded.fixes == []
        return
    assert decoded.rejected == []
    expected = location_messages(raw)
    assert len(decoded.fixes) == len(expected)
    for fix, message in zip(decoded.fixes, expected, strict=True):
        assert (fix.lat, fix.lon) == (message["lat"], message["lon"])
        assert fix.ts == datetime.fromtimestamp(message["tst"], UTC)


def test_every_copied_payload_has_an_expectation() -> None:
    copied = {p.name for p in SCHEMA_TESTS.glob("*.json")}
    assert copied == set(EXPECTATIONS)
    assert {n for n, e in EXPECTATIONS.items() if e == "invalid"} == set(INVALID_REASONS)


def test_all_upstream_valid_payloads_decode_without_rejection() -> None:
    if not SHARED_SCHEMA_TESTS.is_dir():
        pytest.skip(f"shared test data not present at {SHARED_SCHEMA_TESTS}")
    expectations = read_expectations(SHARED_SCHEMA_TESTS / "EXPECTATIONS.tsv")
    valid = [name for name, outcome in expectations.items() if outcome == "valid"]
    assert len(valid) > 40
    for name in valid:
        raw = (SHARED_SCHEMA_TESTS / "test" / name).read_bytes()
        decoded = decode_owntracks(raw)
        assert decoded.rejected == [], name
        assert len(decoded.fixes) == len(location_messages(raw)), name


def test_location_fields_and_units() -> None:
    [fix] = decode_owntracks((SCHEMA_TESTS / "l.json").read_bytes()).fixes
    assert fix == RawFix(
        ts=datetime(2023, 11, 13, 13, 34, 42, tzinfo=UTC),
        lat=52.195913,
        lon=7.688245,
        accuracy_m=35.0,
        client_id="C1:1699882482",
        altitude_m=0.0,
        battery_pct=75.0,
    )
    [fix] = decode_owntracks((SCHEMA_TESTS / "location-5s.json").read_bytes()).fixes
    assert fix.speed_mps == pytest.approx(1 / 3.6)
    assert fix.bearing == 252.0
    # l2.json: acc -1 is "unknown", a known zero velocity stays zero.
    [fix] = decode_owntracks((SCHEMA_TESTS / "l2.json").read_bytes()).fixes
    assert (fix.accuracy_m, fix.speed_mps, fix.bearing) == (None, 0.0, 80.0)


def traccar_bodies() -> list[bytes]:
    lines = (DATA / "traccar_owntracks_requests.jsonl").read_text().splitlines()
    return [orjson.loads(line)["body"].encode() for line in lines if not line.startswith("#")]


@pytest.mark.parametrize("body", traccar_bodies(), ids=range(6))
def test_traccar_requests(body: bytes) -> None:
    message = orjson.loads(body)
    decoded = decode_owntracks(body)
    assert decoded.rejected == []
    assert decoded.indexes == [0]
    [fix] = decoded.fixes
    assert (fix.lat, fix.lon) == (message["lat"], message["lon"])
    assert fix.ts == datetime.fromtimestamp(message["tst"], UTC)
    assert fix.accuracy_m == message.get("acc")
    assert fix.altitude_m == message.get("alt")
    assert fix.battery_pct == message.get("batt")
    assert fix.bearing == message.get("cog")
    assert fix.client_id == f"{message['tid']}:{message['tst']}"
    if "vel" in message:
        assert fix.speed_mps == pytest.approx(message["vel"] / 3.6)
    else:
        assert fix.speed_mps is None


def test_real_iphone_recording() -> None:
    if not IPHONE_RECORDING.is_file():
        pytest.skip(f"shared test data not present at {IPHONE_RECORDING}")
    locations = lwts = 0
    for line in IPHONE_RECORDING.read_text().splitlines():
        payload = line.split("\t")[2].encode()
        message = orjson.loads(payload)
        decoded = decode_owntracks(payload)
        assert decoded.rejected == []
        if message["_type"] == "lwt":
            lwts += 1
            assert isinstance(message["tst"], str)
            assert decoded.fixes == []
            continue
        locations += 1
        [fix] = decoded.fixes
        # Coarse cell fixes of several kilometres are kept as sent.
        assert fix.accuracy_m == message["acc"]
        assert (fix.lat, fix.lon) == (message["lat"], message["lon"])
        assert fix.ts == datetime.fromtimestamp(message["tst"], UTC)
        if message["vel"] == -1:
            assert fix.speed_mps is None
        else:
            assert fix.speed_mps == pytest.approx(message["vel"] / 3.6)
        assert fix.bearing == (None if message["cog"] == -1 else message["cog"])
    assert (locations, lwts) == (23, 2)


LOCATION: dict[str, Any] = {"_type": "location", "lat": 39.9, "lon": 116.4, "tst": 1700000000}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({**LOCATION, "lat": "39.9"}, "bad_type"),
        ({**LOCATION, "lon": None}, "missing_field"),
        ({**LOCATION, "tst": "yesterday"}, "bad_timestamp"),
        ({**LOCATION, "tst": True}, "bad_type"),
        ({**LOCATION, "tst": 10**12}, "bad_timestamp"),
        ({**LOCATION, "lat": -91}, "bad_coordinates"),
        ({**LOCATION, "_type": 7}, "bad_type"),
        ({"_type": "waypoint", "lat": "1", "lon": 2}, "bad_type"),
        ({"_type": "transition", "lat": 1, "lon": 2, "tst": 3}, "missing_field"),
        ("location", "bad_type"),
    ],
)
def test_invalid_message_in_an_array(message: object, reason: str) -> None:
    decoded = decode_owntracks(orjson.dumps([LOCATION, message, {"_type": "lwt", "tst": 1}]))
    assert decoded.rejected == [Rejection(1, reason)]
    assert decoded.indexes == [0]


@pytest.mark.parametrize(
    ("change", "attribute", "expected"),
    [
        ({"tst": "1700000000"}, "ts", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ({"tst": 1700000000.5}, "ts", datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=UTC)),
        ({"acc": 4800}, "accuracy_m", 4800.0),
        ({"acc": 0}, "accuracy_m", None),
        ({"vel": 36}, "speed_mps", 10.0),
        ({"vel": -1}, "speed_mps", None),
        ({"cog": -1}, "bearing", None),
        ({"batt": 150}, "battery_pct", None),
        ({"alt": "high"}, "altitude_m", None),
        ({"tid": ""}, "client_id", None),
        ({}, "client_id", None),
    ],
)
def test_location_optional_fields(change: dict[str, Any], attribute: str, expected: object) -> None:
    [fix] = decode_owntracks(orjson.dumps({**LOCATION, **change})).fixes
    value = getattr(fix, attribute)
    # Unit conversions are inexact in binary floating point.
    assert value == (pytest.approx(expected) if isinstance(expected, float) else expected)


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"_type=location", "malformed_json"), (b"42", "invalid_body"), (b"null", "invalid_body")],
)
def test_unusable_body(raw: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_owntracks(raw)
    assert caught.value.code == code


def test_too_many_messages() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_owntracks(orjson.dumps([LOCATION] * 3), max_fixes=2)
    assert caught.value.code == "too_many_fixes"
