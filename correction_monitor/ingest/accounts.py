"""Contradicting accounts: late fixes that re-tell minutes their device had already reported.

Late fixes are replayed in event time (``ingest/evaluate.py``) because an honest phone sends
some fixes after newer ones: the live fix first and then the buffer of the silent minutes
before it, or a request retried after the next one got through. Such fixes fill a *gap* in
the device's reports. In supervision the subject is the party with a reason to lie, and a
replay is a way to erase an alert: post fixes back-dated into the episode, somewhere else.
An honest phone never sends a second, different account of minutes that the same device has
already reported, so the rule is:

    A late fix of device D at time t is *contradicting* when D's stored fixes right before
    and right after t (a < t < b, fixes already flagged contradicting left out) are at most
    the policy's ``covered_gap_s`` apart and ``a`` was not itself a late arrival.

``a`` must have arrived live (without :data:`FixFlag.BACKFILL`): a phone uploading its
offline buffer in pages, oldest first, after its live fix, sends each page into the span
between the previous page and the live fix; that span is a gap being filled, not minutes
reported. A fix newer than everything stored is never late, so live delivery, in one batch
or one fix at a time, is never affected.

Contradicting fixes are stored with :data:`FixFlag.CONTRADICTING` and never evaluated. They
raise one ``device_integrity`` alert per contradiction episode (rule and reason
``contradicting_account``; always on, since it guards what evaluation decides), with both
accounts as evidence: each late fix, and the device's stored fixes it fell between.

Everything here is pure (arrays in, arrays and JSON values out); the commit
(``ingest/commit.py``) does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from correction_monitor.domain.alerts import SEVERITY, AlertOpen, AlertType
from correction_monitor.domain.fix_arrays import SubjectFixes
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.domain.integrity import NOTE

REASON = "contradicting_account"
JOIN_WITHIN_S = 3600.0
"""Contradicting fixes of one device within this many seconds (event time) of an unresolved
contradiction alert's span add to that alert: one burst, one alert."""
MAX_EVIDENCE_FIXES = 100
"""Late fixes listed in an alert's evidence (the earliest; ``late_count`` has them all)."""


