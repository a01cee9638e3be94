"""The ingest pipeline's front stages, each alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from correction_monitor.domain.fixes import FixFlag, RawFix
from correction_monitor.ingest.batch import (
    FUTURE_TIMESTAMP,
    TOO_OLD,
    client_key,
    dedupe_in_request,
    normalize,
    prepare_normalized,
    quality,
    validate,
)
from correction_monitor.policy import load_policy
from geofences.crs import wgs84_to_gcj02

pytestmark = pytest.mark.unit

POLICY = load_policy().ingest
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def raw(seconds_ago: float, lon: float = 116.3, lat: float = 39.9, **kw: object) -> RawFix:
    return RawFix(NOW - timedelta(seconds=seconds_ago), lat, lon, **kw)  # type: ignore[arg-type]


def test_normalize_converts_gcj02_and_bd09_to_wgs84_and_flags_the_source() -> None:
    glon, glat = wgs84_to_gcj02(116.3, 39.9)
    batch = normalize(
        [raw(10, float(glon), float(glat), crs="gcj02"), raw(5), raw(1, crs="mercator")],
        [0, 1, 2],
    )
    assert len(batch) == 2
    assert batch.lon[0] == pytest.approx(116.3, abs=1e-7)
    assert batch.lat[0] == pytest.approx(39.9, abs=1e-7)
    assert batch.flags[0] & FixFlag.SENT_GCJ02
    assert [(r.index, r.reason) for r in batch.rejected] == [(2, "bad_crs")]


def test_validate_refuses_future_and_too_old_fixes_by_index() -> None:
    batch = normalize([raw(-3600), raw(60), raw(POLICY.max_age_s + 60)], [0, 1, 2])
    validate(batch, NOW.timestamp(), POLICY)
    assert batch.index.tolist() == [1]
    assert sorted((r.index, r.reason) for r in batch.rejected) == [
        (0, FUTURE_TIMESTAMP),
        (2, TOO_OLD),
    ]


def test_dedupe_in_request_keeps_the_first_of_repeated_fixes() -> None:
    fixes = [raw(10, client_id="a"), raw(10, client_id="a"), raw(10, client_id="b"), raw(10)]
    batch = normalize(fixes, [0, 1, 2, 3])
    dedupe_in_request(batch)
    assert batch.duplicates == 1
    assert sorted(batch.index.tolist()) == [0, 2, 3]


def test_quality_fills_missing_accuracy_and_marks_coarse_fixes() -> None:
    batch = normalize([raw(10), raw(9, accuracy_m=4000.0), raw(8, accuracy_m=5.0)], [0, 1, 2])
    quality(batch, POLICY)
    assert batch.accuracy_m.tolist() == [POLICY.default_accuracy_m, 4000.0, 5.0]
    assert batch.flags[0] & FixFlag.NO_ACCURACY
    assert batch.flags[1] & FixFlag.COARSE
    assert not batch.flags[2] & (FixFlag.COARSE | FixFlag.NO_ACCURACY)


def test_the_stages_run_in_order_and_keep_mock_flags() -> None:
    batch = normalize([raw(3, mock=True), raw(2)], [0, 1])
    prepare_normalized(batch, NOW.timestamp(), POLICY)
    assert len(batch) == 2
    assert batch.flags[0] & FixFlag.MOCK
    assert np.isfinite(batch.accuracy_m).all()


def test_client_key_is_stable_signed_and_zero_only_without_id() -> None:
    assert client_key(None) == 0
    assert client_key("") == 0
    assert client_key("fix-1") == client_key("fix-1")
    assert client_key("fix-1") != client_key("fix-2")
    assert all(-(2**31) <= client_key(str(i)) < 2**31 and client_key(str(i)) for i in range(500))
