"""Officers: creating them (the first ones from the command line), logging them in and out."""

from __future__ import annotations

import asyncio
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Role
from correction_monitor.domain.clock import Clock, SystemClock
from correction_monitor.domain.models import Officer
from correction_monitor.service.auth import hash_password, new_token, token_hash, verify_password
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Conflict, InvalidInput, Unauthenticated
from correction_monitor.service.unit_of_work import UnitOfWork

MIN_PASSWORD_LENGTH = 8


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
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput("invalid_request", f"unknown time zone {name!r}") from exc


async def create_officer(command: CreateOfficer, uow: UnitOfWork) -> Officer:
    try:
        role = Role(command.role)
    except ValueError as exc:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(
            "invalid_request", f"unknown role {command.role!r}; one of {roles}"
        ) from exc
    if len(command.password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            "weak_password", f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    _check_timezone(command.timezone)
    # argon2 costs tens of milliseconds of CPU: off the event loop, before the transaction.
    password_hash = await asyncio.to_thread(hash_password, command.password)
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


async def issue_token(
    command: IssueToken, uow: UnitOfWork, *, ttl_s: float, clock: Clock | None = None
) -> IssuedToken:
    """A token valid ``ttl_s`` seconds; Unauthenticated, alike for an unknown username, an
    inactive officer and a wrong password."""
    async with uow:
        try:
            found: Officer | None = await uow.officers.get_by_username(command.username)
        except stored.NotFound:
            found = None
    # argon2 takes tens of milliseconds of CPU: off the event loop and outside any
    # transaction, so logins never stall ingestion, the feed, or the connection pool.
    if (
        found is None
        or not found.active
        or not await asyncio.to_thread(verify_password, found.password_hash, command.password)
    ):
        raise Unauthenticated("invalid_credentials", "unknown username or wrong password")
    token = new_token()
    expires_at = (clock or SystemClock()).now() + timedelta(seconds=ttl_s)
    async with uow:
        await uow.officers.store_token(token_hash(token), found.id, expires_at)
    return IssuedToken(token, expires_at, found.role)


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
