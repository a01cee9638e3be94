"""The native ``POST /api/v1/fixes`` decoder: shapes, units, per-fix rejections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from correction_monitor.domain.fixes import RawFix, Rejection
from correction_monitor.ingest.protocols import (
    DECODE_ERROR_CODES,
    REJECTION_REASONS,
    DecodeError,
    decode_native,
)
from correction_monitor.ingest.protocols.fields import from_epoch_ms

pytestmark = pytest.mark.unit

GOOD: dict[str, Any] = {"ts": "2024-05-01T08:00:00Z", "lat": 39.9042, "lon": 116.4074}


def body(*fixes: Any) -> bytes:
    return orjson.dumps({"fixes": list(fixes)})


def only_fix(fix: dict[str, Any]) -> RawFix:
    decoded = decode_native(body(fix))
    assert decoded.rejected == []
    assert decoded.indexes == [0]
    return decoded.fixes[0]


def test_minimal_fix_has_defaults() -> None:
    fix = only_fix(GOOD)
    assert fix == RawFix(ts=datetime(2024, 5, 1, 8, tzinfo=UTC), lat=39.9042, lon=116.4074)
    assert fix.ts.tzinfo is UTC


def test_every_field_is_mapped() -> None:
    fix = only_fix(
        {
            "id": "a1",
            "ts": "2024-05-01T16:00:00.250+08:00",
            "lat": 31.2304,
            "lon": 121.4737,
            "accuracy_m": 12.5,
            "crs": "gcj02",
            "speed_mps": 1.4,
            "bearing": 270,
            "altitude_m": -3,
            "battery": 55,
            "provider": "fused",
            "mock": True,
            "something_newer": {"ignored": True},
        }
    )
    assert fix == RawFix(
        ts=datetime(2024, 5, 1, 8, 0, 0, 250_000, tzinfo=UTC),
        lat=31.2304,
        lon=121.4737,
        accuracy_m=12.5,
        crs="gcj02",
        client_id="a1",
        speed_mps=1.4,
        bearing=270.0,
        altitude_m=-3.0,
        battery_pct=55.0,
        provider="fused",
        mock=True,
    )
    assert type(fix.bearing) is float
    assert type(fix.altitude_m) is float


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2016-01-27T18:55:47Z", datetime(2016, 1, 27, 18, 55, 47, tzinfo=UTC)),
        ("2016-01-28T02:55:47+08:00", datetime(2016, 1, 27, 18, 55, 47, tzinfo=UTC)),
        ("2016-01-27T13:55:47.5-05:00", datetime(2016, 1, 27, 18, 55, 47, 500_000, tzinfo=UTC)),
        ("2025-06-15T13:45:12.862Z", datetime(2025, 6, 15, 13, 45, 12, 862_000, tzinfo=UTC)),
        (1442068686579, datetime(2015, 9, 12, 14, 38, 6, 579_000, tzinfo=UTC)),
        ("1442068686579", datetime(2015, 9, 12, 14, 38, 6, 579_000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_timestamps_become_utc(ts: object, expected: datetime) -> None:
    fix = only_fix({**GOOD, "ts": ts})
    assert fix.ts == expected
    assert fix.ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("crs", "expected"),
    [("wgs84", "wgs84"), ("GCJ-02", "gcj02"), ("BD09", "bd09"), ("bd-09", "bd09"), (None, "wgs84")],
)
def test_crs_names_are_normalised(crs: str | None, expected: str) -> None:
    assert only_fix({**GOOD, "crs": crs}).crs == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("x-1", "x-1"), (17, "17"), (17.0, "17"), (2.5, "2.5"), ("", None)]
)
def test_client_id_is_a_string(raw: object, expected: str | None) -> None:
    assert only_fix({**GOOD, "id": raw}).client_id == expected


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("speed_mps", -1, "speed_mps", None),
        ("speed_mps", 0, "speed_mps", 0.0),
        ("bearing", -1, "bearing", None),
        ("bearing", 360, "bearing", 0.0),
        ("battery", -1, "battery_pct", None),
        ("battery", 100, "battery_pct", 100.0),
        ("accuracy_m", 0, "accuracy_m", 0.0),
        ("accuracy_m", 4800, "accuracy_m", 4800.0),
        ("provider", "", "provider", None),
        ("mock", False, "mock", False),
    ],
)
def test_unknown_and_edge_values(
    field: str, value: object, attribute: str, expected: object
) -> None:
    assert getattr(only_fix({**GOOD, field: value}), attribute) == expected


REFUSED: list[tuple[object, str]] = [
    ({"lat": 1.0, "lon": 2.0}, "missing_field"),
    ({"ts": GOOD["ts"], "lon": 2.0}, "missing_field"),
    ({"ts": GOOD["ts"], "lat": 1.0}, "missing_field"),
    ({**GOOD, "lat": None}, "missing_field"),
    ({**GOOD, "ts": "yesterday"}, "bad_timestamp"),
    ({**GOOD, "ts": "2024-05-01"}, "bad_timestamp"),
    ({**GOOD, "ts": 1e30}, "bad_timestamp"),
    ({**GOOD, "ts": True}, "bad_timestamp"),
    ({**GOOD, "ts": 10**19}, "bad_timestamp"),
    ({**GOOD, "ts": 10**15}, "bad_timestamp"),
    ({**GOOD, "ts": "9999-12-31T23:59:59-01:00"}, "bad_timestamp"),
    ({**GOOD, "lat": "39.9"}, "bad_type"),
    ({**GOOD, "lon": True}, "bad_type"),
    ({**GOOD, "lat": 90.5}, "bad_coordinates"),
    ({**GOOD, "lon": -180.01}, "bad_coordinates"),
    ({**GOOD, "accuracy_m": -1}, "bad_accuracy"),
    ({**GOOD, "accuracy_m": "5"}, "bad_type"),
    ({**GOOD, "crs": "utm50n"}, "bad_crs"),
    ({**GOOD, "crs": 4326}, "bad_crs"),
    ({**GOOD, "speed_mps": "fast"}, "bad_type"),
    ({**GOOD, "bearing": 361}, "bad_value"),
    ({**GOOD, "battery": 101}, "bad_value"),
    ({**GOOD, "altitude_m": [1]}, "bad_type"),
    ({**GOOD, "mock": "yes"}, "bad_type"),
    ({**GOOD, "provider": 3}, "bad_type"),
    ({**GOOD, "id": "x" * 129}, "bad_value"),
    ({**GOOD, "id": ["a"]}, "bad_type"),
    ([GOOD], "bad_type"),
    ("fix", "bad_type"),
]


@pytest.mark.parametrize(("fix", "reason"), REFUSED)
def test_bad_fix_is_rejected_and_neighbours_kept(fix: object, reason: str) -> None:
    decoded = decode_native(body(GOOD, fix, {**GOOD, "id": "third"}))
    assert decoded.rejected == [Rejection(index=1, reason=reason)]
    assert decoded.indexes == [0, 2]
    assert [f.client_id for f in decoded.fixes] == [None, "third"]
    assert decoded.device_ref is None


def test_every_reason_used_is_declared() -> None:
    used = {reason for _, reason in REFUSED}
    assert used <= set(REJECTION_REASONS)
    assert len(set(REJECTION_REASONS)) == len(REJECTION_REASONS)


def test_indexes_follow_the_request() -> None:
    fixes = [GOOD if i % 3 else {**GOOD, "lat": 99} for i in range(10)]
    decoded = decode_native(body(*fixes))
    assert [r.index for r in decoded.rejected] == [0, 3, 6, 9]
    assert decoded.indexes == [1, 2, 4, 5, 7, 8]
    assert len(decoded.fixes) == len(decoded.indexes)


def test_empty_batch() -> None:
    decoded = decode_native(b'{"fixes": []}')
    assert (decoded.fixes, decoded.rejected, decoded.indexes) == ([], [], [])


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "malformed_json"),
        (b"{fixes: []}", "malformed_json"),
        (b'{"fixes": [1e400]}', "malformed_json"),
        (b"\xff\xfe", "invalid_utf8"),
        (b"[]", "invalid_body"),
        (b"{}", "invalid_body"),
        (b'{"fixes": {"ts": 1}}', "invalid_body"),
        (b'{"fixes": null}', "invalid_body"),
    ],
)
def test_unusable_request_raises(raw: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_native(raw)
    assert caught.value.code == code
    assert code in DECODE_ERROR_CODES
    assert isinstance(caught.value, ValueError)
    assert caught.value.message


def test_too_many_fixes() -> None:
    assert len(decode_native(body(*[GOOD] * 3), max_fixes=3).fixes) == 3
    with pytest.raises(DecodeError) as caught:
        decode_native(body(*[GOOD] * 4), max_fixes=3)
    assert caught.value.code == "too_many_fixes"
    with pytest.raises(DecodeError):
        decode_native(body(*[GOOD] * 1001))


@given(ms=st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_epoch_milliseconds_are_exact(ms: int) -> None:
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert from_epoch_ms(ms) == expected


@given(
    lat=st.floats(min_value=-90, max_value=90),
    lon=st.floats(min_value=-180, max_value=180),
    ms=st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999),
    accuracy=st.none() | st.floats(min_value=0, max_value=1e6),
)
def test_valid_fixes_round_trip(lat: float, lon: float, ms: int, accuracy: float | None) -> None:
    fix = only_fix({"ts": ms, "lat": lat, "lon": lon, "accuracy_m": accuracy})
    assert (fix.lat, fix.lon, fix.accuracy_m) == (lat, lon, accuracy)
    assert fix.ts == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


@given(lat=st.floats(allow_nan=False, allow_infinity=False), lon=st.floats(-180, 180))
def test_latitude_outside_the_earth_is_refused(lat: float, lon: float) -> None:
    decoded = decode_native(body({**GOOD, "lat": lat, "lon": lon}))
    if -90 <= lat <= 90:
        assert decoded.indexes == [0]
    else:
        assert decoded.rejected == [Rejection(0, "bad_coordinates")]


def test_iso_time_without_offset_reads_as_utc_and_float_epoch_ms_is_accepted() -> None:
    naive = only_fix({**GOOD, "ts": "2024-05-01T08:00:00"})
    assert naive.ts == datetime(2024, 5, 1, 8, tzinfo=UTC)
    fractional = only_fix({**GOOD, "ts": 1714550400123.6})
    assert fractional.ts == datetime(2024, 5, 1, 8, 0, 0, 124000, tzinfo=UTC)
