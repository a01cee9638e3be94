"""Check-ins, officers' side: a subject's own windows (一人一策), on-demand challenges, the
subject's check-ins and their review, and the challenge draws auditors re-derive.

Each route reads the request, runs one command of ``service/checkins.py`` and renders its
result. Casework roles act; every officer role reads, within its jurisdiction (a subject
outside it is 404).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from correction_monitor.domain.access import CASEWORK_ROLES
from correction_monitor.domain.checkins import CheckinStatus
from correction_monitor.domain.timeutil import BadInstant, parse_instant
from correction_monitor.policy import CheckinWindow, parse_hhmm
from correction_monitor.service.checkins import (
    ClearCheckinSchedule,
    IssueChallenge,
    ListCheckinDraws,
    ListSubjectCheckins,
    ReviewCheckin,
    SetCheckinSchedule,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, parse_model, read_json, refuse_nul
from correction_monitor.web.keys import CLOCK, REQUEST_ID
from correction_monitor.web.params import int_param

routes = web.RouteTableDef()


def query_instant(request: web.Request, name: str) -> datetime | None:
    """The query parameter ``name`` as an instant (ISO-8601 or epoch milliseconds; a time
    without offset is read as UTC); None when absent; 400 naming it when unreadable."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_instant(raw)
    except BadInstant as exc:
        try:
            written = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise bad_request("invalid_time", f"{name}: {exc}") from exc
        if written.tzinfo is not None:
            raise bad_request("invalid_time", f"{name}: {exc}") from exc
        return written.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise bad_request("invalid_time", f"{name}: {raw!r} is out of range") from exc


class WindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: list[Annotated[int, Field(ge=1, le=7, strict=True)]] = Field(min_length=1, max_length=7)
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: list[WindowIn] = Field(max_length=24)


@routes.put("/api/v1/subjects/{id}/checkin-schedule")
async def set_schedule(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    subject_id = int_param(request, "id")
    body = parse_model(ScheduleIn, await read_json(request))
    windows = tuple(
        CheckinWindow(frozenset(w.days), parse_hhmm(w.start), parse_hhmm(w.end))
        for w in body.windows
    )
    command = SetCheckinSchedule(
        actor=who, subject_id=subject_id, windows=windows, request_id=request.get(REQUEST_ID)
    )
    stored = await handle(request, command)
    return json_response({"subject_id": subject_id, "windows": stored, "own": True})


@routes.delete("/api/v1/subjects/{id}/checkin-schedule")
async def clear_schedule(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    command = ClearCheckinSchedule(
        actor=who, subject_id=int_param(request, "id"), request_id=request.get(REQUEST_ID)
    )
    await handle(request, command)
    return web.Response(status=204)


class ChallengeIn(BaseModel):
    answer_within_s: int = Field(ge=60, le=86400, strict=True)


@routes.post("/api/v1/subjects/{id}/challenges")
async def issue_challenge(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    subject_id = int_param(request, "id")
    body = parse_model(ChallengeIn, await read_json(request))
    command = IssueChallenge(
        actor=who,
        subject_id=subject_id,
        answer_within_s=body.answer_within_s,
        request_id=request.get(REQUEST_ID),
    )
    checkin = await handle(request, command)
    return json_response(checkin.to_officer_json(request.app[CLOCK].now()), status=201)


@routes.get("/api/v1/subjects/{id}/checkins")
async def list_checkins(request: web.Request) -> web.Response:
    who = await officer(request)
    subject_id = int_param(request, "id")
    start, end = query_instant(request, "from"), query_instant(request, "to")
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    command = ListSubjectCheckins(
        actor=who,
        subject_id=subject_id,
        start=start,
        end=end,
        purpose=purpose,
        request_id=request.get(REQUEST_ID),
    )
    found = await handle(request, command)
    now = request.app[CLOCK].now()
    return json_response({"checkins": [c.to_officer_json(now) for c in found]})


class ReviewIn(BaseModel):
    decision: CheckinStatus
    note: str | None = Field(default=None, max_length=4000)

    @field_validator("decision")
    @classmethod
    def _decision(cls, value: CheckinStatus) -> CheckinStatus:
        if value not in (CheckinStatus.PASSED, CheckinStatus.FAILED):
            raise ValueError("decision must be 'passed' or 'failed'")
        return value


@routes.post("/api/v1/checkins/{id}/review")
async def review(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    checkin_id = int_param(request, "id")
    body = parse_model(ReviewIn, await read_json(request))
    command = ReviewCheckin(
        actor=who,
        checkin_id=checkin_id,
        decision=body.decision,
        note=body.note,
        request_id=request.get(REQUEST_ID),
    )
    checkin = await handle(request, command)
    return json_response(checkin.to_officer_json(request.app[CLOCK].now()))


@routes.get("/api/v1/subjects/{id}/checkin-draws")
async def list_draws(request: web.Request) -> web.Response:
    who = await officer(request)
    command = ListCheckinDraws(
        actor=who, subject_id=int_param(request, "id"), request_id=request.get(REQUEST_ID)
    )
    draws = await handle(request, command)
    return json_response({"draws": [d.to_json() for d in draws]})
