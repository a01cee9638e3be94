"""Notification channels: county administrators and administrators add, list and deactivate
the webhooks, robots and SMS recipients of their units, and see each channel's deliveries
(``service/notifications.py``; docs/notifications.md).

A channel's secret is never shown again (``secret_set`` says whether one is set), and a
robot's url is shown with its key masked.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.domain.access import CONFIGURATION_ROLES, Role
from correction_monitor.domain.notifications import DeliveryRecord
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.notifications import (
    CreateChannel,
    DeactivateChannel,
    ListChannels,
    ListDeliveries,
    PlacedChannel,
    shown_url,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, parse_json, parse_model, refuse_nul
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.params import int_param

routes = web.RouteTableDef()

READ_ROLES = CONFIGURATION_ROLES | {Role.AUDITOR}


def channel_json(placed: PlacedChannel) -> dict[str, Any]:
    channel = placed.channel
    return {
        "id": channel.id,
        "org_unit": placed.org_unit,
        "kind": channel.kind.value,
        "url": shown_url(channel.url),
        "secret_set": channel.secret is not None,
        "settings": channel.settings,
        "events": list(channel.events),
        "active": channel.active,
        "created_by": channel.created_by,
        "created_at": iso(channel.created_at),
    }


def delivery_json(record: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "event_id": record.event_id,
        "event": record.event,
        "status": record.status,
        "attempts": record.attempts,
        "next_attempt_at": iso(record.next_attempt_at),
        "last_error": record.last_error,
        "delivered_at": iso(record.delivered_at),
        "digest_id": record.digest_id,
        "created_at": iso(record.created_at),
    }


class ChannelIn(BaseModel):
    org_unit: str = Field(min_length=1, max_length=64)
    kind: str = Field(max_length=20)
    url: str = Field(min_length=1, max_length=2000)
    secret: str | None = Field(default=None, max_length=500)
    events: list[str] = Field(max_length=100)
    settings: dict[str, Any] = Field(default_factory=dict)


@routes.post("/api/v1/notification-channels")
async def create(request: web.Request) -> web.Response:
    who = await officer(request, CONFIGURATION_ROLES)
    body = parse_model(ChannelIn, parse_json(await request.read()))
    for text in (body.org_unit, body.url, body.secret, *body.events):
        refuse_nul(text)
    command = CreateChannel(
        actor=who,
        org_unit=body.org_unit,
        kind=body.kind,
        url=body.url,
        events=tuple(body.events),
        secret=body.secret,
        settings=body.settings,
        request_id=request.get(REQUEST_ID),
    )
    return json_response(channel_json(await handle(request, command)), status=201)


@routes.get("/api/v1/notification-channels")
async def list_channels(request: web.Request) -> web.Response:
    who = await officer(request, READ_ROLES)
    q = request.query
    inactive = q.get("include_inactive", "false")
    if inactive not in ("true", "false"):
        raise bad_request("invalid_request", "include_inactive must be true or false")
    command = ListChannels(
        actor=who, org_unit=q.get("org_unit") or None, include_inactive=inactive == "true"
    )
    channels = await handle(request, command)
    return json_response({"channels": [channel_json(c) for c in channels]})


@routes.delete("/api/v1/notification-channels/{id}")
async def deactivate(request: web.Request) -> web.Response:
    who = await officer(request, CONFIGURATION_ROLES)
    reason = request.query.get("reason") or None
    refuse_nul(reason)
    command = DeactivateChannel(
        actor=who,
        channel_id=int_param(request, "id"),
        reason=reason[:500] if reason else None,
        request_id=request.get(REQUEST_ID),
    )
    return json_response(channel_json(await handle(request, command)))


@routes.get("/api/v1/notification-channels/{id}/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    who = await officer(request, READ_ROLES)
    command = ListDeliveries(
        actor=who,
        channel_id=int_param(request, "id"),
        status=request.query.get("status") or None,
    )
    records = await handle(request, command)
    return json_response({"deliveries": [delivery_json(r) for r in records]})
