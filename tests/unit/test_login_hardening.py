"""Logins through the handlers: equal cost for unknown usernames, the throttle, the bounded
password pool, and officers created by administrators."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher

from correction_monitor.domain.access import Principal, Role
from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.events import EventName
from correction_monitor.domain.models import OrgUnit
from correction_monitor.service.auth import (
    MEMORY_COST_KIB,
    PARALLELISM,
    TIME_COST,
    PasswordWork,
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from correction_monitor.service.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyAttempts,
    TryAgain,
    Unauthenticated,
)
from correction_monitor.service.officers import (
    LOGIN_FAILURES_ALLOWED,
    IssueToken,
    ListOfficers,
    RegisterOfficer,
)
from tests.fakes import T0, FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


class CountingVerifier:
    """The real verification, each call remembered as (hash, password)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, password_hash: str, password: str) -> bool:
        self.calls.append((password_hash, password))
        return verify_password(password_hash, password)


@pytest.fixture
def verifier() -> CountingVerifier:
    return CountingVerifier()


def _world(active: bool = True) -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    uow.state.add_officer(
        Role.OFFICER,
        uow.state.add_unit("s"),
        username="li",
        password_hash=hash_password("right-password"),
        active=active,
    )
    return uow


async def test_an_unknown_username_costs_one_verification_against_the_dummy_hash(
    verifier: CountingVerifier,
) -> None:
    uow = _world()
    services = fake_services(uow, passwords=PasswordWork(workers=1, verifier=verifier))
    with pytest.raises(Unauthenticated):
        await services.handle(IssueToken(username="nobody", password="guess-1234"))
    assert verifier.calls == [(dummy_hash(), "guess-1234")]


async def test_an_inactive_officer_is_checked_against_the_dummy_hash_too(
    verifier: CountingVerifier,
) -> None:
    uow = _world(active=False)
    services = fake_services(uow, passwords=PasswordWork(workers=1, verifier=verifier))
    with pytest.raises(Unauthenticated) as refused:
        await services.handle(IssueToken(username="li", password="right-password"))
    assert refused.value.code == "invalid_credentials"
    assert verifier.calls == [(dummy_hash(), "right-password")]
    assert uow.state.tokens == {}


async def test_a_known_username_is_checked_once_against_its_own_hash(
    verifier: CountingVerifier,
) -> None:
    uow = _world()
    stored = next(iter(uow.state.officers.values())).password_hash
    services = fake_services(uow, passwords=PasswordWork(workers=1, verifier=verifier))
    with pytest.raises(Unauthenticated):
        await services.handle(IssueToken(username="li", password="wrong-password"))
    assert verifier.calls == [(stored, "wrong-password")]


def test_the_dummy_hash_has_todays_parameters() -> None:
    assert f"m={MEMORY_COST_KIB},t={TIME_COST},p={PARALLELISM}" in dummy_hash()
    assert not needs_rehash(dummy_hash())


async def test_ten_failures_refuse_even_the_right_password_until_the_window_passes() -> None:
    uow = _world()
    clock = ManualClock(T0)
    services = fake_services(uow, clock=clock, passwords=PasswordWork(refusal_pause_s=0))
    for _ in range(LOGIN_FAILURES_ALLOWED):
        with pytest.raises(Unauthenticated):
            await services.handle(IssueToken(username="li", password="wrong-password"))
        clock.advance(10)
    # The first failure was at T0; the tenth at T0 + 90 s; now is T0 + 100 s.
    with pytest.raises(TooManyAttempts) as refused:
        await services.handle(IssueToken(username="li", password="right-password"))
    assert refused.value.code == "too_many_attempts"
    assert refused.value.retry_after_s == 15 * 60 - 100
    # A throttled attempt is no failure: it does not push the window on.
    assert len(uow.state.login_failures) == LOGIN_FAILURES_ALLOWED
    clock.advance(15 * 60 - 100)
    issued = await services.handle(IssueToken(username="li", password="right-password"))
    assert issued.role == "officer"


