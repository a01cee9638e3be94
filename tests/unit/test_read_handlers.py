"""Officers' reads through the handlers, on the in-memory unit of work: each stays within
the caller's jurisdiction, and each read of location data leaves its audit entry, with the
purpose and request id the caller gave, in the same unit of work as the read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from correction_monitor.domain.access import Principal, Role
from correction_monitor.domain.alerts import AlertStatus, AlertType
from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.models import AuditEntry, SubjectContact
from correction_monitor.service import alerts, track
from correction_monitor.service.alerts import GetAlert, ListAlerts, OpenAlertFeed
from correction_monitor.service.audit_log import ListAuditEntries
from correction_monitor.service.auth import token_hash
from correction_monitor.service.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from correction_monitor.service.officers import Logout
from correction_monitor.service.status import ReadSubjectStatus
from correction_monitor.service.track import ReadTrack
from tests.fakes import T0, FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def entries(uow: FakeUnitOfWork) -> list[tuple[str, int | None, str | None, str | None]]:
    return [(e.action, e.subject_id, e.purpose, e.request_id) for e in uow.audits]


# --- alerts ----------------------------------------------------------------------------------


async def test_a_list_holds_the_callers_alerts_and_is_audited_with_its_filters(
    uow: FakeUnitOfWork,
) -> None:
    station, other = uow.state.add_unit("station"), uow.state.add_unit("other")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    older, newer = uow.state.add_alert(subject), uow.state.add_alert(subject)
    uow.state.add_alert(uow.state.add_subject(other))  # not the officer's to see
    services = fake_services(uow)
    listed = await services.handle(
        ListAlerts(actor=officer, limit=50, purpose="案件核查", request_id="r1")
    )
    assert [a.id for a in listed] == [newer.id, older.id]
    [entry] = uow.audits
    # One subject's alerts were read: the entry is about that subject.
    assert (entry.action, entry.subject_id, entry.purpose, entry.request_id) == (
        "alert.list",
        subject.id,
        "案件核查",
        "r1",
    )
    assert entry.detail == {
        "filters": {
            "subject_id": None,
            "type": None,
            "status": None,
            "limit": 50,
            "include_retracted": False,
        },
        "alerts": 2,
        "alert_ids": [newer.id, older.id],
        "subjects": 1,
        "subject_ids": [subject.id],
    }


async def test_a_list_across_subjects_names_them_within_the_cap(
    uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    county = uow.state.add_unit("county")
    station = uow.state.add_unit("station", county)
    admin = uow.state.add_officer(Role.COUNTY_ADMIN, county)
    first, second = uow.state.add_subject(county), uow.state.add_subject(station)
    a1 = uow.state.add_alert(first)
    a2 = uow.state.add_alert(second, type_=AlertType.CURFEW_VIOLATION)
    monkeypatch.setattr(alerts, "AUDIT_IDS_MAX", 1)
    listed = await fake_services(uow).handle(ListAlerts(actor=admin))
    assert [a.id for a in listed] == [a2.id, a1.id]
    [entry] = uow.audits
    assert entry.subject_id is None
    assert (entry.detail["alerts"], entry.detail["alert_ids"]) == (2, [a2.id])
    assert (entry.detail["subjects"], entry.detail["subject_ids"]) == (2, [second.id])


async def test_list_filters_are_kept_as_asked(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    uow.state.add_alert(subject, status=AlertStatus.RESOLVED)
    wanted = uow.state.add_alert(subject, type_=AlertType.CURFEW_VIOLATION)
    command = ListAlerts(
        actor=officer,
        subject_id=subject.id,
        type=AlertType.CURFEW_VIOLATION,
        status=AlertStatus.OPEN,
        include_retracted=True,
    )
    assert [a.id for a in await fake_services(uow).handle(command)] == [wanted.id]
    [entry] = uow.audits
    assert entry.detail["filters"] == {
        "subject_id": subject.id,
        "type": "curfew_violation",
        "status": "open",
        "limit": 500,
        "include_retracted": True,
    }


async def test_one_alert_is_read_within_the_jurisdiction_and_audited(
    uow: FakeUnitOfWork,
) -> None:
    station, other = uow.state.add_unit("station"), uow.state.add_unit("other")
    officer = uow.state.add_officer(Role.OFFICER, station)
    mine = uow.state.add_alert(uow.state.add_subject(station))
    theirs = uow.state.add_alert(uow.state.add_subject(other))
    services = fake_services(uow)
    for alert_id in (theirs.id, 9999):
        with pytest.raises(NotFound) as missing:
            await services.handle(GetAlert(actor=officer, alert_id=alert_id))
        assert missing.value.message == f"alert {alert_id} not found"
    assert uow.audits == []
    read = await services.handle(
        GetAlert(actor=officer, alert_id=mine.id, purpose="复核", request_id="r2")
    )
    assert read == mine
    assert entries(uow) == [("alert.read", mine.subject_id, "复核", "r2")]
    assert uow.audits[0].detail == {"alert_id": mine.id}


async def _with_events(uow: FakeUnitOfWork, unit_id: int, count: int) -> None:
    async with uow:
        for _ in range(count):
            uow.emit(DomainEvent(EventName.SUBJECT_CREATED, unit_id))
    uow.emitted.clear()


async def test_a_feed_starts_now_unless_resumed_and_its_opening_is_audited(
    uow: FakeUnitOfWork,
) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    await _with_events(uow, station.id, 3)
    digest = token_hash("officer-token")
    uow.state.tokens[digest] = (officer.officer_id, T0 + timedelta(hours=8))
    services = fake_services(uow)
    now = await services.handle(
        OpenAlertFeed(actor=officer, token_digest=digest, purpose="值班", request_id="r3")
    )
    assert (now.after_event_id, now.token_expires_at) == (3, T0 + timedelta(hours=8))
    resumed = await services.handle(
        OpenAlertFeed(actor=officer, token_digest=digest, after_event_id=1, resumed_by="since")
    )
    assert resumed.after_event_id == 1
    assert [(e.action, e.subject_id, e.purpose, e.detail) for e in uow.audits] == [
        ("alert.stream", None, "值班", {"start": "now", "after_event_id": 3}),
        ("alert.stream", None, None, {"start": "since", "after_event_id": 1}),
    ]


async def test_a_feed_for_a_revoked_token_is_refused_unaudited(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    with pytest.raises(Unauthenticated) as refused:
        await fake_services(uow).handle(
            OpenAlertFeed(actor=officer, token_digest=token_hash("revoked"))
        )
    assert refused.value.code == "unauthorized"
    assert uow.audits == []


# --- track -----------------------------------------------------------------------------------


def _point(minutes: float, device_id: int = 1) -> TrackPoint:
    return TrackPoint(T0 + timedelta(minutes=minutes), 1_163_000_000, 399_000_000, 12, 0, device_id)


async def test_a_track_is_read_within_the_window_and_audited_as_read_or_export(
    uow: FakeUnitOfWork,
) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    uow.state.fixes[subject.id] = [_point(-30), _point(-90), _point(-2000), _point(5)]
    # By default the window is the day up to the clock's now.
    services = fake_services(uow, clock=ManualClock(T0))
    read = await services.handle(
        ReadTrack(actor=officer, subject_id=subject.id, purpose="轨迹核查", request_id="r4")
    )
    assert (read.start, read.end, read.truncated) == (T0 - timedelta(days=1), T0, False)
    assert [p.ts for p in read.points] == [T0 - timedelta(minutes=90), T0 - timedelta(minutes=30)]
    exported = await services.handle(
        ReadTrack(
            actor=officer,
            subject_id=subject.id,
            start=T0 - timedelta(hours=1),
            end=T0 + timedelta(hours=1),
            export=True,
        )
    )
    assert len(exported.points) == 2
    assert [(e.action, e.subject_id, e.purpose, e.request_id, e.detail) for e in uow.audits] == [
        (
            "track.read",
            subject.id,
            "轨迹核查",
            "r4",
            {"from": "2026-02-28T08:00:00Z", "to": "2026-03-01T08:00:00Z", "fixes": 2},
        ),
        (
            "track.export",
            subject.id,
            None,
            None,
            {"from": "2026-03-01T07:00:00Z", "to": "2026-03-01T09:00:00Z", "fixes": 2},
        ),
    ]


async def test_a_track_is_cut_at_the_most_one_read_returns(
    uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    uow.state.fixes[subject.id] = [_point(-3), _point(-2), _point(-1)]
    monkeypatch.setattr(track, "MAX_TRACK_FIXES", 2)
    read = await fake_services(uow).handle(ReadTrack(actor=officer, subject_id=subject.id))
    assert (len(read.points), read.truncated) == (2, True)


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        (T0, T0, "invalid_time"),
        (T0, T0 - timedelta(hours=1), "invalid_time"),
        (T0 - timedelta(days=32), T0, "span_too_long"),
    ],
)
async def test_a_window_that_is_no_window_is_refused_before_anything_is_read(
    uow: FakeUnitOfWork, start: Any, end: Any, code: str
) -> None:
    station, other = uow.state.add_unit("station"), uow.state.add_unit("other")
    officer = uow.state.add_officer(Role.OFFICER, station)
    theirs = uow.state.add_subject(other)
    with pytest.raises(InvalidInput) as refused:
        await fake_services(uow).handle(
            ReadTrack(actor=officer, subject_id=theirs.id, start=start, end=end)
        )
    assert refused.value.code == code
    assert (uow.commits, uow.audits) == (0, [])


async def test_another_stations_track_is_not_found_and_not_audited(uow: FakeUnitOfWork) -> None:
    station, other = uow.state.add_unit("station"), uow.state.add_unit("other")
    officer = uow.state.add_officer(Role.OFFICER, station)
    theirs = uow.state.add_subject(other)
    uow.state.fixes[theirs.id] = [_point(-5)]
    with pytest.raises(NotFound):
        await fake_services(uow).handle(ReadTrack(actor=officer, subject_id=theirs.id))
    assert uow.audits == []


# --- status ----------------------------------------------------------------------------------


class Positions:
    def __init__(self, latest: dict[int, dict[str, Any]]) -> None:
        self.latest = latest

    async def latest_positions(self, subject_ids: list[int]) -> dict[int, dict[str, Any]]:
        return {s: self.latest[s] for s in subject_ids if s in self.latest}


async def test_status_prefers_the_hot_state_and_names_the_open_alerts_it_shows(
    uow: FakeUnitOfWork,
) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    open_alert = uow.state.add_alert(subject)
    uow.state.add_alert(subject, status=AlertStatus.RESOLVED)
    reference = (T0.timestamp() - 600, 116.3, 39.9, 20.0)
    uow.state.contacts[subject.id] = SubjectContact(reference, T0, T0, None, 0.0)
    cached = {"ts": T0.timestamp(), "lon": 116.31, "lat": 39.91, "accuracy_m": 8.0}
    hot = fake_services(uow, positions=Positions({subject.id: cached}))
    command = ReadSubjectStatus(
        actor=officer, subject_id=subject.id, purpose="查看", request_id="r5"
    )
    status = await hot.handle(command)
    assert status.latest_position is not None
    assert (status.latest_position.at, status.latest_position.source) == (T0, "redis")
    assert [a.id for a in status.open_alerts] == [open_alert.id]
    # Without the hot state's copy, the last evaluated fix stands in.
    cold = await fake_services(uow, positions=Positions({})).handle(command)
    assert cold.latest_position is not None
    assert (cold.latest_position.at, cold.latest_position.lon) == (
        T0 - timedelta(minutes=10),
        116.3,
    )
    assert cold.latest_position.source == "postgresql"
    assert [(e.action, e.subject_id, e.purpose, e.detail) for e in uow.audits] == [
        ("position.read", subject.id, "查看", {"open_alert_ids": [open_alert.id]}),
    ] * 2


async def test_status_of_a_subject_never_heard_from(uow: FakeUnitOfWork) -> None:
    station, other = uow.state.add_unit("station"), uow.state.add_unit("other")
    officer = uow.state.add_officer(Role.OFFICER, station)
    subject = uow.state.add_subject(station)
    status = await fake_services(uow).handle(
        ReadSubjectStatus(actor=officer, subject_id=subject.id)
    )
    assert (status.latest_position, status.contact, status.open_alerts) == (None, None, [])
    theirs = uow.state.add_subject(other)
    with pytest.raises(NotFound):
        await fake_services(uow).handle(ReadSubjectStatus(actor=officer, subject_id=theirs.id))
    assert len(uow.audits) == 1


# --- logout and the audit log ----------------------------------------------------------------


async def test_logout_revokes_the_token_once(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    digest = token_hash("officer-token")
    uow.state.tokens[digest] = (officer.officer_id, T0 + timedelta(hours=8))
    services = fake_services(uow)
    assert await services.handle(Logout(token="officer-token")) == digest
    assert digest not in uow.state.tokens
    with pytest.raises(Unauthenticated):
        await services.handle(Logout(token="officer-token"))


def _auditor(uow: FakeUnitOfWork) -> tuple[Principal, int, int]:
    county, other = uow.state.add_unit("county"), uow.state.add_unit("other")
    station = uow.state.add_unit("station", county)
    auditor = uow.state.add_officer(Role.AUDITOR, county)
    mine, theirs = uow.state.add_subject(station), uow.state.add_subject(other)
    return auditor, mine.id, theirs.id


async def test_the_audit_log_shows_an_auditor_their_county_only(uow: FakeUnitOfWork) -> None:
    auditor, mine, theirs = _auditor(uow)
    async with uow:
        for subject_id in (mine, theirs, mine):
            uow.audit(officer_id=auditor.officer_id, action="track.read", subject_id=subject_id)
    services = fake_services(uow)
    found = await services.handle(ListAuditEntries(actor=auditor))
    assert [r.entry for r in found] == [AuditEntry(auditor.officer_id, "track.read", mine)] * 2
    assert found[0].id > found[1].id  # newest first
    assert await services.handle(ListAuditEntries(actor=auditor, subject_id=theirs)) == []
    assert len(await services.handle(ListAuditEntries(actor=auditor, limit=1))) == 1


async def test_only_auditors_and_administrators_read_the_audit_log(uow: FakeUnitOfWork) -> None:
    station = uow.state.add_unit("station")
    officer = uow.state.add_officer(Role.OFFICER, station)
    with pytest.raises(Forbidden):
        await fake_services(uow).handle(ListAuditEntries(actor=officer))
