"""Who is calling from a subject's app: the device bearer token, resolved through the
process's device directory (cached, revocations honoured within seconds) to the enrolled
device and the subject it belongs to. The app's routes (``/api/v1/me...``) see only that
subject."""

from __future__ import annotations

from aiohttp import web

from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.web.auth import bearer_token
from correction_monitor.web.errors import unauthorized
from correction_monitor.web.keys import DEVICE, DEVICES


async def device(request: web.Request) -> DeviceIdentity:
    """The enrolled, unrevoked device of this request; 401 without a valid device token."""
    cached: DeviceIdentity | None = request.get(DEVICE)
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        raise unauthorized("missing device bearer token")
    found = await request.app[DEVICES].by_token(token)
    if found is None:
        raise unauthorized("the device token is unknown or revoked")
    request[DEVICE] = found
    return found
