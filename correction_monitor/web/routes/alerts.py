"""Alert endpoints: list, acknowledge, resolve, and the live SSE feed.

An alert's evidence holds positions (its first and last fixes, the distance outside), so every
read of alerts is audited like a track read (RULES.md §4): the list as ``alert.list``, one alert
as ``alert.read`` and the opening of the feed as ``alert.stream``, each with the optional
``purpose`` query parameter. The audit row is written on the connection that did the read, so
a read that cannot be audited answers an error instead of the alerts.

The feed replays the event log's alert events (PostgreSQL, the truth) after the client's
Last-Event-ID and then follows new events through the process's feed hub
(``service/feed.py``), which holds the process's one Redis subscription and reads new events
once for all its streams; when Redis is down the hub still advances by polling, so no event
is lost across processes or outages. A stream ends when its token expires or is revoked.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.adapters import alerts, audit, officers
from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.access import CASEWORK_ROLES, Principal
from correction_monitor.domain.alerts import AlertStatus, AlertType, Disposition
from correction_monitor.service.alerts import AcknowledgeAlert, ResolveAlert
from correction_monitor.service.auth import token_hash
from correction_monitor.service.feed import FeedEvent, StreamEnded
from correction_monitor.web.auth import bearer_token, officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request, not_found, unauthorized
from correction_monitor.web.jsonio import json_response, parse_model, read_json, refuse_nul
from correction_monitor.web.keys import FEED_HUB, POOL, REQUEST_ID
from correction_monitor.web.params import PG_INT_MAX, int_param

routes = web.RouteTableDef()

ALERT_TYPES = frozenset(t.value for t in AlertType)
STATUSES = frozenset(s.value for s in AlertStatus)
PG_BIGINT_MAX = 2**63 - 1
KEEPALIVE_S = 15.0
# An audit entry names at most this many alert ids and subject ids (it always has the counts).
AUDIT_IDS_MAX = 200


def _purpose(request: web.Request) -> str | None:
    """The optional ``purpose`` of a read, kept in its audit entry."""
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    return purpose


@routes.get("/api/v1/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    who = await officer(request)
    q = request.query
    try:
        subject_id = int(q["subject_id"]) if q.get("subject_id") else None
        limit = min(int(q.get("limit", "500")), 5000)
    except ValueError as exc:
        raise bad_request("invalid_request", "subject_id and limit must be integers") from exc
    if limit < 1:
        raise bad_request("invalid_request", "limit must be at least 1")
    purpose = _purpose(request)
    if subject_id is not None and not 0 < subject_id <= PG_INT_MAX:
        # No subject has such an id (and asyncpg would refuse to send it): nothing is read.
        return json_response({"alerts": []})
    type_ = q.get("type") or None
    if type_ is not None and type_ not in ALERT_TYPES:
        raise bad_request("invalid_request", f"unknown alert type {type_!r}")
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise bad_request("invalid_request", f"status must be one of {sorted(STATUSES)}")
    include_retracted = q.get("include_retracted", "").lower() in ("1", "true", "yes")
    async with request.app[POOL].acquire() as conn:
        rows = await alerts.list_alerts(
            conn,
            who.scope,
            subject_id=subject_id,
            type_=type_,
            status=status,
            limit=limit,
            include_retracted=include_retracted,
        )
        subject_ids = list(dict.fromkeys(r["subject_id"] for r in rows))
        about = subject_id
        if about is None and len(subject_ids) == 1:
            # Only one subject's alerts were read: the entry is about that subject.
            about = subject_ids[0]
        await audit.record(
            conn,
            officer_id=who.officer_id,
            action="alert.list",
            subject_id=about,
            purpose=purpose,
            request_id=request.get(REQUEST_ID),
            detail={
                "filters": {
                    "subject_id": subject_id,
                    "type": type_,
                    "status": status,
                    "limit": limit,
                    "include_retracted": include_retracted,
                },
                "alerts": len(rows),
                "alert_ids": [r["id"] for r in rows[:AUDIT_IDS_MAX]],
                "subjects": len(subject_ids),
                "subject_ids": subject_ids[:AUDIT_IDS_MAX],
            },
        )
    return json_response({"alerts": [alerts.to_json(r) for r in rows]})


async def _visible_alert(conn: asyncpg.Connection, who: Principal, alert_id: int) -> Any:
    try:
        row = await alerts.get(conn, alert_id)
    except NotFound as exc:
        raise not_found(f"alert {alert_id}") from exc
    if not who.sees(row["org_unit_id"]):
        raise not_found(f"alert {alert_id}")
    return row


@routes.post("/api/v1/alerts/{id}/acknowledge")
async def acknowledge(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    command = AcknowledgeAlert(
        actor=who, alert_id=int_param(request, "id"), request_id=request.get(REQUEST_ID)
    )
    return json_response((await handle(request, command)).to_json())


class ResolveIn(BaseModel):
    disposition: Disposition
    note: str | None = Field(default=None, max_length=4000)


@routes.post("/api/v1/alerts/{id}/resolve")
async def resolve(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    alert_id = int_param(request, "id")
    body = parse_model(ResolveIn, await read_json(request))
    command = ResolveAlert(
        actor=who,
        alert_id=alert_id,
        disposition=body.disposition,
        note=body.note,
        request_id=request.get(REQUEST_ID),
    )
    return json_response((await handle(request, command)).to_json())


def _sse(event: FeedEvent) -> bytes:
    return f"id: {event.id}\nevent: {event.kind}\ndata: ".encode() + event.data + b"\n\n"


@routes.get("/api/v1/alerts/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """``text/event-stream`` of alert changes in the caller's jurisdiction.

    Each event's id is its position in the event log (commit order); reconnecting with
    ``Last-Event-ID`` resumes right after it. Without it the stream starts with what happens
    from now on (``?since=0`` replays everything retained).

    Opening the stream is audited once (``alert.stream``, with where it starts), not each
    event it carries.
    """
    who = await officer(request)
    token = bearer_token(request)
    assert token is not None, "officer() admitted the request"
    digest = token_hash(token)
    purpose = _purpose(request)
    header_last = request.headers.get("Last-Event-ID") or None
    raw_last = header_last or request.query.get("since")
    async with request.app[POOL].acquire() as conn:
        if raw_last is not None and raw_last != "":
            try:
                last_id = int(raw_last)
            except ValueError as exc:
                raise bad_request("invalid_request", "Last-Event-ID must be an integer") from exc
            # Checked before the stream starts: a bigint overflow later could only cut it.
            if not 0 <= last_id <= PG_BIGINT_MAX:
                raise bad_request("invalid_request", "Last-Event-ID is not an event id")
            start = "Last-Event-ID" if header_last else "since"
        else:
            last_id = await alerts.last_event_id(conn)
            start = "now"
        expires_at = await officers.token_expires_at(conn, digest)
        if expires_at is None:
            # Revoked between authentication and here.
            raise unauthorized("the bearer token is unknown or has expired")
        await audit.record(
            conn,
            officer_id=who.officer_id,
            action="alert.stream",
            purpose=purpose,
            request_id=request.get(REQUEST_ID),
            detail={"start": start, "after_event_id": last_id},
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    hub = request.app[FEED_HUB]
    async with hub.subscribe(last_id, who.scope, digest, expires_at.timestamp()) as feed:
        await response.prepare(request)
        await response.write(b": connected\nretry: 2000\n\n")
        try:
            while True:
                try:
                    events = await feed.next(KEEPALIVE_S)
                except StreamEnded as ended:
                    # A comment, so clients that only know the contract's events ignore it;
                    # the reconnect that follows is refused (401) unless the token is live.
                    await response.write(f": end {ended.reason.value}\n\n".encode())
                    break
                if not events:
                    await response.write(b": keepalive\n\n")
                    continue
                await response.write(b"".join(_sse(event) for event in events))
        except ConnectionResetError:
            # The client went away; cancellation (server shutdown) propagates.
            pass
    return response


@routes.get("/api/v1/alerts/{id}")
async def get_alert(request: web.Request) -> web.Response:
    who = await officer(request)
    alert_id = int_param(request, "id")
    purpose = _purpose(request)
    async with request.app[POOL].acquire() as conn:
        row = await _visible_alert(conn, who, alert_id)
        await audit.record(
            conn,
            officer_id=who.officer_id,
            action="alert.read",
            subject_id=row["subject_id"],
            purpose=purpose,
            request_id=request.get(REQUEST_ID),
            detail={"alert_id": alert_id},
        )
    return json_response(alerts.to_json(row))
