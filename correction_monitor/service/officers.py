"""Officers: creating them (the first ones from the command line, the others through the
API by an administrator), listing them, logging them in and out.

Logins are throttled per username (:data:`LOGIN_FAILURES_ALLOWED` failures within
:data:`LOGIN_FAILURE_WINDOW` refuse every login for it, the right password too, until the
window passes) and cost the same whether the username exists or not: an unknown username or
an inactive officer is checked against a dummy hash (``service.auth.dummy_hash``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal, Role, subtree_ids
from correction_monitor.domain.clock import Clock, SystemClock
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.models import Officer, OrgUnit
from correction_monitor.service.auth import (
    PasswordWork,
    needs_rehash,
    new_token,
    shared_password_work,
    token_hash,
)
from correction_monitor.service.command import Command
from correction_monitor.service.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyAttempts,
    TryAgain,
    Unauthenticated,
)
from correction_monitor.service.unit_of_work import UnitOfWork

MIN_PASSWORD_LENGTH = 8
LOGIN_FAILURES_ALLOWED: Final = 10
LOGIN_FAILURE_WINDOW: Final = timedelta(minutes=15)
# Who may create officers through the API (RULES.md §4: the county bureau runs its stations).
OFFICER_CREATORS: Final = frozenset({Role.COUNTY_ADMIN, Role.ADMIN})


def _role(name: str) -> Role:
    try:
        return Role(name)
    except ValueError as exc:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput("invalid_request", f"unknown role {name!r}; one of {roles}") from exc


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            "weak_password", f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
        )


@dataclass(frozen=True, slots=True)
class CreateOfficer(Command[Officer]):
    """Create an officer at the unit ``org_code``, creating that unit first when it does
    not exist (named ``org_name``, under ``parent_code``, in ``timezone``).

    This is how an installation gets its first administrator, so it acts for nobody:
    whoever can run it holds the database already.
    """

    username: str
    password: str
    role: str
    org_code: str
    org_name: str | None = None
    parent_code: str | None = None
    timezone: str = "Asia/Shanghai"


def _check_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidInput("invalid_request", f"unknown time zone {name!r}") from exc


async def create_officer(
    command: CreateOfficer, uow: UnitOfWork, *, passwords: PasswordWork | None = None
) -> Officer:
    role = _role(command.role)
    _check_password(command.password)
    _check_timezone(command.timezone)
    # argon2 costs tens of milliseconds of CPU: on the password pool, before the transaction.
    password_hash = await (passwords or shared_password_work()).hash(command.password)
    async with uow:
        try:
            unit = await uow.org_units.get_by_code(command.org_code)
        except stored.NotFound:
            parent_id = None
            if command.parent_code is not None:
                try:
                    parent_id = (await uow.org_units.get_by_code(command.parent_code)).id
                except stored.NotFound as exc:
                    raise InvalidInput(
                        "unknown_org_unit",
                        f"parent org unit {command.parent_code!r} does not exist",
                    ) from exc
            unit = await uow.org_units.add(
                command.org_code, command.org_name or command.org_code, parent_id, command.timezone
            )
        try:
            officer = await uow.officers.add(command.username, password_hash, role.value, unit.id)
        except stored.AlreadyExists as exc:
            raise Conflict("officer_exists", str(exc)) from exc
        uow.audit(
            officer_id=None,
            action="officer.create",
            detail={"officer_id": officer.id, "role": role.value, "org_unit": unit.code},
        )
    return officer


@dataclass(frozen=True, slots=True)
class PlacedOfficer:
    """An officer with the code of their unit."""

    officer: Officer
    org_code: str


@dataclass(frozen=True, slots=True)
class RegisterOfficer(Command[PlacedOfficer]):
    """An administrator creates an officer account at a unit of their jurisdiction.

    A county administrator creates officers, supervisors, auditors and county
    administrators within their county; only an administrator creates administrators, and
    anywhere. A unit outside the caller's jurisdiction is answered as one that does not
    exist.
    """

    actor: Principal
    username: str
    password: str
    role: str
    org_unit: str
    name: str | None = None
    phone: str | None = None
    request_id: str | None = None


async def _unit_for(uow: UnitOfWork, who: Principal, code: str) -> OrgUnit:
    """The unit of ``code`` if ``who`` sees it; NotFound alike when it does not exist."""
    try:
        unit = await uow.org_units.get_by_code(code)
    except stored.NotFound as exc:
        raise NotFound(f"org unit {code!r}") from exc
    if not who.sees(unit.id):
        raise NotFound(f"org unit {code!r}")
    return unit


async def register_officer(
    command: RegisterOfficer, uow: UnitOfWork, *, passwords: PasswordWork | None = None
) -> PlacedOfficer:
    who = command.actor
    if not who.may(OFFICER_CREATORS):
        raise Forbidden(f"role {who.role.value!r} may not create officers")
    role = _role(command.role)
    if role is Role.ADMIN and who.role is not Role.ADMIN:
        raise Forbidden("only an administrator may create an administrator")
    _check_password(command.password)
    # Refusals that need no hash first: the hash costs ~20 ms of a core.
    async with uow:
        await _unit_for(uow, who, command.org_unit)
        try:
            await uow.officers.get_by_username(command.username)
        except stored.NotFound:
            pass
        else:
            raise Conflict("officer_exists", f"officer {command.username!r} exists already")
    password_hash = await (passwords or shared_password_work()).hash(command.password)
    async with uow:
        unit = await _unit_for(uow, who, command.org_unit)
        try:
            officer = await uow.officers.add(
                command.username, password_hash, role.value, unit.id, command.name, command.phone
            )
        except stored.AlreadyExists as exc:
            raise Conflict("officer_exists", str(exc)) from exc
        uow.audit(
            officer_id=who.officer_id,
            action="officer.create",
            request_id=command.request_id,
            detail={
                "officer_id": officer.id,
                "username": officer.username,
                "role": role.value,
                "org_unit": unit.code,
            },
        )
        uow.emit(
            DomainEvent(
                EventName.OFFICER_CREATED,
                unit.id,
                data={"officer_id": officer.id, "role": role.value, "created_by": who.officer_id},
            )
        )
    return PlacedOfficer(officer, unit.code)


@dataclass(frozen=True, slots=True)
class ListOfficers(Command[list[PlacedOfficer]]):
    """The officers within the caller's jurisdiction, by id; with ``org_unit``, only those
    of that unit and the units below it."""

    actor: Principal
    org_unit: str | None = None


def _subtree(units: list[OrgUnit], root_id: int) -> frozenset[int]:
    return subtree_ids(((u.id, u.parent_id) for u in units), root_id)


async def list_officers(command: ListOfficers, uow: UnitOfWork) -> list[PlacedOfficer]:
    who = command.actor
    async with uow:
        scope = who.scope
        units = await uow.org_units.all()
        if command.org_unit is not None:
            root = await _unit_for(uow, who, command.org_unit)
            wanted = _subtree(units, root.id)
            scope = wanted if scope is None else wanted & scope
        found = await uow.officers.list_in(scope)
    codes = {u.id: u.code for u in units}
    return [PlacedOfficer(o, codes[o.org_unit_id]) for o in found]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A bearer token for an officer; only its digest is stored."""

    token: str
    expires_at: datetime
    role: str