def contradicting(
    fixes: SubjectFixes, stored: SubjectFixes, covered_gap_us: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Which of ``fixes`` fall inside a span their device has already covered.

    ``stored`` holds the subject's stored fixes from ``covered_gap_us`` (microseconds) before
    the earliest of ``fixes`` to as long after the latest, any device, any order. Returns the
    mask, and for every fix the rows of ``stored`` of its device right before and right after
    it (-1 where there is none within reach).
    """
    n = len(fixes)
    covered = np.zeros(n, dtype=np.bool_)
    before = np.full(n, -1, dtype=np.intp)
    after = np.full(n, -1, dtype=np.intp)
    usable = np.flatnonzero((stored.flags & FixFlag.CONTRADICTING) == 0)
    if n == 0 or len(usable) == 0:
        return covered, before, after
    for device in np.unique(fixes.device).tolist():
        rows = usable[stored.device[usable] == device]
        if len(rows) == 0:
            continue
        rows = rows[np.argsort(stored.ts_us[rows], kind="stable")]
        times = stored.ts_us[rows]
        mine = np.flatnonzero(fixes.device == device)
        t = fixes.ts_us[mine]
        a = np.searchsorted(times, t, "left") - 1  # the last stored fix before t
        b = np.searchsorted(times, t, "right")  # the first one after it
        has_a, has_b = a >= 0, b < len(rows)
        before[mine[has_a]] = rows[a[has_a]]
        after[mine[has_b]] = rows[b[has_b]]
        both = has_a & has_b
        pair = mine[both]
        a_rows, b_rows = rows[a[both]], rows[b[both]]
        covered[pair] = (stored.ts_us[b_rows] - stored.ts_us[a_rows] <= covered_gap_us) & (
            (stored.flags[a_rows] & FixFlag.BACKFILL) == 0
        )
    return covered, before, after


@dataclass(slots=True)
class Contradiction:
    """A subject's contradicting fixes of one commit (flagged, to be stored, never
    evaluated) and, per device, the evidence of both accounts."""

    fixes: SubjectFixes
    evidence: list[dict[str, Any]]


def set_aside(
    merged: dict[int, SubjectFixes],
    near: dict[int, SubjectFixes],
    newest_stored_us: dict[int, int],
    covered_gap_us: int,
) -> dict[int, Contradiction]:
    """Flag ``backfill`` the fixes of the subjects in ``near`` that are older than their
    newest stored fix (``newest_stored_us``, microseconds), and take the contradicting ones
    out of ``merged``, so that they are stored but never evaluated.

    ``merged`` holds each subject's new fixes, in time order; ``near`` the stored fixes
    around those of the subjects that have late ones (as :func:`contradicting` reads them).
    """
    out: dict[int, Contradiction] = {}
    for sid, stored in near.items():
        fixes = merged[sid]
        if len(fixes) == 0:
            continue
        # Strictly older: a second fix at the newest instant still arrived live.
        fixes.flags[fixes.ts_us < newest_stored_us[sid]] |= FixFlag.BACKFILL
        covered, before, after = contradicting(fixes, stored, covered_gap_us)
        if not covered.any():
            continue
        told = np.flatnonzero(covered)
        late = fixes.select(told)
        late.flags |= FixFlag.CONTRADICTING
        evidence = []
        for device in np.unique(late.device).tolist():
            mine = np.flatnonzero(late.device == device)
            evidence.append(
                contradiction_evidence(
                    late.select(mine),
                    stored,
                    before[told][mine],
                    after[told][mine],
                    covered_gap_us / 1e6,
                )
            )
        out[sid] = Contradiction(late, evidence)
        merged[sid] = fixes.select(np.flatnonzero(~covered))
    return out


def _iso(ts_us: int) -> str:
    """As the API writes instants (``domain.timeutil.iso``)."""
    return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def fix_evidence(fixes: SubjectFixes, i: int) -> dict[str, Any]:
    """One fix as evidence: time (ISO-8601 UTC), WGS-84 position (degrees), accuracy (m),
    device."""
    return {
        "at": _iso(int(fixes.ts_us[i])),
        "lon": float(fixes.lon[i]),
        "lat": float(fixes.lat[i]),
        "accuracy_m": float(fixes.accuracy_m[i]),
        "device_id": int(fixes.device[i]),
    }


def fixes_evidence(fixes: SubjectFixes, limit: int = MAX_EVIDENCE_FIXES) -> list[dict[str, Any]]:
    """The earliest ``limit`` of ``fixes`` (sorted by time) as evidence."""
    return [fix_evidence(fixes, i) for i in range(min(len(fixes), limit))]


def contradiction_evidence(
    late: SubjectFixes,
    stored: SubjectFixes,
    before: npt.NDArray[np.intp],
    after: npt.NDArray[np.intp],
    covered_gap_s: float,
) -> dict[str, Any]:
    """Both accounts of one device: the earliest contradicting ``late`` fixes, each naming the
    stored fixes it fell between (``before`` / ``after``: rows of ``stored``, one per late
    fix), and those stored fixes themselves."""
    order = np.argsort(late.ts_us, kind="stable")
    late_fixes = []
    stored_rows: set[int] = set()
    for i in order[:MAX_EVIDENCE_FIXES].tolist():
        a, b = int(before[i]), int(after[i])
        stored_rows.update((a, b))
        late_fixes.append(
            fix_evidence(late, i)
            | {
                "after": _iso(int(stored.ts_us[a])),
                "before": _iso(int(stored.ts_us[b])),
            }
        )
    ordered = sorted(stored_rows, key=lambda r: int(stored.ts_us[r]))
    return {
        "rule": REASON,
        "reason": REASON,
        "note": NOTE,
        "device_id": int(late.device[0]),
        "covered_gap_s": covered_gap_s,
        "from": _iso(int(late.ts_us[order[0]])),
        "to": _iso(int(late.ts_us[order[-1]])),
        "late_count": len(late),
        "late_fixes": late_fixes,
        "stored_fixes": [fix_evidence(stored, r) for r in ordered],
    }


def joins(evidence: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the contradiction ``new`` (evidence as built above) belongs to the episode of
    an unresolved alert with ``evidence``: same device, within :data:`JOIN_WITHIN_S`."""
    if evidence.get("reason") != REASON or evidence.get("device_id") != new["device_id"]:
        return False
    lo, hi = _seconds(evidence["from"]), _seconds(evidence["to"])
    return _seconds(new["from"]) <= hi + JOIN_WITHIN_S and _seconds(new["to"]) >= lo - JOIN_WITHIN_S


def merged(evidence: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """An alert's contradiction evidence with a later contradiction of the same episode
    added: the earliest late fixes of both, and the stored fixes those fell between."""
    late = sorted([*evidence["late_fixes"], *new["late_fixes"]], key=lambda f: _seconds(f["at"]))[
        :MAX_EVIDENCE_FIXES
    ]
    wanted = {f["after"] for f in late} | {f["before"] for f in late}
    by_time = {f["at"]: f for f in [*evidence["stored_fixes"], *new["stored_fixes"]]}
    return evidence | {
        "from": min(evidence["from"], new["from"], key=_seconds),
        "to": max(evidence["to"], new["to"], key=_seconds),
        "late_count": evidence["late_count"] + new["late_count"],
        "late_fixes": late,
        "stored_fixes": [by_time[at] for at in sorted(wanted, key=_seconds) if at in by_time],
    }


def integrity_alert(subject_id: int, org_unit_id: int, evidence: dict[str, Any]) -> AlertOpen:
    """A new contradiction episode's alert, keyed by its device and first late fix."""
    started = datetime.fromisoformat(evidence["from"].replace("Z", "+00:00"))
    first_ms = round(started.timestamp() * 1000)
    return AlertOpen(
        subject_id=subject_id,
        org_unit_id=org_unit_id,
        type=AlertType.DEVICE_INTEGRITY,
        severity=SEVERITY[AlertType.DEVICE_INTEGRITY],
        fence_id=None,
        episode_key=f"contradiction:{evidence['device_id']}:{first_ms}",
        started_at=started,
        evidence=evidence,
    )


def _seconds(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
