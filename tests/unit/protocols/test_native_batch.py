"""``decode_native_batch``: the typed array path gives exactly what the per-fix path gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correction_monitor.domain.fixes import FixFlag, Rejection
from correction_monitor.ingest.batch import FixBatch
from correction_monitor.ingest.protocols import DecodeError, decode_native
from correction_monitor.ingest.protocols.native import _fast_batch, decode_native_batch

pytestmark = pytest.mark.unit


def per_fix(body: bytes) -> FixBatch:
    """The reference: the per-fix decoder, then the normalize stage."""
    return decode_native(body).normalized()


def assert_same(a: FixBatch, b: FixBatch) -> None:
    for name in ("index", "ts", "lon", "lat", "accuracy_m", "flags", "key"):
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype, name
        np.testing.assert_array_equal(left, right, err_msg=name)
    assert sorted(a.rejected, key=lambda r: r.index) == sorted(b.rejected, key=lambda r: r.index)


def common_fix(i: int) -> dict[str, Any]:
    return {
        "id": f"f{i}",
        "ts": 1_767_225_600_000 + i * 1000,
        "lat": 39.9 + i * 1e-5,
        "lon": 116.4,
        "accuracy_m": 8 + i,
    }


def test_common_body_takes_the_typed_path_and_matches() -> None:
    body = orjson.dumps({"fixes": [common_fix(i) for i in range(50)]})
    fast = _fast_batch(body, 1000)
    assert fast is not None
    assert_same(fast, per_fix(body))


def test_gcj02_mock_and_integer_ids_match() -> None:
    fixes = [
        {**common_fix(0), "crs": "GCJ-02"},
        {**common_fix(1), "crs": "bd09", "mock": True, "id": 17},
        {**common_fix(2), "mock": False, "speed_mps": -1, "bearing": 360, "battery": 55},
        {**common_fix(3), "id": ""},
    ]
    body = orjson.dumps({"fixes": fixes})
    fast = _fast_batch(body, 1000)
    assert fast is not None
    assert fast.flags.tolist() == [
        FixFlag.SENT_GCJ02,
        FixFlag.SENT_BD09 | FixFlag.MOCK,
        0,
        0,
    ]
    assert_same(fast, per_fix(body))


@pytest.mark.parametrize(
    "odd",
    [
        {"ts": "2026-01-01T00:00:00Z"},
        {"lat": 91.0},
        {"lat": True},
        {"accuracy_m": -1},
        {"crs": "utm"},
        {"bearing": 361},
        {"battery": 101},
        {"id": 1.5},
        {"id": "x" * 129},
        {"mock": None},
        {"ts": -5},
    ],
)
def test_any_odd_fix_sends_the_body_down_the_per_fix_path(odd: dict[str, Any]) -> None:
    body = orjson.dumps({"fixes": [common_fix(0), {**common_fix(1), **odd}]})
    assert _fast_batch(body, 1000) is None
    assert_same(decode_native_batch(body), per_fix(body))


def test_refusals_and_body_errors_are_the_per_fix_paths() -> None:
    body = orjson.dumps({"fixes": [common_fix(0), {**common_fix(1), "lat": "north"}]})
    assert decode_native_batch(body).rejected == [Rejection(1, "bad_type")]
    with pytest.raises(DecodeError) as err:
        decode_native_batch(orjson.dumps({"fixes": [common_fix(0)] * 3}), max_fixes=2)
    assert err.value.code == "too_many_fixes"
    with pytest.raises(DecodeError) as err:
        decode_native_batch(b'{"fixes": [')
    assert err.value.code == "malformed_json"


numbers = st.one_of(
    st.integers(-(2**40), 2**45),
    st.floats(-1e4, 1e4, allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.one_of(numbers, st.none(), st.booleans(), st.text(max_size=3))
fix_strategy = st.fixed_dictionaries(
    {
        "ts": st.one_of(st.integers(0, 4_200_000_000_000), values),
        "lat": st.one_of(st.floats(-95, 95, allow_nan=False), values),
        "lon": st.one_of(st.floats(-185, 185, allow_nan=False), values),
    },
    optional={
        "accuracy_m": values,
        "id": st.one_of(st.text(max_size=130), st.integers(-(2**63), 2**64 - 1), values),
        "crs": st.one_of(st.sampled_from(["wgs84", "GCJ02", "bd-09", "utm"]), values),
        "mock": values,
        "bearing": values,
        "battery": values,
        "speed_mps": values,
        "altitude_m": values,
        "provider": values,
        "extra": values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(fix_strategy, max_size=8))
def test_typed_path_equals_per_fix_path(fixes: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"fixes": fixes})
    assert_same(decode_native_batch(body), per_fix(body))
