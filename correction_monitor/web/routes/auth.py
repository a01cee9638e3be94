"""Officers' bearer tokens: ``POST /api/v1/auth/token`` trades a password for a short-lived
token, ``POST /api/v1/auth/logout`` revokes the caller's token at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.adapters import officers
from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.auth import new_token, token_hash, verify_password
from correction_monitor.web.auth import bearer_token, officer
from correction_monitor.web.errors import ApiError, unauthorized
from correction_monitor.web.jsonio import json_response, parse_model, read_object
from correction_monitor.web.keys import FEED_HUB, POOL, SETTINGS

routes = web.RouteTableDef()


class TokenRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


@routes.post("/api/v1/auth/token")
async def issue_token(request: web.Request) -> web.Response:
    body = parse_model(TokenRequest, await read_object(request))
    async with request.app[POOL].acquire() as conn:
        try:
            found = await officers.get_by_username(conn, body.username)
        except NotFound:
            found = None
        # Verify even for unknown users would cost the same; we answer identically either way.
        # argon2 takes tens of milliseconds of CPU: off the event loop, so logins never
        # stall ingestion or the feed.
        if (
            found is None
            or not found.active
            or not await asyncio.to_thread(verify_password, found.password_hash, body.password)
        ):
            raise ApiError(401, "invalid_credentials", "unknown username or wrong password")
        token = new_token()
        ttl = request.app[SETTINGS].token_ttl_s
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        await officers.store_token(conn, token_hash(token), found.id, expires_at)
    return json_response(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_at": iso(expires_at),
            "role": found.role,
        }
    )


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """Revoke the caller's token: every later request with it is refused (401), and the
    live-feed streams it opened end (at once in this process, within seconds elsewhere)."""
    await officer(request)
    token = bearer_token(request)
    assert token is not None, "officer() admitted the request"
    digest = token_hash(token)
    async with request.app[POOL].acquire() as conn:
        if not await officers.revoke_token(conn, digest):
            # Another request revoked it since this one was authenticated.
            raise unauthorized("the bearer token is unknown or has expired")
    request.app[FEED_HUB].token_revoked(digest)
    return web.Response(status=204)
