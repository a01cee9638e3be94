"""Registering and reading subjects through their handlers, on the in-memory unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from correction_monitor.domain.access import Principal, Role
from correction_monitor.domain.events import EventName
from correction_monitor.domain.models import (
    Curfew,
    GeofenceRecord,
    OrgUnit,
    SubjectCategory,
    SupervisionLevel,
)
from correction_monitor.policy import load_policy
from correction_monitor.service.bootstrap import Services
from correction_monitor.service.errors import Forbidden, InvalidInput, NotFound
from correction_monitor.service.subjects import (
    CreateSubject,
    GetSubject,
    HomeRequest,
    ListSubjects,
)
from geofences.crs import CRS
from tests.fakes import FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


@dataclass
class County:
    uow: FakeUnitOfWork
    services: Services
    county: OrgUnit
    station: OrgUnit
    other_station: OrgUnit
    admin: Principal
    officer: Principal
    area: GeofenceRecord
    zone: GeofenceRecord


@pytest.fixture
def county() -> County:
    uow = FakeUnitOfWork()
    state = uow.state
    county = state.add_unit("county")
    station = state.add_unit("station", county)
    other_station = state.add_unit("other", county)
    admin = state.add_officer(Role.COUNTY_ADMIN, county)
    officer = state.add_officer(Role.OFFICER, station)
    area = state.add_fence(county, "activity_area")
    zone = state.add_fence(county, "exclusion")
    return County(
        uow, fake_services(uow), county, station, other_station, admin, officer, area, zone
    )


def create(c: County, **changes: Any) -> CreateSubject:
    """The caller's subject at their station, with ``changes``."""
    fields: dict[str, Any] = {
        "actor": c.officer,
        "name": "张三",
        "org_unit": c.station.code,
        "supervision_level": SupervisionLevel.STRICT,
        "category": SubjectCategory.PROBATION,
        "term_start": date(2026, 1, 1),
        "term_end": date(2027, 12, 31),
        "activity_area_id": c.area.id,
        "exclusion_zone_ids": (c.zone.id,),
        "request_id": "req-1",
    }
    return CreateSubject(**(fields | changes))


async def test_a_subject_is_stored_audited_and_announced(county: County) -> None:
    placed = await county.services.handle(create(county))
    subject = placed.subject
    assert placed.org_code == county.station.code
    assert county.uow.state.subjects[subject.id] == subject
    assert subject.exclusion_zone_ids == (county.zone.id,)
    # The officer who registers a subject is responsible for it unless another is named.
    assert subject.responsible_officer_id == county.officer.officer_id
    [entry] = county.uow.audits
    assert (entry.action, entry.subject_id, entry.officer_id, entry.request_id) == (
        "subject.create",
        subject.id,
        county.officer.officer_id,
        "req-1",
    )
    [event] = county.uow.emitted
    assert event.name == EventName.SUBJECT_CREATED
    assert (event.org_unit_id, event.subject_id) == (county.station.id, subject.id)
    assert event.data["supervision_level"] == "strict"


async def test_the_home_is_converted_to_wgs84_with_the_policys_radius(county: County) -> None:
    home = HomeRequest(lat=39.9042136, lon=116.4074002, crs=CRS.GCJ02)
    curfew = Curfew(time(22, 0), time(6, 0))
    subject = (await county.services.handle(create(county, home=home, curfew=curfew))).subject
    assert subject.home is not None
    # 东城区 in GCJ-02 → WGS-84 (gcoord's vector), about 600 m west.
    assert subject.home.lon == pytest.approx(116.4011517, abs=2e-5)
    assert subject.home.lat == pytest.approx(39.9028057, abs=2e-5)
    assert subject.home.radius_m == load_policy().default_home_radius_m
    assert subject.curfew == curfew