async def test_failures_of_unknown_usernames_count_per_username() -> None:
    uow = _world()
    clock = ManualClock(T0)
    services = fake_services(uow, clock=clock, passwords=PasswordWork(refusal_pause_s=0.1))
    for _ in range(LOGIN_FAILURES_ALLOWED):
        with pytest.raises(Unauthenticated):
            await services.handle(IssueToken(username="ghost", password="x"))
    began = asyncio.get_running_loop().time()
    with pytest.raises(TooManyAttempts):
        await services.handle(IssueToken(username="ghost", password="x"))
    # A throttled login is answered after the refusal pause.
    assert asyncio.get_running_loop().time() - began >= 0.1
    # Another username is not affected.
    issued = await services.handle(IssueToken(username="li", password="right-password"))
    assert issued.token


async def test_nine_failures_still_let_the_right_password_in() -> None:
    uow = _world()
    services = fake_services(uow, clock=ManualClock(T0))
    for _ in range(LOGIN_FAILURES_ALLOWED - 1):
        with pytest.raises(Unauthenticated):
            await services.handle(IssueToken(username="li", password="wrong-password"))
    assert (await services.handle(IssueToken(username="li", password="right-password"))).token


async def test_a_full_pool_refuses_at_once_and_recovers() -> None:
    work = PasswordWork(workers=1, max_waiting=2, refusal_pause_s=0.2)
    release = threading.Event()
    held = [asyncio.ensure_future(work.run(release.wait, 10)) for _ in range(work.capacity)]
    await asyncio.sleep(0)
    assert work.in_flight == 3
    began = asyncio.get_running_loop().time()
    with pytest.raises(TryAgain) as refused:
        await work.verify(dummy_hash(), "x")
    # Refused after the pause (a timer), without running anything.
    assert asyncio.get_running_loop().time() - began >= 0.2
    assert (refused.value.code, refused.value.retry_after_s) == ("try_again", 1)
    with pytest.raises(TryAgain):
        await work.check_room()
    assert work.in_flight == 3
    release.set()
    assert await asyncio.gather(*held) == [True] * 3
    assert work.in_flight == 0
    assert await work.verify(None, "x") is False
    work.close()


async def test_a_saturated_pool_refuses_a_login_with_try_again() -> None:
    uow = _world()
    work = PasswordWork(workers=1, max_waiting=0, refusal_pause_s=0)
    services = fake_services(uow, passwords=work)
    release = threading.Event()
    held = asyncio.ensure_future(work.run(release.wait, 10))
    await asyncio.sleep(0)
    try:
        with pytest.raises(TryAgain):
            await services.handle(IssueToken(username="li", password="right-password"))
    finally:
        release.set()
        await held
    # Refused for load, not for the password: nothing counted against the username.
    assert uow.state.login_failures == []
    work.close()


async def test_a_hash_of_older_parameters_is_replaced_at_a_successful_login() -> None:
    uow = FakeUnitOfWork()
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=2).hash("right-password")
    officer = uow.state.add_officer(
        Role.OFFICER, uow.state.add_unit("s"), username="li", password_hash=old
    )
    await fake_services(uow).handle(IssueToken(username="li", password="right-password"))
    fresh = uow.state.officers[officer.officer_id].password_hash
    assert fresh != old
    assert not needs_rehash(fresh)
    assert verify_password(fresh, "right-password")


# --- officers created by administrators --------------------------------------------------------


@dataclass(frozen=True)
class County:
    """A county with a station, a unit outside it, and officers of each kind."""

    uow: FakeUnitOfWork
    station: OrgUnit
    county_admin: Principal
    supervisor: Principal
    admin: Principal

    def actor(self, name: str) -> Principal:
        found: Principal = getattr(self, name)
        return found


