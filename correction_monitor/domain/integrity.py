"""人机分离 signals: the pure rules and the evidence of ``device_integrity`` alerts.

A signal says that the phone may not be with the subject: it reported a simulated location,
a second phone of the subject is live, a check-in failed while the phone lay still, a
check-in photo was sent before. Each is a *named rule* with a policy switch
(``[integrity]`` in the policy file). None of them decides anything about the subject: a
signal opens (or adds to) an alert that an officer checks, and only the officer's
resolution says what happened. The evidence says so in plain words (:data:`NOTE`).

One alert per subject and rule while no officer has resolved it: later signals of the rule
add to its evidence, which stays bounded (the first :data:`FIRST_KEPT` items, the latest
:data:`LATEST_KEPT` after them, and a count of all). Once resolved, the next signal opens a
new alert. Everything here is pure; ``service/integrity.py`` does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from correction_monitor.domain.alerts import SEVERITY, AlertOpen, AlertType
from correction_monitor.domain.timeutil import iso
from correction_monitor.policy import IntegrityPolicy


class Rule(StrEnum):
    """The switchable integrity rules; each value is its policy switch in ``[integrity]``."""

    MOCK_LOCATION = "mock_location"
    """A stored fix the phone itself marked as simulated (mock provider)."""
    NEW_DEVICE = "new_device"
    """A second device (or platform) of the subject while another is still active."""
    STATIONARY_CHECKIN = "stationary_checkin"
    """A check-in failed or needs review while the phone has not moved for hours."""
    REPLAYED_MEDIA = "replayed_media"
    """A check-in's photo was already used by an earlier check-in of the subject."""
    PATROL_CONTRADICTION = "patrol_contradiction"
    """A night patrol found the subject home while a location alert said they were away."""


NOTE = (
    "This is a signal for an officer to check, not a finding: the system does not decide "
    "whether the phone was separated from the subject or whether anyone is to blame."
)
FIRST_KEPT = 5
"""Items kept from the start of an alert's signals."""
LATEST_KEPT = 20
"""Items kept from the end (after the first ones); ``count`` counts them all."""

POLICY_VALUES: dict[Rule, tuple[str, ...]] = {
    Rule.MOCK_LOCATION: (),
    Rule.NEW_DEVICE: ("new_device_overlap_s",),
    Rule.STATIONARY_CHECKIN: ("stationary_s", "stationary_radius_m"),
    Rule.REPLAYED_MEDIA: (),
    Rule.PATROL_CONTRADICTION: (),
}
"""The policy values besides its switch that each rule's decision used."""


@dataclass(frozen=True, slots=True)
class RuleAlert:
    """A stored ``device_integrity`` alert of one rule: whether an officer resolved it, and
    its evidence."""

    id: int
    resolved: bool
    evidence: dict[str, Any]


def enabled(policy: IntegrityPolicy, rule: str) -> bool:
    """Whether the policy's switch for ``rule`` is on; an unknown rule is a programming
    error (ValueError), never silently off."""
    return policy.enabled(Rule(rule).value)


def policy_evidence(policy: IntegrityPolicy, rule: str) -> dict[str, Any]:
    """The switch that applied and the values the rule's decision used.

    >>> from correction_monitor.policy import load_policy
    >>> policy_evidence(load_policy().integrity, "new_device")
    {'switch': 'integrity.new_device', 'enabled': True, 'new_device_overlap_s': 86400.0}
    """
    name = Rule(rule)
    values = {key: getattr(policy, key) for key in POLICY_VALUES[name]}
    return {"switch": f"integrity.{name.value}", "enabled": enabled(policy, name)} | values


def new_evidence(
    rule: str, items: Sequence[dict[str, Any]], policy: dict[str, Any]
) -> dict[str, Any]:
    """A new alert's evidence: the rule (also as ``reason``, as every integrity alert
    names its reason), the policy that applied, the note, and the items, bounded.

    Each item is a JSON object with an ``at`` (ISO-8601): when the signal's fact happened.
    """
    if not items:
        raise ValueError("a signal needs at least one item")
    ordered = sorted(items, key=lambda item: _instant(item["at"]))
    return {
        "rule": rule,
        "reason": rule,
        "policy": policy,
        "note": NOTE,
        "count": len(ordered),
        "from": ordered[0]["at"],
        "to": ordered[-1]["at"],
        "first": ordered[:FIRST_KEPT],
        "latest": ordered[FIRST_KEPT:][-LATEST_KEPT:],
    }


