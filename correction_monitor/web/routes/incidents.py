"""Incidents: the alerts of one event, grouped (``domain/incidents.py``)."""

from __future__ import annotations

from aiohttp import web

from correction_monitor.service.incidents import GetIncident
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import json_response, refuse_nul
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.params import int_param

routes = web.RouteTableDef()


@routes.get("/api/v1/incidents/{id}")
async def get_incident(request: web.Request) -> web.Response:
    """The incident with its alerts (oldest first); audited as ``incident.read`` with the
    optional ``purpose``."""
    who = await officer(request)
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    command = GetIncident(
        actor=who,
        incident_id=int_param(request, "id"),
        purpose=purpose,
        request_id=request.get(REQUEST_ID),
    )
    found = await handle(request, command)
    return json_response(
        {**found.incident.to_json(), "alerts": [a.to_json() for a in found.alerts]}
    )
