"""Officers' bearer tokens: ``POST /api/v1/auth/token`` trades a password for a short-lived
token, ``POST /api/v1/auth/logout`` revokes the caller's token at once."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.domain.timeutil import iso
from correction_monitor.service.officers import IssueToken, Logout
from correction_monitor.web.auth import bearer_token, officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import json_response, parse_model, read_object
from correction_monitor.web.keys import FEED_HUB

routes = web.RouteTableDef()


class TokenRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


@routes.post("/api/v1/auth/token")
async def issue_token(request: web.Request) -> web.Response:
    body = parse_model(TokenRequest, await read_object(request))
    issued = await handle(request, IssueToken(username=body.username, password=body.password))
    return json_response(
        {
            "access_token": issued.token,
            "token_type": "bearer",
            "expires_at": iso(issued.expires_at),
            "role": issued.role,
        }
    )


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """Revoke the caller's token: every later request with it is refused (401), and the
    live-feed streams it opened end (at once in this process, within seconds elsewhere)."""
    await officer(request)
    token = bearer_token(request)
    assert token is not None, "officer() admitted the request"
    # Another request may have revoked it since this one was authenticated: a 401 then.
    digest = await handle(request, Logout(token=token), challenge="Bearer")
    request.app[FEED_HUB].token_revoked(digest)
    return web.Response(status=204)
