"""Phone endpoints: native batches, Traccar Client (OsmAnd) and OwnTracks HTTP mode.

Each route reads what its request carries into the protocol's command, runs it through the
app's ingest service (``service/ingest.py``, the pipeline) and renders the receipt; the
ingest front (``web.front``) answers the plainest native and OsmAnd requests the same way
without aiohttp's request machinery, with :func:`receipt_json` and :func:`ingest_error`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from correction_monitor.service.errors import ServiceError
from correction_monitor.service.ingest import (
    Receipt,
    SubmitNative,
    SubmitOsmAnd,
    SubmitOwnTracks,
)
from correction_monitor.web.auth import parse_bearer
from correction_monitor.web.dispatch import REFUSALS, api_error
from correction_monitor.web.errors import ApiError, bad_request
from correction_monitor.web.jsonio import json_response
from correction_monitor.web.keys import INGEST

routes = web.RouteTableDef()

NATIVE_ROUTE = "/api/v1/fixes"
BEARER: Final = "Bearer"
# The challenge names Basic, the scheme OwnTracks takes, so the app can answer it.
BASIC: Final = 'Basic realm="correction-monitor"'


def receipt_json(receipt: Receipt) -> dict[str, object]:
    """The answer to an upload (CONTRACT.md's ingest result)."""
    return {
        "accepted": receipt.accepted,
        "duplicates": receipt.duplicates,
        "rejected": [{"index": r.index, "reason": r.reason} for r in receipt.rejected],
    }


def ingest_error(exc: Exception, challenge: str = BEARER) -> Exception:
    """The answer to an exception of the ingest service: a refusal as the API's error, with
    ``challenge`` for an unknown device and ``Retry-After`` when the phone should retry;
    anything else as it is (the middleware's to answer)."""
    if isinstance(exc, REFUSALS):
        return api_error(exc, challenge=challenge)
    return exc


@routes.post(NATIVE_ROUTE)
async def post_fixes(request: web.Request) -> web.Response:
    """Native batches (≤ 1000 fixes) from a phone holding a device bearer token."""
    command = SubmitNative(parse_bearer(request.headers.get("Authorization", "")), request.read)
    try:
        receipt = await request.app[INGEST].submit_native(command)
    except ServiceError as exc:
        raise ingest_error(exc) from exc
    return json_response(receipt_json(receipt))


async def _form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    try:
        return await request.post()
    except ValueError as exc:
        # aiohttp's form parser refuses a malformed body (a multipart part without a name).
        raise bad_request("invalid_body", f"the form cannot be read: {exc}") from exc


@routes.route("*", "/osmand/")
@routes.route("*", "/osmand")
async def osmand(request: web.Request) -> web.Response:
    """Traccar Client: GET query, url-encoded POST form, or JSON POST."""
    if request.method not in ("GET", "POST"):
        raise ApiError(405, "method_not_allowed", "use GET or POST")
    if request.method == "POST" and request.content_type == "application/json":
        command = SubmitOsmAnd(body=await request.read())
    else:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await _form(request)).items()})
        command = SubmitOsmAnd(params=params)
    try:
        receipt = await request.app[INGEST].submit_osmand(command)
    except ServiceError as exc:
        raise ingest_error(exc) from exc
    return json_response(receipt_json(receipt))


def _basic_auth(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


@routes.post("/owntracks")
async def owntracks(request: web.Request) -> web.Response:
    """OwnTracks HTTP mode: Basic auth (user = osmand_id, password = device token); answers
    with a JSON array of messages for the app (none)."""
    command = SubmitOwnTracks(_basic_auth(request), request.read)
    try:
        await request.app[INGEST].submit_owntracks(command)
    except ServiceError as exc:
        raise ingest_error(exc, BASIC) from exc
    return json_response([])
