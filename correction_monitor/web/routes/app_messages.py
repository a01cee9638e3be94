"""The subject's app: its own messages and their read receipts (device token).

``GET /api/v1/me/messages[?since=ID]`` lists the subject's messages after ``since``, oldest
first; ``POST /api/v1/me/messages/{id}/read`` records that it was read (the first read
counts). Another subject's message is answered 404, exactly like one that does not exist.
"""

from __future__ import annotations

from aiohttp import web

from correction_monitor.service.messages import ListOwnMessages, MarkMessageRead
from correction_monitor.web.device_auth import device
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response
from correction_monitor.web.params import int_param

routes = web.RouteTableDef()

PG_BIGINT_MAX = 2**63 - 1


def since_param(request: web.Request) -> int:
    """The ``since`` query parameter: a message id (0, the default, lists from the first)."""
    raw = request.query.get("since", "0")
    if not (raw.isascii() and raw.isdigit()) or int(raw) > PG_BIGINT_MAX:
        raise bad_request("invalid_request", "since must be a message id (a whole number)")
    return int(raw)


@routes.get("/api/v1/me/messages")
async def my_messages(request: web.Request) -> web.Response:
    caller = await device(request)
    found = await handle(request, ListOwnMessages(caller.subject_id, since_param(request)))
    return json_response({"messages": [m.to_json() for m in found]})


@routes.post("/api/v1/me/messages/{id}/read")
async def read_message(request: web.Request) -> web.Response:
    caller = await device(request)
    message_id = int_param(request, "id")
    message = await handle(request, MarkMessageRead(caller.subject_id, message_id))
    return json_response(message.to_json())