def _county() -> County:
    uow = FakeUnitOfWork()
    county = uow.state.add_unit("county")
    station = uow.state.add_unit("station", county)
    other = uow.state.add_unit("other")
    uow.state.add_officer(Role.OFFICER, station, username="taken")
    return County(
        uow,
        station,
        uow.state.add_officer(Role.COUNTY_ADMIN, county),
        uow.state.add_officer(Role.SUPERVISOR, station),
        uow.state.add_officer(Role.ADMIN, other),
    )


def _register(actor: Principal, **changes: str) -> RegisterOfficer:
    fields = {
        "username": "wang",
        "password": "s3cret-pass",
        "role": "officer",
        "org_unit": "station",
        "name": "王警官",
        "phone": "+86 138 0000 0000",
    } | changes
    return RegisterOfficer(actor=actor, **fields)


async def test_a_county_admin_creates_an_officer_in_their_county() -> None:
    w = _county()
    placed = await fake_services(w.uow).handle(_register(w.county_admin, request_id="r1"))
    assert placed.org_code == "station"
    assert (placed.officer.display_name, placed.officer.phone, placed.officer.active) == (
        "王警官",
        "+86 138 0000 0000",
        True,
    )
    assert verify_password(placed.officer.password_hash, "s3cret-pass")
    [entry] = w.uow.audits
    assert (entry.action, entry.officer_id, entry.request_id) == (
        "officer.create",
        w.county_admin.officer_id,
        "r1",
    )
    assert entry.detail["officer_id"] == placed.officer.id
    [event] = w.uow.emitted
    assert (event.name, event.org_unit_id) == (EventName.OFFICER_CREATED, w.station.id)


@pytest.mark.parametrize(
    ("actor", "changes", "error", "code"),
    [
        ("supervisor", {}, Forbidden, "forbidden"),
        ("county_admin", {"role": "admin"}, Forbidden, "forbidden"),
        ("county_admin", {"org_unit": "other"}, NotFound, "not_found"),
        ("county_admin", {"org_unit": "nowhere"}, NotFound, "not_found"),
        ("county_admin", {"password": "short"}, InvalidInput, "weak_password"),
        ("county_admin", {"role": "warden"}, InvalidInput, "invalid_request"),
        ("admin", {"username": "taken"}, Conflict, "officer_exists"),
    ],
)
async def test_officers_that_may_not_be_created_are_refused(
    actor: str, changes: dict[str, str], error: type[Exception], code: str
) -> None:
    w = _county()
    before = len(w.uow.state.officers)
    with pytest.raises(error) as refused:
        await fake_services(w.uow).handle(_register(w.actor(actor), **changes))
    assert getattr(refused.value, "code", None) == code
    assert len(w.uow.state.officers) == before
    assert w.uow.audits == []


async def test_an_admin_creates_an_admin_anywhere() -> None:
    w = _county()
    placed = await fake_services(w.uow).handle(_register(w.admin, role="admin", org_unit="county"))
    assert (placed.officer.role, placed.org_code) == ("admin", "county")


async def test_officers_are_listed_within_the_jurisdiction() -> None:
    w = _county()
    services = fake_services(w.uow)
    listed = await services.handle(ListOfficers(actor=w.county_admin))
    taken = next(o.id for o in w.uow.state.officers.values() if o.username == "taken")
    assert [p.officer.id for p in listed] == [
        taken,
        w.county_admin.officer_id,
        w.supervisor.officer_id,
    ]
    listed = await services.handle(ListOfficers(actor=w.supervisor))
    assert {p.org_code for p in listed} == {"station"}
    listed = await services.handle(ListOfficers(actor=w.admin, org_unit="county"))
    assert len(listed) == 3
    listed = await services.handle(ListOfficers(actor=w.admin))
    assert len(listed) == 4
    with pytest.raises(NotFound):
        await services.handle(ListOfficers(actor=w.county_admin, org_unit="other"))
