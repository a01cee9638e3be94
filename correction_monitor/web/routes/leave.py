"""Leave (外出) endpoints: the subject's app applies, lists, cancels and reports
(``/api/v1/me/leave``, device token); officers list, read and decide (``/api/v1/leave``).

Each reads the request, runs one command of ``service/leave.py`` and renders its result. A
leave's ``start`` and ``end`` are shown in its station's time zone (an end given as a date
is that day's last microsecond, see ``domain/leave.py``). An approval drops the subject's
compiled profile in this process at once, so the next fix is evaluated with the leave;
other processes notice within seconds (``ingest/profiles.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.domain.access import CASEWORK_ROLES
from correction_monitor.domain.leave import LeaveReport, LeaveStatus
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.leave import (
    ApplyLeave,
    CancelLeave,
    DecideLeave,
    GetLeave,
    ListLeave,
    ListMyLeave,
    PlacedLeave,
    ReportLeave,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.device_auth import device
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import json_response, parse_json, parse_model, refuse_nul
from correction_monitor.web.keys import PROFILES, REQUEST_ID
from correction_monitor.web.params import choice_query, id_query, int_param

routes = web.RouteTableDef()

STATUSES = frozenset(s.value for s in LeaveStatus)
Instant = str | int | float


def _local(at: datetime | None, tz: ZoneInfo) -> str | None:
    return at.astimezone(tz).isoformat() if at is not None else None


def leave_json(placed: PlacedLeave) -> dict[str, Any]:
    """The contract's Leave, with the application's note, what the app gave as start and
    end, and the decision's note."""
    leave, tz = placed.leave, ZoneInfo(placed.timezone)
    return {
        "id": leave.id,
        "subject_id": leave.subject_id,
        "destination": leave.destination,
        "destination_fence_id": leave.destination_fence_id,
        "reason": leave.reason.value,
        "note": leave.note,
        "start": _local(leave.starts_at, tz),
        "end": _local(leave.ends_at, tz),
        "start_given": leave.start_text,
        "end_given": leave.end_text,
        "timezone": placed.timezone,
        "days": leave.days,
        "commuting": leave.commuting,
        "status": leave.status.value,
        "approval_level": leave.approval_level.value,
        "applied_at": iso(leave.applied_at),
        "decided_by": leave.decided_by,
        "decided_at": iso(leave.decided_at),
        "decision_note": leave.decision_note,
    }


def report_json(report: LeaveReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "leave_id": report.leave_id,
        "kind": report.kind.value,
        "ts": iso(report.ts),
        "lat": report.lat,
        "lon": report.lon,
        "accuracy_m": report.accuracy_m,
        "inside": report.inside,
        "flagged": report.flagged,
        "received_at": iso(report.received_at),
    }


async def _body(request: web.Request, *, optional: bool = False) -> Any:
    """The JSON body; with ``optional``, an empty body is an empty object."""
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    return parse_json(raw)


# -- the subject's app -----------------------------------------------------------------------


class ApplyIn(BaseModel):
    destination: dict[str, Any]
    reason: str = Field(max_length=40)
    note: str | None = Field(default=None, max_length=4000)
    start: Instant
    end: Instant
    commuting: bool = False


@routes.post("/api/v1/me/leave")
async def apply(request: web.Request) -> web.Response:
    me = await device(request)
    body = parse_model(ApplyIn, await _body(request))
    command = ApplyLeave(
        subject_id=me.subject_id,
        device_id=me.device_id,
        destination=body.destination,
        reason=body.reason,
        note=body.note,
        start=body.start,
        end=body.end,
        commuting=body.commuting,
    )
    return json_response(leave_json(await handle(request, command)), status=201)


@routes.get("/api/v1/me/leave")
async def my_leave(request: web.Request) -> web.Response:
    me = await device(request)
    leaves = await handle(request, ListMyLeave(subject_id=me.subject_id))
    return json_response({"leave": [leave_json(p) for p in leaves]})


@routes.post("/api/v1/me/leave/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    me = await device(request)
    command = CancelLeave(
        subject_id=me.subject_id, device_id=me.device_id, leave_id=int_param(request, "id")
    )
    return json_response(leave_json(await handle(request, command)))


class ReportIn(BaseModel):
    kind: str = Field(max_length=20)
    ts: Instant
    lat: float
    lon: float
    accuracy_m: float | None = None
    crs: str | None = Field(default=None, max_length=10)


@routes.post("/api/v1/me/leave/{id}/reports")
async def report(request: web.Request) -> web.Response:
    me = await device(request)
    leave_id = int_param(request, "id")
    body = parse_model(ReportIn, await _body(request))
    command = ReportLeave(
        subject_id=me.subject_id,
        device_id=me.device_id,
        leave_id=leave_id,
        kind=body.kind,
        ts=body.ts,
        lat=body.lat,
        lon=body.lon,
        accuracy_m=body.accuracy_m,
        crs=body.crs,
    )
    return json_response(report_json(await handle(request, command)), status=201)


# -- officers ------------------------------------------------------------------------------


@routes.get("/api/v1/leave")
async def list_leave(request: web.Request) -> web.Response:
    who = await officer(request)
    status = choice_query(request, "status", STATUSES)
    subject_id = id_query(request, "subject_id")
    if subject_id == 0:
        return json_response({"leave": []})
    command = ListLeave(
        actor=who,
        status=LeaveStatus(status) if status is not None else None,
        subject_id=subject_id,
    )
    return json_response({"leave": [leave_json(p) for p in await handle(request, command)]})


@routes.get("/api/v1/leave/{id}")
async def get_leave(request: web.Request) -> web.Response:
    who = await officer(request)
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    command = GetLeave(
        actor=who,
        leave_id=int_param(request, "id"),
        purpose=purpose,
        request_id=request.get(REQUEST_ID),
    )
    found = await handle(request, command)
    return json_response(
        leave_json(found.placed) | {"reports": [report_json(r) for r in found.reports]}
    )


class ApproveIn(BaseModel):
    note: str | None = Field(default=None, max_length=4000)


class RejectIn(BaseModel):
    note: str = Field(max_length=4000)


@routes.post("/api/v1/leave/{id}/approve")
async def approve(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    leave_id = int_param(request, "id")
    body = parse_model(ApproveIn, await _body(request, optional=True))
    command = DecideLeave(
        actor=who,
        leave_id=leave_id,
        approve=True,
        note=body.note,
        request_id=request.get(REQUEST_ID),
    )
    placed = await handle(request, command)
    # This process evaluates the subject's next fix with the leave (others within seconds).
    request.app[PROFILES].forget(placed.leave.subject_id)
    return json_response(leave_json(placed))


@routes.post("/api/v1/leave/{id}/reject")
async def reject(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    leave_id = int_param(request, "id")
    body = parse_model(RejectIn, await _body(request))
    command = DecideLeave(
        actor=who,
        leave_id=leave_id,
        approve=False,
        note=body.note,
        request_id=request.get(REQUEST_ID),
    )
    return json_response(leave_json(await handle(request, command)))
