"""Officers' side of messages to a subject's app: send a notice, and see what the subject was
told and when it was read (read receipts).

``POST /api/v1/subjects/{id}/messages {"text"}`` -> 201 (casework roles; audited);
``GET /api/v1/subjects/{id}/messages[?since=ID]`` -> ``{"messages": [...]}`` with ``read_at``
and ``sent_by``. A subject outside the caller's jurisdiction is 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StrictStr

from correction_monitor.domain.access import CASEWORK_ROLES
from correction_monitor.domain.messages import SubjectMessage
from correction_monitor.service.messages import ListSubjectMessages, SendMessage
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import json_response, parse_model, read_object
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.params import int_param
from correction_monitor.web.routes.app_messages import since_param

routes = web.RouteTableDef()


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr


def officer_json(message: SubjectMessage) -> dict[str, Any]:
    """The app's message with who sent it (None: the service itself) and the subject."""
    return message.to_json() | {"subject_id": message.subject_id, "sent_by": message.sent_by}


@routes.post("/api/v1/subjects/{id}/messages")
async def send_message(request: web.Request) -> web.Response:
    who = await officer(request, CASEWORK_ROLES)
    subject_id = int_param(request, "id")
    body = parse_model(MessageBody, await read_object(request))
    command = SendMessage(
        actor=who, subject_id=subject_id, text=body.text, request_id=request.get(REQUEST_ID)
    )
    message = await handle(request, command)
    return json_response(officer_json(message), status=201)


@routes.get("/api/v1/subjects/{id}/messages")
async def subject_messages(request: web.Request) -> web.Response:
    who = await officer(request)
    subject_id = int_param(request, "id")
    found = await handle(
        request, ListSubjectMessages(actor=who, subject_id=subject_id, since=since_param(request))
    )
    return json_response({"messages": [officer_json(m) for m in found]})
