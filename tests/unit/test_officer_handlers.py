"""Org units, officers and logins through the handlers, on the in-memory unit of work."""

from __future__ import annotations

from datetime import timedelta

import pytest

from correction_monitor.domain.access import Role
from correction_monitor.domain.clock import ManualClock
from correction_monitor.service.auth import hash_password, token_hash
from correction_monitor.service.errors import Conflict, Forbidden, InvalidInput, Unauthenticated
from correction_monitor.service.officers import CreateOfficer, IssueToken
from correction_monitor.service.org_units import CreateOrgUnit, ListOrgUnits
from tests.fakes import T0, FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


async def test_units_are_created_below_ones_own_and_listed_within_it() -> None:
    uow = FakeUnitOfWork()
    county = uow.state.add_unit("county")
    admin = uow.state.add_officer(Role.COUNTY_ADMIN, county)
    services = fake_services(uow)
    placed = await services.handle(
        CreateOrgUnit(
            actor=admin,
            code="station",
            name="城关司法所",
            parent_code="county",
            timezone="Asia/Urumqi",
            request_id="r",
        )
    )
    assert (placed.unit.parent_id, placed.parent_code, placed.unit.timezone) == (
        county.id,
        "county",
        "Asia/Urumqi",
    )
    [entry] = uow.audits
    assert (entry.action, entry.detail["code"]) == ("org_unit.create", "station")
    # The administrator's jurisdiction was read when they logged in; the new unit is theirs
    # from their next login, so list as the principal they would then be.
    again = uow.state.add_officer(Role.COUNTY_ADMIN, county)
    listed = await services.handle(ListOrgUnits(actor=again))
    assert [(p.unit.code, p.parent_code) for p in listed] == [
        ("county", None),
        ("station", "county"),
    ]
    with pytest.raises(Conflict) as taken:
        await services.handle(
            CreateOrgUnit(
                actor=admin, code="station", name="x", parent_code="county", timezone="UTC"
            )
        )
    assert taken.value.code == "org_unit_exists"


@pytest.mark.parametrize(
    ("parent_code", "error", "code"),
    [
        (None, Forbidden, "forbidden"),
        ("elsewhere", Forbidden, "forbidden"),
        ("nowhere", InvalidInput, "unknown_org_unit"),
    ],
)
async def test_units_outside_the_jurisdiction_are_refused(
    parent_code: str | None, error: type[Exception], code: str
) -> None:
    uow = FakeUnitOfWork()
    county = uow.state.add_unit("county")
    uow.state.add_unit("elsewhere")
    admin = uow.state.add_officer(Role.COUNTY_ADMIN, county)
    with pytest.raises(error) as refused:
        await fake_services(uow).handle(
            CreateOrgUnit(actor=admin, code="s", name="s", parent_code=parent_code, timezone="UTC")
        )
    assert getattr(refused.value, "code", None) == code
    assert len(uow.state.org_units) == 2


async def test_the_first_officer_brings_their_unit() -> None:
    uow = FakeUnitOfWork()
    services = fake_services(uow)
    county = await services.handle(
        CreateOfficer(
            username="root", password="s3cret-pass", role="admin", org_code="c", org_name="XX县"
        )
    )
    station = await services.handle(
        CreateOfficer(
            username="li", password="s3cret-pass", role="officer", org_code="s", parent_code="c"
        )
    )
    units = {u.code: u for u in uow.state.org_units.values()}
    assert units["c"].name == "XX县"
    assert (units["s"].parent_id, station.org_unit_id, county.org_unit_id) == (
        units["c"].id,
        units["s"].id,
        units["c"].id,
    )
    assert [(e.officer_id, e.action) for e in uow.audits] == [(None, "officer.create")] * 2


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"role": "warden"}, InvalidInput, "invalid_request"),
        ({"password": "short"}, InvalidInput, "weak_password"),
        ({"timezone": "Mars/Olympus"}, InvalidInput, "invalid_request"),
        ({"org_code": "new", "parent_code": "nowhere"}, InvalidInput, "unknown_org_unit"),
        ({"username": "taken"}, Conflict, "officer_exists"),
    ],
)
async def test_bad_officers_are_refused_with_a_reason(
    changes: dict[str, str], error: type[Exception], code: str
) -> None:
    uow = FakeUnitOfWork()
    uow.state.add_officer(Role.OFFICER, uow.state.add_unit("c"), username="taken")
    fields = {"username": "u", "password": "s3cret-pass", "role": "officer", "org_code": "c"}
    with pytest.raises(error) as refused:
        await fake_services(uow).handle(CreateOfficer(**(fields | changes)))
    assert getattr(refused.value, "code", None) == code
    assert len(uow.state.officers) == 1
    assert uow.audits == []


async def test_a_login_stores_the_tokens_digest_until_it_expires() -> None:
    uow = FakeUnitOfWork()
    unit = uow.state.add_unit("s")
    officer = uow.state.add_officer(
        Role.OFFICER, unit, username="li", password_hash=hash_password("right-password")
    )
    services = fake_services(uow, clock=ManualClock(T0), token_ttl_s=600)
    issued = await services.handle(IssueToken(username="li", password="right-password"))
    assert (issued.expires_at, issued.role) == (T0 + timedelta(seconds=600), "officer")
    assert uow.state.tokens == {token_hash(issued.token): (officer.officer_id, issued.expires_at)}


@pytest.mark.parametrize(("username", "password"), [("li", "wrong-password"), ("who", "x")])
async def test_wrong_logins_are_answered_alike(username: str, password: str) -> None:
    uow = FakeUnitOfWork()
    uow.state.add_officer(
        Role.OFFICER, uow.state.add_unit("s"), username="li", password_hash=hash_password("right")
    )
    with pytest.raises(Unauthenticated) as refused:
        await fake_services(uow).handle(IssueToken(username=username, password=password))
    assert (refused.value.code, refused.value.message) == (
        "invalid_credentials",
        "unknown username or wrong password",
    )
    assert uow.state.tokens == {}
