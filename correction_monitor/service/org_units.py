"""Org units: county bureaus (县局) and their stations (司法所)."""

from __future__ import annotations

from dataclasses import dataclass

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal
from correction_monitor.domain.models import OrgUnit
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Conflict, Forbidden
from correction_monitor.service.jurisdiction import visible_unit
from correction_monitor.service.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class PlacedUnit:
    """An org unit with the code of the unit above it (None at the top)."""

    unit: OrgUnit
    parent_code: str | None


@dataclass(frozen=True, slots=True)
class CreateOrgUnit(Command[PlacedUnit]):
    """Create a unit under ``parent_code`` (a top-level unit: administrators only).

    ``timezone`` is an IANA name the caller has checked (the station's local time for
    curfews, terms and leave).
    """

    actor: Principal
    code: str
    name: str
    parent_code: str | None
    timezone: str
    request_id: str | None = None


async def create_org_unit(command: CreateOrgUnit, uow: UnitOfWork) -> PlacedUnit:
    who = command.actor
    async with uow:
        parent_id = None
        if command.parent_code is not None:
            parent_id = (await visible_unit(uow, who, command.parent_code)).id
        elif who.scope is not None:
            raise Forbidden("only an administrator may create a top-level org unit")
        try:
            unit = await uow.org_units.add(command.code, command.name, parent_id, command.timezone)
        except stored.AlreadyExists as exc:
            raise Conflict("org_unit_exists", str(exc)) from exc
        uow.audit(
            officer_id=who.officer_id,
            action="org_unit.create",
            request_id=command.request_id,
            detail={"org_unit_id": unit.id, "code": unit.code, "parent_code": command.parent_code},
        )
    return PlacedUnit(unit, command.parent_code)


@dataclass(frozen=True, slots=True)
class ListOrgUnits(Command[list[PlacedUnit]]):
    """The units within the caller's jurisdiction, oldest first."""

    actor: Principal


async def list_org_units(command: ListOrgUnits, uow: UnitOfWork) -> list[PlacedUnit]:
    async with uow:
        units = await uow.org_units.all()
    codes = {u.id: u.code for u in units}
    return [
        PlacedUnit(u, codes.get(u.parent_id) if u.parent_id is not None else None)
        for u in units
        if command.actor.sees(u.id)
    ]
