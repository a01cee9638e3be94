"""A subject's live status: latest position, contact, open alerts (for the feed and console).

The latest position comes from Redis (hot state) and falls back to PostgreSQL when Redis is
down; reading it is a read of location data, so it is audited like a track read. The open
alerts it carries (their evidence holds positions too) are named in the same audit entry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from correction_monitor.adapters import alerts, audit
from correction_monitor.domain.timeutil import iso
from correction_monitor.web.auth import officer
from correction_monitor.web.jsonio import json_response, refuse_nul
from correction_monitor.web.keys import HOT_STATE, POOL, REQUEST_ID
from correction_monitor.web.params import int_param, visible_subject

routes = web.RouteTableDef()

STATE = """
SELECT state->'ref' AS ref, max_fix_ts, last_contact_at, lost_contact_since,
       lost_contact_total_s
FROM subject_eval_state WHERE subject_id = $1
"""


@routes.get("/api/v1/subjects/{id}/status")
async def subject_status(request: web.Request) -> web.Response:
    who = await officer(request)
    subject_id = int_param(request, "id")
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await visible_subject(conn, who, subject_id)
        state = await conn.fetchrow(STATE, subject_id)
        open_alerts = await alerts.list_alerts(
            conn, who.scope, subject_id=subject_id, type_=None, status="open", limit=100
        )
        await audit.record(
            conn,
            officer_id=who.officer_id,
            action="position.read",
            subject_id=subject_id,
            purpose=purpose,
            request_id=request.get(REQUEST_ID),
            detail={"open_alert_ids": [r["id"] for r in open_alerts]},
        )
    position: dict[str, Any] | None = (
        await request.app[HOT_STATE].latest_positions([subject_id])
    ).get(subject_id)
    source = "redis"
    if position is None and state is not None and state["ref"]:
        ts, lon, lat, acc = state["ref"][:4]
        position = {"ts": ts, "lon": lon, "lat": lat, "accuracy_m": acc}
        source = "postgresql"
    if position is not None:
        position = {
            "at": iso(datetime.fromtimestamp(position["ts"], UTC)),
            "lon": position["lon"],
            "lat": position["lat"],
            "accuracy_m": position["accuracy_m"],
            "source": source,
        }
    return json_response(
        {
            "subject_id": subject_id,
            "latest_position": position,
            "last_fix_at": iso(state["max_fix_ts"]) if state else None,
            "last_contact_at": iso(state["last_contact_at"]) if state else None,
            "lost_contact": bool(state and state["lost_contact_since"]),
            "lost_contact_total_s": state["lost_contact_total_s"] if state else 0.0,
            "open_alerts": [alerts.to_json(r) for r in open_alerts],
        }
    )
