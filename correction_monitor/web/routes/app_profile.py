"""The subject's app: its own profile and rules (``GET /api/v1/me``, device token).

The profile carries the activity area's geometry, which for a county is many thousand
vertices, while it changes rarely: it is answered with a strong ``ETag`` (a digest of the
body), and an app that sends it back in ``If-None-Match`` is answered ``304`` without the
body.
"""

from __future__ import annotations

import hashlib

import orjson
from aiohttp import web

from correction_monitor.service.profile import ReadProfile
from correction_monitor.web.device_auth import device
from correction_monitor.web.dispatch import handle

routes = web.RouteTableDef()


def etag_of(body: bytes) -> str:
    """A strong entity tag for ``body``: a digest of its bytes, quoted.

    >>> etag_of(b"{}")
    '"44136fa355b3678a1146ad16f7e8649e"'
    """
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (or is ``*``); weak tags compare by
    their opaque part, as RFC 9110 has ``If-None-Match`` do.

    >>> matches('W/"a", "b"', '"a"'), matches('"c"', '"a"'), matches("*", '"a"')
    (True, False, True)
    """
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return any(t == "*" or t.removeprefix("W/") == etag for t in tags)


@routes.get("/api/v1/me")
async def my_profile(request: web.Request) -> web.Response:
    caller = await device(request)
    profile = await handle(request, ReadProfile(caller.subject_id))
    body = orjson.dumps(profile)
    etag = etag_of(body)
    # The app revalidates each time: a changed fence or level shows at once.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)
