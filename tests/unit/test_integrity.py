"""The 人机分离 rules and their evidence (domain/integrity.py), and raising a signal on the
in-memory unit of work (service/integrity.py, enrolment in service/devices.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from correction_monitor.domain.access import Role
from correction_monitor.domain.alerts import AlertStatus, AlertType
from correction_monitor.domain.events import EventName
from correction_monitor.domain.fix_arrays import SubjectFixes, to_us
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.domain.integrity import (
    FIRST_KEPT,
    LATEST_KEPT,
    NOTE,
    Rule,
    active_others,
    enabled,
    extended,
    live_pairs,
    new_device_item,
    new_evidence,
    policy_evidence,
    signal_alert,
)
from correction_monitor.ingest import signals
from correction_monitor.policy import IntegrityPolicy, load_policy
from correction_monitor.service.bootstrap import bootstrap
from correction_monitor.service.devices import EnrolDevice
from correction_monitor.service.integrity import raise_signal
from tests.fakes import T0, FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit

POLICY = load_policy().integrity


def at(minute: int) -> dict[str, Any]:
    return {"at": f"2026-03-01T08:{minute:02d}:00Z", "n": minute}


def off(**switches: bool) -> IntegrityPolicy:
    return dataclasses.replace(POLICY, **switches)


def test_every_rule_has_its_switch() -> None:
    for rule in Rule:
        assert enabled(POLICY, rule)
        assert not enabled(off(**{rule.value: False}), rule)
    with pytest.raises(ValueError, match="not_a_rule"):
        enabled(POLICY, "not_a_rule")


def test_policy_evidence_names_the_switch_and_the_values_used() -> None:
    assert policy_evidence(off(stationary_checkin=False), "stationary_checkin") == {
        "switch": "integrity.stationary_checkin",
        "enabled": False,
        "stationary_s": POLICY.stationary_s,
        "stationary_radius_m": POLICY.stationary_radius_m,
    }


def test_new_evidence_is_ordered_bounded_and_says_it_is_no_finding() -> None:
    items = [at(m) for m in reversed(range(40))]
    evidence = new_evidence("mock_location", items, {"switch": "integrity.mock_location"})
    assert (evidence["rule"], evidence["reason"], evidence["note"]) == (
        "mock_location",
        "mock_location",
        NOTE,
    )
    assert evidence["count"] == 40
    assert [i["n"] for i in evidence["first"]] == list(range(FIRST_KEPT))
    assert [i["n"] for i in evidence["latest"]] == list(range(40 - LATEST_KEPT, 40))
    assert (evidence["from"], evidence["to"]) == (at(0)["at"], at(39)["at"])
    with pytest.raises(ValueError, match="at least one item"):
        new_evidence("mock_location", [], {})


def test_extending_keeps_the_first_rolls_the_latest_and_counts_all() -> None:
    evidence = new_evidence("new_device", [at(10), at(11)], {})
    evidence = extended(evidence, [at(12), at(13), at(14), at(15)])
    assert [i["n"] for i in evidence["first"]] == [10, 11, 12, 13, 14]
    assert [i["n"] for i in evidence["latest"]] == [15]
    evidence = extended(evidence, [at(m) for m in range(16, 50)])
    assert [i["n"] for i in evidence["first"]] == [10, 11, 12, 13, 14]
    assert [i["n"] for i in evidence["latest"]] == list(range(30, 50))
    assert evidence["count"] == 40
    # A late item widens the span and is kept in time order among the latest.
    evidence = extended(evidence, [at(1)])
    assert evidence["from"] == at(1)["at"]
    assert evidence["count"] == 41
    assert extended(evidence, []) is evidence


def test_a_signal_alert_is_a_new_episode_per_ordinal() -> None:
    evidence = new_evidence("mock_location", [at(5)], {})
    first = signal_alert(7, 3, 1, evidence)
    again = signal_alert(7, 3, 2, evidence)
    assert (first.type, first.fence_id, first.org_unit_id) == (AlertType.DEVICE_INTEGRITY, None, 3)
    assert first.episode_key != again.episode_key
    assert first.started_at == datetime(2026, 3, 1, 8, 5, tzinfo=UTC)


def test_active_others_are_those_heard_within_the_overlap() -> None:
    now = T0
    others = [
        (1, "android", now - timedelta(hours=23)),
        (2, "ios", now - timedelta(hours=25)),
        (3, None, None),
        (4, "harmony", now - timedelta(minutes=1)),
    ]
    assert [d[0] for d in active_others(others, now, 86_400)] == [4, 1]
    assert active_others(others, now, 30) == []


def test_a_platform_change_is_spelled_out() -> None:
    old = {"device_id": 1, "platform": "android", "last_seen_at": "2026-03-01T07:00:00Z"}
    unknown = {"device_id": 2, "platform": None, "last_seen_at": "2026-03-01T07:00:00Z"}
    new = {"device_id": 3, "platform": "ios", "last_seen_at": None}
    assert new_device_item(T0, "enrolment", new, [old])["platform_changed"] is True
    assert new_device_item(T0, "enrolment", new, [unknown])["platform_changed"] is False
    same = new | {"platform": "android"}
    assert new_device_item(T0, "report", same, [old])["platform_changed"] is False


def test_live_pairs_of_one_commit() -> None:
    assert live_pairs({1: {5}, 2: set()}) == {}
    assert live_pairs({2: {8, 7}}) == {2: [(7, 8)]}


async def test_raise_signal_opens_extends_and_reopens_after_resolution() -> None:
    uow = FakeUnitOfWork()
    station = uow.state.add_unit("station")
    subject = uow.state.add_subject(station)

    async def signal(minute: int, policy: IntegrityPolicy = POLICY) -> None:
        async with uow:
            await raise_signal(
                uow,
                subject_id=subject.id,
                org_unit_id=station.id,
                rule="replayed_media",
                at=T0 + timedelta(minutes=minute),
                item={"checkin_id": minute},
                policy=policy,
            )

    await signal(0)
    await signal(1)
    [alert] = uow.state.alerts.values()
    assert alert.evidence["count"] == 2
    assert [i["checkin_id"] for i in alert.evidence["first"]] == [0, 1]
    assert [e.name for e in uow.emitted] == [EventName.ALERT_OPENED]
    await signal(2, off(replayed_media=False))
    assert uow.state.alerts[alert.id].evidence["count"] == 2
    uow.state.alerts[alert.id] = dataclasses.replace(
        uow.state.alerts[alert.id], status=AlertStatus.RESOLVED
    )
    await signal(3)
    assert len(uow.state.alerts) == 2
    newest = max(uow.state.alerts.values(), key=lambda a: a.id)
    assert newest.episode_key == "replayed_media:2"
    assert newest.evidence["count"] == 1


async def test_enrolment_signals_only_when_another_device_is_live() -> None:
    uow = FakeUnitOfWork()
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    services = fake_services(uow)
    first = await services.handle(EnrolDevice(actor=officer, subject_id=subject.id))
    assert uow.state.alerts == {}
    uow.state.device_seen[first.device.id] = T0 - timedelta(hours=2)
    second = await services.handle(
        EnrolDevice(actor=officer, subject_id=subject.id, platform="ios")
    )
    [alert] = uow.state.alerts.values()
    [item] = alert.evidence["first"]
    assert item["device"]["device_id"] == second.device.id
    assert [d["device_id"] for d in item["active_devices"]] == [first.device.id]
    assert item["active_devices"][0]["last_seen_at"] == "2026-03-01T06:00:00Z"
    # Nothing was revoked.
    assert all(d.revoked_at is None for d in uow.state.devices.values())


async def test_enrolment_with_the_rule_off_signals_nothing() -> None:
    uow = FakeUnitOfWork()
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    services = fake_services(uow)
    first = await services.handle(EnrolDevice(actor=officer, subject_id=subject.id))
    uow.state.device_seen[first.device.id] = T0
    policy = dataclasses.replace(load_policy(), integrity=off(new_device=False))
    quiet = bootstrap(lambda: uow, policy=policy, clock=uow.clock)
    await quiet.handle(EnrolDevice(actor=officer, subject_id=subject.id))
    assert uow.state.alerts == {}


def _fixes(flags: list[int]) -> SubjectFixes:
    n = len(flags)
    return SubjectFixes(
        np.arange(n, dtype=np.int64) * 60_000_000 + to_us(T0),
        np.full(n, 116.3),
        np.full(n, 39.9),
        np.full(n, 12.0),
        np.array(flags, dtype=np.int16),
        np.arange(n, dtype=np.int32),
        np.full(n, 9, dtype=np.int32),
        np.zeros(n, dtype=np.int32),
    )


def test_only_mock_fixes_become_items_and_a_group_without_any_is_skipped() -> None:
    clean = _fixes([0, FixFlag.COARSE])
    mixed = _fixes([0, FixFlag.MOCK | FixFlag.LATE, FixFlag.MOCK])
    assert not signals.has_mock([clean])
    assert not signals.has_mock([])
    assert signals.has_mock([clean, mixed])
    items = signals.mock_items(mixed)
    assert [i["at"] for i in items] == ["2026-03-01T08:01:00Z", "2026-03-01T08:02:00Z"]
    assert items[0] == {
        "at": "2026-03-01T08:01:00Z",
        "device_id": 9,
        "lon": 116.3,
        "lat": 39.9,
        "accuracy_m": 12.0,
    }


def test_a_live_pair_is_signalled_once_an_hour_per_process() -> None:
    live = signals.LiveDevices()
    seen = T0 - timedelta(minutes=3)
    both_ways = [
        {
            "subject_id": 4,
            "device_id": 7,
            "platform": "ios",
            "other_id": 5,
            "other_platform": "android",
            "other_seen_at": seen,
        },
        {
            "subject_id": 4,
            "device_id": 5,
            "platform": "android",
            "other_id": 7,
            "other_platform": "ios",
            "other_seen_at": seen,
        },
    ]
    items, pairs = live.items(both_ways, T0)
    assert pairs == [(4, 5, 7)]
    [item] = items[4]
    assert (item["trigger"], item["device"]["device_id"], item["platform_changed"]) == (
        "report",
        7,
        True,
    )
    assert item["active_devices"][0]["last_seen_at"] == "2026-03-01T07:57:00Z"
    # Not remembered (the commit failed): signalled again.
    assert live.items(both_ways, T0)[1] == [(4, 5, 7)]
    live.remember(pairs, T0)
    assert live.items(both_ways, T0 + timedelta(minutes=59)) == ({}, [])
    assert live.items(both_ways, T0 + timedelta(hours=1))[1] == [(4, 5, 7)]


def test_the_overlap_starts_from_the_policy_and_off_means_no_check() -> None:
    assert signals.since(T0, POLICY) == T0 - timedelta(seconds=POLICY.new_device_overlap_s)
    assert signals.since(T0, off(new_device=False)) is None
