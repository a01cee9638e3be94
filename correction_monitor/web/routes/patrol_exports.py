"""A night patrol plan's exports (GeoJSON, CSV, the printed zh-CN sheet) and the outcomes
officers record at its stops (docs/patrol-outcomes.md). Each reads the request, runs one
command of ``service/patrol_exports.py`` or ``service/patrol_outcomes.py`` and renders it."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.domain.patrol_outcomes import MAX_NOTE, Outcome
from correction_monitor.domain.patrol_sheet import csv_text, geojson
from correction_monitor.domain.timeutil import parse_instant
from correction_monitor.service.patrol_exports import (
    EXPORT_READERS,
    ExportPlan,
    RenderPatrolSheet,
)
from correction_monitor.service.patrol_outcomes import (
    OUTCOME_WRITERS,
    PatrolFix,
    RecordStopOutcome,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, parse_json, parse_model, refuse_nul
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.params import int_param
from geofences.crs import CRS, to_wgs84

routes = web.RouteTableDef()

PRIVATE = {"Cache-Control": "private, no-store"}


def _purpose(request: web.Request) -> str | None:
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    return purpose


async def _export(request: web.Request, fmt: str) -> ExportPlan:
    who = await officer(request, EXPORT_READERS)
    return ExportPlan(
        actor=who,
        plan_id=int_param(request, "id"),
        format=fmt,
        purpose=_purpose(request),
        request_id=request.get(REQUEST_ID),
    )


def _attachment(name: str) -> str:
    return f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"


@routes.get(r"/api/v1/patrol-plans/{id:\d+}.geojson")
async def plan_geojson(request: web.Request) -> web.Response:
    """The plan as a GeoJSON FeatureCollection: routes as LineStrings, stops as Points."""
    plan = await handle(request, await _export(request, "geojson"))
    return web.Response(
        body=orjson.dumps(geojson(plan)),
        content_type="application/geo+json",
        headers=PRIVATE,
    )


@routes.get(r"/api/v1/patrol-plans/{id:\d+}.csv")
async def plan_csv(request: web.Request) -> web.Response:
    """One row per stop (UTF-8 with a byte-order mark, so spreadsheets read the Chinese)."""
    plan = await handle(request, await _export(request, "csv"))
    name = f"patrol-{plan.plan_id}-{plan.night.isoformat()}.csv"
    return web.Response(
        body=("\ufeff" + csv_text(plan)).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers=PRIVATE | {"Content-Disposition": _attachment(name)},
    )


@routes.get(r"/api/v1/patrol-plans/{id:\d+}/sheet")
async def plan_sheet(request: web.Request) -> web.Response:
    """The printed sheet: a zh-CN A4 page per team."""
    who = await officer(request, EXPORT_READERS)
    command = RenderPatrolSheet(
        actor=who,
        plan_id=int_param(request, "id"),
        purpose=_purpose(request),
        request_id=request.get(REQUEST_ID),
    )
    pdf = await handle(request, command)
    return web.Response(
        body=pdf.content,
        content_type="application/pdf",
        headers=PRIVATE
        | {
            "Content-Disposition": (
                f"inline; filename=\"{pdf.file_name}\"; filename*=UTF-8''{quote(pdf.file_name)}"
            )
        },
    )


class FixBody(BaseModel):
    model_config = {"extra": "forbid"}

    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
    accuracy_m: Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)] | None = None
    crs: Literal["wgs84", "gcj02", "bd09"] = "wgs84"


class OutcomeBody(BaseModel):
    model_config = {"extra": "forbid"}

    outcome: Outcome
    at: Annotated[str, Field(min_length=1, max_length=64)] | int
    note: Annotated[str, Field(max_length=MAX_NOTE)] | None = None
    fix: FixBody | None = None


@routes.post(r"/api/v1/patrol-plans/{id:\d+}/stops/{subject_id:\d+}/outcome")
async def record_outcome(request: web.Request) -> web.Response:
    """Record (or correct) what the visit of a stop found."""
    who = await officer(request, OUTCOME_WRITERS)
    plan_id = int_param(request, "id")
    subject_id = int_param(request, "subject_id")
    body = parse_model(OutcomeBody, parse_json(await request.read()))
    try:
        at = parse_instant(body.at)
    except (ValueError, OverflowError, OSError) as exc:
        raise bad_request("invalid_request", f"at: {exc}") from exc
    fix = None
    if body.fix is not None:
        lon, lat = to_wgs84(body.fix.lon, body.fix.lat, CRS(body.fix.crs))
        fix = PatrolFix(float(lat), float(lon), body.fix.accuracy_m, body.fix.crs)
    command = RecordStopOutcome(
        actor=who,
        plan_id=plan_id,
        subject_id=subject_id,
        outcome=body.outcome,
        at=at,
        note=body.note.strip() or None if body.note else None,
        fix=fix,
        request_id=request.get(REQUEST_ID),
    )
    stop = await handle(request, command)
    return json_response(stop.to_json())