def extended(evidence: dict[str, Any], items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An unresolved alert's evidence with later signals of its rule added: the first items
    stay, the latest ones roll, the count and span grow. Items arriving late (older than
    ``to``) are counted and kept among the latest in time order, never dropped silently.

    >>> e = new_evidence("mock_location", [{"at": "2026-01-01T00:00:00Z"}], {})
    >>> e = extended(e, [{"at": f"2026-01-01T00:{m:02d}:00Z"} for m in range(1, 30)])
    >>> e["count"], len(e["first"]), len(e["latest"]), e["latest"][-1]["at"], e["to"]
    (30, 5, 20, '2026-01-01T00:29:00Z', '2026-01-01T00:29:00Z')
    """
    if not items:
        return evidence
    first = list(evidence.get("first", []))
    latest = list(evidence.get("latest", []))
    incoming = sorted(items, key=lambda item: _instant(item["at"]))
    room = max(0, FIRST_KEPT - len(first))
    if room and not latest:
        first, incoming = first + incoming[:room], incoming[room:]
    latest = sorted([*latest, *incoming], key=lambda item: _instant(item["at"]))[-LATEST_KEPT:]
    ats = [evidence["from"], evidence["to"], *(item["at"] for item in items)]
    return evidence | {
        "count": int(evidence.get("count", 0)) + len(items),
        "from": min(ats, key=_instant),
        "to": max(ats, key=_instant),
        "first": first,
        "latest": latest,
    }


def signal_alert(
    subject_id: int, org_unit_id: int, ordinal: int, evidence: dict[str, Any]
) -> AlertOpen:
    """The alert opening a rule's signals for a subject; ``ordinal`` counts the subject's
    alerts of the rule (1 for the first), so the one opened after an officer resolved the
    previous is a new episode, whatever its times.

    >>> op = signal_alert(7, 3, 2, new_evidence("new_device", [{"at": "2026-01-01T00:00:00Z"}], {}))
    >>> op.episode_key, op.started_at.isoformat()
    ('new_device:2', '2026-01-01T00:00:00+00:00')
    """
    return AlertOpen(
        subject_id=subject_id,
        org_unit_id=org_unit_id,
        type=AlertType.DEVICE_INTEGRITY,
        severity=SEVERITY[AlertType.DEVICE_INTEGRITY],
        fence_id=None,
        episode_key=f"{evidence['rule']}:{ordinal}",
        started_at=_instant(evidence["from"]),
        evidence=evidence,
    )


def mock_fix_item(
    at: datetime, lon: float, lat: float, accuracy_m: float, device_id: int
) -> dict[str, Any]:
    """One stored mock fix as a ``mock_location`` item: its time (its identity together with
    the device), WGS-84 position (degrees) and accuracy (m)."""
    return {
        "at": iso(at),
        "device_id": device_id,
        "lon": lon,
        "lat": lat,
        "accuracy_m": accuracy_m,
    }


def active_others(
    others: Sequence[tuple[int, str | None, datetime | None]],
    now: datetime,
    overlap_s: float,
) -> list[tuple[int, str | None, datetime]]:
    """Of a subject's other unrevoked devices (id, platform, last heard from), those heard
    from within ``overlap_s`` seconds before ``now`` (or after it: a clock a little ahead
    still means live), most recent first.

    >>> from datetime import UTC, timedelta
    >>> now = datetime(2026, 1, 2, tzinfo=UTC)
    >>> [d for d, _, _ in active_others(
    ...     [(1, "android", now - timedelta(hours=2)), (2, None, None),
    ...      (3, "ios", now - timedelta(days=3))], now, 86400)]
    [1]
    """
    live = [
        (device_id, platform, seen)
        for device_id, platform, seen in others
        if seen is not None and (now - seen).total_seconds() <= overlap_s
    ]
    return sorted(live, key=lambda d: d[2], reverse=True)


def device_fact(
    device_id: int, platform: str | None, last_seen_at: datetime | None
) -> dict[str, Any]:
    """A device as ``new_device`` evidence names it."""
    return {
        "device_id": device_id,
        "platform": platform,
        "last_seen_at": iso(last_seen_at) if last_seen_at is not None else None,
    }


def new_device_item(
    at: datetime,
    trigger: str,
    new: dict[str, Any],
    active: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """A ``new_device`` item: at ``at`` the device ``new`` was enrolled (``trigger``
    ``"enrolment"``) or reported (``"report"``) while the devices ``active`` (as
    :func:`device_fact` gives them) were still heard from; whether a platform differs is
    spelled out, since a switch to another platform is what a second phone looks like."""
    platforms = {d["platform"] for d in active if d["platform"] is not None}
    return {
        "at": iso(at),
        "trigger": trigger,
        "device": new,
        "active_devices": list(active),
        "platform_changed": new["platform"] is not None
        and any(p != new["platform"] for p in platforms),
    }


def live_pairs(
    reporting: dict[int, set[int]],
) -> dict[int, list[tuple[int, int]]]:
    """Subjects with two or more devices reporting in one commit, and those devices' pairs:
    two phones live at once (``reporting``: subject id → ids of its devices that reported).

    >>> live_pairs({1: {5}, 2: {7, 8}, 3: {4, 3, 9}})
    {2: [(7, 8)], 3: [(3, 4), (3, 9), (4, 9)]}
    """
    out: dict[int, list[tuple[int, int]]] = {}
    for sid, devices in reporting.items():
        ids = sorted(devices)
        pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]
        if pairs:
            out[sid] = pairs
    return out


def _instant(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))