@dataclass(frozen=True, slots=True)
class IssueToken(Command[IssuedToken]):
    """Trade an officer's username and password for a bearer token."""

    username: str
    password: str


def _retry_after_s(failures: list[datetime], now: datetime) -> int:
    """Seconds until the oldest of the failures that reach the limit leaves the window (one
    failure fewer than the limit lets logins through again); at least one."""
    left = (failures[LOGIN_FAILURES_ALLOWED - 1] + LOGIN_FAILURE_WINDOW - now).total_seconds()
    return max(1, math.ceil(left))


async def issue_token(
    command: IssueToken,
    uow: UnitOfWork,
    *,
    ttl_s: float,
    clock: Clock | None = None,
    passwords: PasswordWork | None = None,
) -> IssuedToken:
    """A token valid ``ttl_s`` seconds; Unauthenticated, alike for an unknown username, an
    inactive officer and a wrong password, each costing one argon2 verification and counted
    as a failure of that username. TooManyAttempts while the username has failed
    :data:`LOGIN_FAILURES_ALLOWED` times within :data:`LOGIN_FAILURE_WINDOW` (``clock``'s
    time), before any password is looked at."""
    clock = clock or SystemClock()
    passwords = passwords or shared_password_work()
    await passwords.check_room()
    now = clock.now()
    found: Officer | None = None
    async with uow:
        failures = await uow.officers.login_failures_since(
            command.username, now - LOGIN_FAILURE_WINDOW, LOGIN_FAILURES_ALLOWED
        )
        throttled = len(failures) >= LOGIN_FAILURES_ALLOWED
        if not throttled:
            # An unknown username leaves None: checked against the dummy hash below.
            with contextlib.suppress(stored.NotFound):
                found = await uow.officers.get_by_username(command.username)
    if throttled:
        # Answered after the same pause as a refusal for load, out of the transaction: a
        # client that tries again at once cannot make refusals a flood of queries.
        await asyncio.sleep(passwords.refusal_pause_s)
        raise TooManyAttempts(
            "too_many_attempts",
            "too many failed logins for this username; try again later",
            retry_after_s=_retry_after_s(failures, now),
        )
    usable = found if found is not None and found.active else None
    # On the password pool and outside any transaction, so logins never stall ingestion,
    # the feed, or the connection pool.
    matches = await passwords.verify(
        usable.password_hash if usable is not None else None, command.password
    )
    if usable is None or not matches:
        async with uow:
            await uow.officers.record_login_failure(command.username, clock.now())
        raise Unauthenticated("invalid_credentials", "unknown username or wrong password")
    fresh_hash = await _rehashed(passwords, usable.password_hash, command.password)
    token = new_token()
    expires_at = clock.now() + timedelta(seconds=ttl_s)
    async with uow:
        if fresh_hash is not None:
            await uow.officers.set_password_hash(usable.id, fresh_hash)
        await uow.officers.store_token(token_hash(token), usable.id, expires_at)
    return IssuedToken(token, expires_at, usable.role)


async def _rehashed(passwords: PasswordWork, stored_hash: str, password: str) -> str | None:
    """A hash of ``password`` with today's parameters when ``stored_hash`` was made with
    others (the password is at hand only now); None when none is needed or the password
    pool is busy (the next login tries again)."""
    if not needs_rehash(stored_hash):
        return None
    try:
        return await passwords.hash(password)
    except TryAgain:
        return None


@dataclass(frozen=True, slots=True)
class Logout(Command[bytes]):
    """Revoke the bearer token ``token`` at once: every later request with it is refused.
    Answers the token's digest, which names it to the live feeds it opened."""

    token: str


async def logout(command: Logout, uow: UnitOfWork) -> bytes:
    digest = token_hash(command.token)
    async with uow:
        if not await uow.officers.revoke_token(digest):
            # Revoked by another request since this one was authenticated.
            raise Unauthenticated("unauthorized", "the bearer token is unknown or has expired")
    return digest
