"""Officer accounts: ``POST /api/v1/officers`` creates one (county administrators within
their county, administrators anywhere), ``GET /api/v1/officers`` lists those within the
caller's jurisdiction."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from correction_monitor.service.officers import (
    OFFICER_CREATORS,
    ListOfficers,
    PlacedOfficer,
    RegisterOfficer,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import json_response, parse_model, read_object, refuse_nul
from correction_monitor.web.keys import REQUEST_ID

routes = web.RouteTableDef()


class OfficerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    password: str = Field(min_length=1, max_length=1000)
    role: str = Field(min_length=1, max_length=64)
    org_unit: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()-]{2,30}$")


def officer_json(placed: PlacedOfficer) -> dict[str, Any]:
    """An officer as the API shows them: never their password hash."""
    found = placed.officer
    return {
        "id": found.id,
        "username": found.username,
        "role": found.role,
        "org_unit": placed.org_code,
        "name": found.display_name,
        "phone": found.phone,
        "active": found.active,
    }


@routes.post("/api/v1/officers")
async def create_officer(request: web.Request) -> web.Response:
    who = await officer(request, OFFICER_CREATORS)
    body = parse_model(OfficerIn, await read_object(request))
    placed = await handle(
        request,
        RegisterOfficer(
            actor=who,
            username=body.username,
            password=body.password,
            role=body.role,
            org_unit=body.org_unit,
            name=body.name,
            phone=body.phone,
            request_id=request.get(REQUEST_ID),
        ),
    )
    return json_response(officer_json(placed), status=201)


@routes.get("/api/v1/officers")
async def list_officers(request: web.Request) -> web.Response:
    who = await officer(request)
    org_unit = request.query.get("org_unit") or None
    refuse_nul(org_unit)
    placed = await handle(request, ListOfficers(actor=who, org_unit=org_unit))
    return json_response({"officers": [officer_json(p) for p in placed]})
