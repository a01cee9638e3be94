"""The contradicting-account rule and its evidence (pure: arrays in, masks and JSON out)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from correction_monitor.domain.fix_arrays import SubjectFixes
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.ingest.accounts import (
    JOIN_WITHIN_S,
    MAX_EVIDENCE_FIXES,
    contradicting,
    contradiction_evidence,
    integrity_alert,
    joins,
    merged,
)

pytestmark = pytest.mark.unit

T0 = 1_790_000_000.0
GAP_US = 90_000_000


def fixes(
    times: list[float],
    device: int | list[int] = 1,
    flags: int | list[int] = 0,
    lon: float = 116.3,
) -> SubjectFixes:
    """Fixes at ``times`` (seconds after T0)."""
    n = len(times)
    return SubjectFixes(
        ts_us=np.array([round((T0 + t) * 1e6) for t in times], dtype=np.int64),
        lon=np.full(n, lon),
        lat=np.full(n, 39.9),
        accuracy_m=np.full(n, 10.0),
        flags=np.array(flags if isinstance(flags, list) else [flags] * n, dtype=np.int16),
        key=np.arange(n, dtype=np.int32),
        device=np.array(device if isinstance(device, list) else [device] * n, dtype=np.int32),
        owner=np.zeros(n, dtype=np.int32),
    )


def covered(late: SubjectFixes, stored: SubjectFixes) -> list[bool]:
    mask, _, _ = contradicting(late, stored, GAP_US)
    return [bool(m) for m in mask]


def test_a_fix_between_two_close_live_fixes_of_its_device_is_contradicting() -> None:
    stored = fixes([0, 60, 120, 300])
    mask, before, after = contradicting(fixes([30, 90, 200]), stored, GAP_US)
    assert mask.tolist() == [True, True, False]  # 120 → 300 is a gap
    assert before.tolist() == [0, 1, 2]
    assert after.tolist() == [1, 2, 3]


def test_the_gap_limit_is_inclusive_and_time_alone_decides() -> None:
    stored = fixes([0, 90, 180.001])
    assert covered(fixes([45, 135]), stored) == [True, False]
    # A second fix at a stored fix's very time, under another id: judged by the fixes
    # around that instant.
    assert covered(fixes([90]), fixes([0, 60, 90, 120])) == [True]
    assert covered(fixes([90]), stored) == [False]


def test_a_limit_of_zero_turns_the_rule_off() -> None:
    mask, _, _ = contradicting(fixes([30]), fixes([0, 30, 60]), 0)
    assert mask.tolist() == [False]


def test_no_fix_after_it_means_a_gap_however_close_the_one_before() -> None:
    stored = fixes([0, 60])
    assert covered(fixes([60, 61, -1]), stored) == [False, False, False]


def test_a_span_that_starts_at_a_late_arrival_is_a_gap_being_filled() -> None:
    """The live fix came first, the buffer's first page next: the next page falls between
    that page and the live fix, however close they are."""
    stored = fixes([0, 100, 110], flags=[0, FixFlag.BACKFILL, 0])
    assert covered(fixes([105]), stored) == [False]
    # Ending at a late arrival does not matter: the span started with a live report.
    stored = fixes([0, 10, 100], flags=[0, FixFlag.BACKFILL, 0])
    assert covered(fixes([5]), stored) == [True]


def test_only_the_same_devices_first_account_covers() -> None:
    stored = fixes([0, 30, 60], device=[1, 2, 1])
    assert covered(fixes([15, 45], device=[1, 2]), stored) == [True, False]
    # A contradicting fix stored earlier is not part of the account.
    stored = fixes([0, 30, 200], flags=[0, FixFlag.CONTRADICTING, 0])
    assert covered(fixes([40]), stored) == [False]
    assert covered(fixes([10]), fixes([])) == [False]


def test_evidence_holds_both_accounts() -> None:
    stored = fixes([0, 60, 120], lon=116.30)
    late = fixes([30, 90], lon=116.31)
    late.device[:] = 7
    stored.device[:] = 7
    _, before, after = contradicting(late, stored, GAP_US)
    evidence = contradiction_evidence(late, stored, before, after, 90.0)
    assert evidence["reason"] == "contradicting_account"
    assert evidence["device_id"] == 7
    assert evidence["late_count"] == 2
    assert [f["at"] for f in evidence["late_fixes"]] == [iso(30), iso(90)]
    assert evidence["late_fixes"][0] == {
        "at": iso(30),
        "lon": 116.31,
        "lat": 39.9,
        "accuracy_m": 10.0,
        "device_id": 7,
        "after": iso(0),
        "before": iso(60),
    }
    assert [f["at"] for f in evidence["stored_fixes"]] == [iso(0), iso(60), iso(120)]
    assert evidence["stored_fixes"][1]["lon"] == 116.30
    assert (evidence["from"], evidence["to"]) == (iso(30), iso(90))
    alert = integrity_alert(5, 9, evidence)
    assert (alert.type, alert.subject_id, alert.org_unit_id) == ("device_integrity", 5, 9)
    assert alert.episode_key == f"contradiction:7:{round((T0 + 30) * 1000)}"
    assert alert.started_at.timestamp() == T0 + 30


def iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat().replace("+00:00", "Z")


def told(late_times: list[float], device: int = 1) -> dict[str, Any]:
    """The evidence of late fixes at ``late_times`` (each between stored fixes 1 s apart)."""
    stored = fixes(sorted({t + d for t in late_times for d in (-1, 1)}), device=device)
    late = fixes(late_times, device=device)
    _, before, after = contradicting(late, stored, GAP_US)
    return contradiction_evidence(late, stored, before, after, 90.0)


def test_a_burst_sent_in_parts_is_one_episode() -> None:
    first = told([100, 200])
    assert joins(first, told([150]))
    assert joins(first, told([200 + JOIN_WITHIN_S]))
    assert not joins(first, told([201 + JOIN_WITHIN_S]))
    assert not joins(first, told([150], device=2))
    both = merged(first, told([150, 50]))
    assert both["late_count"] == 4
    assert [f["at"] for f in both["late_fixes"]] == [iso(50), iso(100), iso(150), iso(200)]
    assert [f["at"] for f in both["stored_fixes"]] == [
        iso(t) for t in (49, 51, 99, 101, 149, 151, 199, 201)
    ]
    assert (both["from"], both["to"]) == (iso(50), iso(200))


def test_evidence_lists_the_earliest_late_fixes_and_counts_them_all() -> None:
    many = told([float(10 * n) for n in range(MAX_EVIDENCE_FIXES + 20)])
    assert many["late_count"] == MAX_EVIDENCE_FIXES + 20
    assert len(many["late_fixes"]) == MAX_EVIDENCE_FIXES
    assert len(many["stored_fixes"]) == 2 * MAX_EVIDENCE_FIXES
    both = merged(many, told([-500.0]))
    assert both["late_count"] == MAX_EVIDENCE_FIXES + 21
    assert both["late_fixes"][0]["at"] == iso(-500)
    assert len(both["late_fixes"]) == MAX_EVIDENCE_FIXES
    listed = {f["after"] for f in both["late_fixes"]} | {f["before"] for f in both["late_fixes"]}
    assert {f["at"] for f in both["stored_fixes"]} == listed
