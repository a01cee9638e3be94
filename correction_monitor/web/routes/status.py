"""A subject's live status (``service/status.py``): latest position, contact, open alerts,
for the feed and the console; reading it is audited there."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from correction_monitor.domain.timeutil import iso
from correction_monitor.service.status import ReadSubjectStatus
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import json_response, refuse_nul
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.params import int_param

routes = web.RouteTableDef()


@routes.get("/api/v1/subjects/{id}/status")
async def subject_status(request: web.Request) -> web.Response:
    who = await officer(request)
    subject_id = int_param(request, "id")
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    command = ReadSubjectStatus(
        actor=who, subject_id=subject_id, purpose=purpose, request_id=request.get(REQUEST_ID)
    )
    status = await handle(request, command)
    latest, contact = status.latest_position, status.contact
    position: dict[str, Any] | None = None
    if latest is not None:
        position = {
            "at": iso(latest.at),
            "lon": latest.lon,
            "lat": latest.lat,
            "accuracy_m": latest.accuracy_m,
            "source": latest.source,
        }
    return json_response(
        {
            "subject_id": status.subject_id,
            "latest_position": position,
            "last_fix_at": iso(contact.last_fix_at) if contact else None,
            "last_contact_at": iso(contact.last_contact_at) if contact else None,
            "lost_contact": bool(contact and contact.lost_contact_since),
            "lost_contact_total_s": contact.lost_contact_total_s if contact else 0.0,
            "open_alerts": [a.to_json() for a in status.open_alerts],
        }
    )
