"""Night patrols (夜间巡查): teams, plans per unit and night, supervisors' edits, publishing
and the forecast (docs/patrols.md). Plans name subjects by id with the reasons they were
chosen; homes and route geometry are in the exports (``.geojson``, ``.csv``, ``/sheet``),
whose paths the plan route (digits only) leaves alone.

Officers read plans; supervisors, county administrators and administrators make, edit and
publish them, and configure teams.
"""

from __future__ import annotations

from datetime import date, time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, StrictInt

from correction_monitor.domain.access import CASEWORK_ROLES, Role
from correction_monitor.domain.patrol import Plan, PlanRoute
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.patrols import (
    CreatePlan,
    CreateTeam,
    EditPlan,
    Forecast,
    GetPlan,
    ListPlans,
    ListTeams,
    PlacedPlan,
    PlacedTeam,
    PublishPlan,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, parse_model, read_json
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.params import RowId, choice_query, int_param

routes = web.RouteTableDef()

PLAN_STATUSES = frozenset({"draft", "published"})

PLANNERS = frozenset({Role.SUPERVISOR, Role.COUNTY_ADMIN, Role.ADMIN})
READERS = CASEWORK_ROLES | {Role.AUDITOR}
SEED_MAX = 2**63 - 1


def _hhmm(value: str, field: str) -> time:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise bad_request("invalid_request", f"'{field}' must be HH:MM", field=field) from None
    if len(value) != 5:
        raise bad_request("invalid_request", f"'{field}' must be HH:MM", field=field)
    return parsed


def _date(value: str, field: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise bad_request(
            "invalid_request", f"'{field}' must be a date YYYY-MM-DD", field=field
        ) from None


def team_json(placed: PlacedTeam) -> dict[str, Any]:
    t = placed.team
    return {
        "id": t.id,
        "org_unit": placed.org_unit,
        "name": t.name,
        "start": {"lat": t.lat, "lon": t.lon, "crs": "wgs84", "given_crs": t.crs},
        "capacity": t.capacity,
        "window": {
            "start": t.window_start.strftime("%H:%M"),
            "end": t.window_end.strftime("%H:%M"),
        },
        "speed_kmh": t.speed_kmh,
        "stop_minutes": t.stop_minutes,
        "active": t.active,
    }


def _route_json(route: PlanRoute) -> dict[str, Any]:
    return {
        "team_id": route.team_id,
        "stops": [
            {
                "subject_id": s.subject_id,
                "seq": s.seq,
                "eta": iso(s.eta),
                "reasons": list(s.reasons),
            }
            for s in route.stops
        ],
        "distance_m": round(route.distance_m, 1),
        "duration_s": round(route.duration_s, 1),
    }


def plan_json(plan: Plan, org_unit: str) -> dict[str, Any]:
    """The contract's Plan."""
    return {
        "id": plan.id,
        "org_unit": org_unit,
        "date": plan.night.isoformat(),
        "seed": plan.seed,
        "status": plan.status,
        "routes": [_route_json(r) for r in plan.routes],
        "unassigned": [{"subject_id": sid, "reason": why} for sid, why in plan.unassigned],
    }


def _placed_json(placed: PlacedPlan) -> dict[str, Any]:
    return plan_json(placed.plan, placed.org_unit)


class StartIn(BaseModel):
    lat: float
    lon: float
    crs: str = "wgs84"


class WindowIn(BaseModel):
    start: str = Field(max_length=5)
    end: str = Field(max_length=5)


class TeamIn(BaseModel):
    org_unit: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    start: StartIn
    capacity: StrictInt = Field(ge=1, le=200)
    window: WindowIn
    speed_kmh: float | None = Field(default=None, gt=0, le=200)
    stop_minutes: float | None = Field(default=None, ge=0, le=600)


@routes.post("/api/v1/patrol-teams")
async def create_team(request: web.Request) -> web.Response:
    who = await officer(request, PLANNERS)
    body = parse_model(TeamIn, await read_json(request))
    placed = await handle(
        request,
        CreateTeam(
            who=who,
            org_unit=body.org_unit,
            name=body.name,
            lon=body.start.lon,
            lat=body.start.lat,
            crs=body.start.crs,
            capacity=body.capacity,
            window_start=_hhmm(body.window.start, "window.start"),
            window_end=_hhmm(body.window.end, "window.end"),
            speed_kmh=body.speed_kmh,
            stop_minutes=body.stop_minutes,
            request_id=request.get(REQUEST_ID),
        ),
    )
    return json_response(team_json(placed), status=201)


@routes.get("/api/v1/patrol-teams")
async def list_teams(request: web.Request) -> web.Response:
    who = await officer(request, READERS)
    teams = await handle(request, ListTeams(who, request.query.get("org_unit")))
    return json_response({"teams": [team_json(t) for t in teams]})


class PlanIn(BaseModel):
    org_unit: str = Field(min_length=1, max_length=64)
    date: str = Field(max_length=10)
    seed: StrictInt | None = Field(default=None, ge=0, le=SEED_MAX)


@routes.post("/api/v1/patrol-plans")
async def create_plan(request: web.Request) -> web.Response:
    who = await officer(request, PLANNERS)
    body = parse_model(PlanIn, await read_json(request))
    placed = await handle(
        request,
        CreatePlan(
            who=who,
            org_unit=body.org_unit,
            night=_date(body.date, "date"),
            seed=body.seed,
            request_id=request.get(REQUEST_ID),
        ),
    )
    return json_response(_placed_json(placed), status=201)


class ForecastIn(BaseModel):
    org_unit: str = Field(min_length=1, max_length=64)
    start: str = Field(max_length=10)
    nights: StrictInt
    seed: StrictInt | None = Field(default=None, ge=0, le=SEED_MAX)


@routes.post("/api/v1/patrol-plans/forecast")
async def forecast(request: web.Request) -> web.Response:
    who = await officer(request, PLANNERS)
    body = parse_model(ForecastIn, await read_json(request))
    result = await handle(
        request,
        Forecast(
            who=who,
            org_unit=body.org_unit,
            start=_date(body.start, "start"),
            nights=body.nights,
            seed=body.seed,
        ),
    )
    return json_response(
        {
            "nights": [_placed_json(p) for p in result.nights],
            "overdue": [{"subject_id": sid, "date": d.isoformat()} for sid, d in result.overdue],
            "runtime_s": round(result.runtime_s, 3),
        }
    )


@routes.get("/api/v1/patrol-plans")
async def list_plans(request: web.Request) -> web.Response:
    """The plans in the caller's jurisdiction, latest nights first: ``?org_unit=`` (a unit
    and its stations), ``?date=YYYY-MM-DD``, ``?status=draft|published``."""
    who = await officer(request, READERS)
    raw_date = request.query.get("date") or None
    command = ListPlans(
        who,
        org_unit=request.query.get("org_unit") or None,
        night=_date(raw_date, "date") if raw_date is not None else None,
        status=choice_query(request, "status", PLAN_STATUSES),
        request_id=request.get(REQUEST_ID),
    )
    placed = await handle(request, command)
    return json_response({"plans": [_placed_json(p) for p in placed]})


@routes.get(r"/api/v1/patrol-plans/{plan_id:\d+}")
async def get_plan(request: web.Request) -> web.Response:
    who = await officer(request, READERS)
    placed = await handle(
        request, GetPlan(who, int_param(request, "plan_id"), request.get(REQUEST_ID))
    )
    return json_response(_placed_json(placed))


@routes.post(r"/api/v1/patrol-plans/{plan_id:\d+}/publish")
async def publish_plan(request: web.Request) -> web.Response:
    who = await officer(request, PLANNERS)
    placed = await handle(
        request, PublishPlan(who, int_param(request, "plan_id"), request.get(REQUEST_ID))
    )
    return json_response(_placed_json(placed))


class EditIn(BaseModel):
    op: str = Field(max_length=10)
    subject_id: RowId
    with_subject_id: RowId | None = None
    team_id: RowId | None = None
    reason: str = Field(min_length=1, max_length=2000)


@routes.post(r"/api/v1/patrol-plans/{plan_id:\d+}/edits")
async def edit_plan(request: web.Request) -> web.Response:
    who = await officer(request, PLANNERS)
    plan_id = int_param(request, "plan_id")
    body = parse_model(EditIn, await read_json(request))
    placed = await handle(
        request,
        EditPlan(
            who=who,
            plan_id=plan_id,
            op=body.op,
            subject_id=body.subject_id,
            reason=body.reason,
            with_subject_id=body.with_subject_id,
            team_id=body.team_id,
            request_id=request.get(REQUEST_ID),
        ),
    )
    return json_response(_placed_json(placed))