async def test_a_term_given_as_instants_is_read_in_the_stations_time_zone(
    county: County,
) -> None:
    # Local midnights of Beijing, written as UTC instants of the evening before.
    start = datetime(2025, 12, 31, 16, 0, tzinfo=UTC)
    end = datetime(2026, 6, 29, 16, 0, tzinfo=UTC)
    subject = (await county.services.handle(create(county, term_start=start, term_end=end))).subject
    assert (subject.term_start, subject.term_end) == (date(2026, 1, 1), date(2026, 6, 30))


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"curfew": Curfew(time(22, 0), time(6, 0))}, "invalid_request"),
        ({"term_end": date(2025, 12, 31)}, "invalid_request"),
        ({"org_unit": "nowhere"}, "unknown_org_unit"),
        ({"activity_area_id": 9999}, "unknown_geofence"),
        ({"exclusion_zone_ids": (9999,)}, "unknown_geofence"),
        ({"responsible_officer_id": 9999}, "unknown_officer"),
        ({"responsible_supervisor_id": 9999}, "unknown_officer"),
        ({"home": HomeRequest(lat=91.0, lon=116.0)}, "invalid_request"),
    ],
)
async def test_unusable_requests_are_refused_and_leave_nothing(
    county: County, changes: dict[str, Any], code: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await county.services.handle(create(county, **changes))
    assert refused.value.code == code
    assert county.uow.state.subjects == {}
    assert (county.uow.audits, county.uow.emitted) == ([], [])


async def test_fences_of_the_wrong_kind_are_refused(county: County) -> None:
    swapped = create(county, activity_area_id=county.zone.id, exclusion_zone_ids=(county.area.id,))
    with pytest.raises(InvalidInput) as refused:
        await county.services.handle(swapped)
    assert refused.value.code == "wrong_geofence_kind"


async def test_a_neighbouring_stations_fence_is_answered_as_unknown(county: County) -> None:
    theirs = county.uow.state.add_fence(county.other_station, "exclusion")
    with pytest.raises(InvalidInput) as refused:
        await county.services.handle(create(county, exclusion_zone_ids=(theirs.id,)))
    assert refused.value.code == "unknown_geofence"


async def test_an_officer_of_another_station_is_answered_as_unknown(county: County) -> None:
    stranger = county.uow.state.add_officer(Role.OFFICER, county.other_station)
    with pytest.raises(InvalidInput) as refused:
        await county.services.handle(create(county, responsible_officer_id=stranger.officer_id))
    assert refused.value.code == "unknown_officer"
    # The county administrator's jurisdiction covers that station: there it is accepted.
    placed = await county.services.handle(
        create(county, actor=county.admin, responsible_officer_id=stranger.officer_id)
    )
    assert placed.subject.responsible_officer_id == stranger.officer_id


async def test_a_station_outside_the_jurisdiction_is_forbidden(county: County) -> None:
    with pytest.raises(Forbidden):
        await county.services.handle(create(county, org_unit=county.other_station.code))


async def test_reading_is_limited_to_the_jurisdiction(county: County) -> None:
    mine = (await county.services.handle(create(county))).subject
    theirs = (
        await county.services.handle(
            create(county, actor=county.admin, org_unit=county.other_station.code)
        )
    ).subject
    got = await county.services.handle(GetSubject(actor=county.officer, subject_id=mine.id))
    assert (got.subject, got.org_code) == (mine, county.station.code)
    # Another station's subject is answered exactly like one that does not exist.
    for subject_id in (theirs.id, 9999):
        with pytest.raises(NotFound) as missing:
            await county.services.handle(GetSubject(actor=county.officer, subject_id=subject_id))
        assert missing.value.message == f"subject {subject_id} not found"
    listed = await county.services.handle(ListSubjects(actor=county.officer))
    assert [p.subject.id for p in listed] == [mine.id]
    everyone = await county.services.handle(ListSubjects(actor=county.admin, limit=1, offset=1))
    assert [p.subject.id for p in everyone] == [theirs.id]
