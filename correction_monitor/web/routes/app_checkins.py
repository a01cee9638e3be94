"""Check-ins, the subject's app: its own check-ins and its answers (device bearer token).

The app sees only its subject's check-ins: another subject's is 404, as is a drawn
challenge before it opens (a challenge announced ahead would not be a surprise).
"""

from __future__ import annotations

import math
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from correction_monitor.domain.checkins import Face
from correction_monitor.domain.timeutil import BadInstant, parse_instant
from correction_monitor.service.checkins import AnswerCheckin, ListMyCheckins
from correction_monitor.web.device_auth import device
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, parse_model, read_json
from correction_monitor.web.keys import CLOCK
from correction_monitor.web.params import int_param
from correction_monitor.web.routes.checkins import query_instant
from geofences.crs import CRS

routes = web.RouteTableDef()


@routes.get("/api/v1/me/checkins")
async def my_checkins(request: web.Request) -> web.Response:
    me = await device(request)
    command = ListMyCheckins(
        subject_id=me.subject_id,
        start=query_instant(request, "from"),
        end=query_instant(request, "to"),
    )
    found = await handle(request, command)
    now = request.app[CLOCK].now()
    return json_response({"checkins": [c.to_json(now) for c in found]})


class FaceIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    score: float = Field(ge=0, le=1, allow_inf_nan=False)
    liveness: StrictBool
    vendor: str | None = Field(default=None, max_length=200)


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ts: str | int | float
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    crs: CRS = CRS.WGS84
    mock: StrictBool = False
    face: FaceIn | None = None
    photo_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("ts")
    @classmethod
    def _finite(cls, value: str | int | float) -> str | int | float:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("ts must be a finite number")
        return value


def _ts(value: str | int | float) -> datetime:
    try:
        return parse_instant(value)
    except BadInstant as exc:
        raise bad_request("invalid_request", f"ts: {exc}") from exc
    except (ValueError, OverflowError, OSError) as exc:
        raise bad_request("invalid_request", f"ts: {value!r} is out of range") from exc


@routes.post("/api/v1/me/checkins/{id}")
async def answer(request: web.Request) -> web.Response:
    me = await device(request)
    checkin_id = int_param(request, "id")
    body = parse_model(AnswerIn, await read_json(request))
    face = body.face
    command = AnswerCheckin(
        subject_id=me.subject_id,
        device_id=me.device_id,
        checkin_id=checkin_id,
        ts=_ts(body.ts),
        lat=body.lat,
        lon=body.lon,
        accuracy_m=body.accuracy_m,
        crs=body.crs,
        mock=body.mock,
        face=Face(face.score, face.liveness, face.vendor) if face is not None else None,
        photo_sha256=body.photo_sha256.lower() if body.photo_sha256 is not None else None,
    )
    checkin = await handle(request, command)
    return json_response(checkin.to_json(request.app[CLOCK].now()))
