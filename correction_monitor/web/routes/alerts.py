"""Alert endpoints: list, read, acknowledge, resolve, reopen, and the live SSE feed.

Each reads the request, runs one command of ``service/alerts.py`` (where reads of alerts are
audited, with the optional ``purpose`` query parameter) and renders its result.

The feed replays the event log's alert events (PostgreSQL, the truth) after the client's
Last-Event-ID and then follows new events through the process's feed hub
(``service/feed.py``), which holds the process's one Redis subscription and reads new events
once for all its streams; when Redis is down the hub still advances by polling, so no event
is lost across processes or outages. A stream ends when its token expires or is revoked.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.domain.access import CASEWORK_ROLES
from correction_monitor.domain.alerts import AlertStatus, AlertType, Disposition, Gravity
from correction_monitor.service.alerts import (
    REOPEN_ROLES,
    AcknowledgeAlert,
    GetAlert,
    ListAlerts,
    OpenAlertFeed,
    ReopenAlert,
    ResolveAlert,
)
from correction_monitor.service.auth import token_hash
from correction_monitor.service.feed import FeedEvent, StreamEnded
from correction_monitor.web.auth import bearer_token, officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, parse_model, read_json, refuse_nul
from correction_monitor.web.keys import FEED_HUB, REQUEST_ID
from correction_monitor.web.params import PG_INT_MAX, int_param

routes = web.RouteTableDef()

ALERT_TYPES = frozenset(t.value for t in AlertType)
STATUSES = frozenset(s.value for s in AlertStatus)
PG_BIGINT_MAX = 2**63 - 1
KEEPALIVE_S = 15.0


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
    command = ListAlerts(
        actor=who,
        subject_id=subject_id,
        type=AlertType(type_) if type_ is not None else None,
        status=AlertStatus(status) if status is not None else None,
        limit=limit,
        include_retracted=include_retracted,
        purpose=purpose,
        request_id=request.get(REQUEST_ID),
    )
    return json_response({"alerts": [a.to_json() for a in await handle(request, command)]})


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
    # 情节: minor (轻微) unless the officer says serious (较重).
    gravity: Gravity = Gravity.MINOR


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
        gravity=body.gravity,
        request_id=request.get(REQUEST_ID),
    )
    return json_response((await handle(request, command)).to_json())


class ReopenIn(BaseModel):
    reason: str = Field(min_length=1, max_length=4000)


@routes.post("/api/v1/alerts/{id}/reopen")
async def reopen(request: web.Request) -> web.Response:
    """Reopen a resolved alert (supervisor, county administrator or administrator; within
    30 days of its resolution): back to ``acknowledged``, the resolution kept in its
    history."""
    who = await officer(request, REOPEN_ROLES)
    alert_id = int_param(request, "id")
    body = parse_model(ReopenIn, await read_json(request))
    reason = body.reason.strip()
    if not reason:
        raise bad_request("invalid_request", "reason must not be blank")
    command = ReopenAlert(
        actor=who, alert_id=alert_id, reason=reason, request_id=request.get(REQUEST_ID)
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
    last_id: int | None = None
    if raw_last is not None and raw_last != "":
        try:
            last_id = int(raw_last)
        except ValueError as exc:
            raise bad_request("invalid_request", "Last-Event-ID must be an integer") from exc
        # Checked before the stream starts: a bigint overflow later could only cut it.
        if not 0 <= last_id <= PG_BIGINT_MAX:
            raise bad_request("invalid_request", "Last-Event-ID is not an event id")
    command = OpenAlertFeed(
        actor=who,
        token_digest=digest,
        after_event_id=last_id,
        resumed_by="Last-Event-ID" if header_last else "since",
        purpose=purpose,
        request_id=request.get(REQUEST_ID),
    )
    # A token revoked since authentication is refused as any unknown token is.
    opened = await handle(request, command, challenge="Bearer")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    hub = request.app[FEED_HUB]
    expires_at = opened.token_expires_at.timestamp()
    async with hub.subscribe(opened.after_event_id, who.scope, digest, expires_at) as feed:
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
    command = GetAlert(
        actor=who, alert_id=alert_id, purpose=_purpose(request), request_id=request.get(REQUEST_ID)
    )
    return json_response((await handle(request, command)).to_json())
