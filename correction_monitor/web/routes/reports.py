"""Reports: the alert-quality report (``service/reports.py`` says what each figure means)."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from correction_monitor.domain.timeutil import parse_instant
from correction_monitor.service.reports import AlertQualityReport
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, refuse_nul

routes = web.RouteTableDef()

GROUPINGS = ("type", "station")


def _instant(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name) or None
    if raw is None:
        return None
    refuse_nul(raw)
    try:
        return parse_instant(raw)
    except (ValueError, OverflowError, OSError) as exc:
        raise bad_request("invalid_request", f"{name}: {exc}") from exc


@routes.get("/api/v1/reports/alert-quality")
async def alert_quality(request: web.Request) -> web.Response:
    """``{"rows": [...]}`` per alert type (every type, zeros included), or per station and
    type with ``?by=station`` (rows with an ``org_unit``); alerts detected in ``[from, to)``
    within the caller's jurisdiction, narrowed to ``org_unit``'s subtree."""
    who = await officer(request)
    by = request.query.get("by") or "type"
    if by not in GROUPINGS:
        raise bad_request("invalid_request", f"by must be one of {list(GROUPINGS)}")
    org_unit = request.query.get("org_unit") or None
    refuse_nul(org_unit)
    command = AlertQualityReport(
        actor=who,
        org_unit=org_unit,
        start=_instant(request, "from"),
        end=_instant(request, "to"),
        by_station=by == "station",
    )
    rows = await handle(request, command)
    return json_response({"rows": [row.to_json() for row in rows]})
