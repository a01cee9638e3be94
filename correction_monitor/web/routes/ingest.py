"""Phone endpoints: native batches, Traccar Client (OsmAnd) and OwnTracks HTTP mode.

Each request runs the pipeline: decode → authenticate device → normalize → validate →
dedupe → quality (``ingest.batch``) → persist + evaluate + publish (``ingest.committer``).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from correction_monitor.adapters.db import DATABASE_UNAVAILABLE
from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.domain.fixes import Rejection
from correction_monitor.ingest.batch import FixBatch, prepare_normalized
from correction_monitor.ingest.committer import CommitFailed, Overloaded
from correction_monitor.ingest.protocols.decoded import Decoded
from correction_monitor.ingest.protocols.errors import TOO_MANY_FIXES, DecodeError
from correction_monitor.ingest.protocols.native import decode_native_batch
from correction_monitor.ingest.protocols.osmand import decode_osmand_json, decode_osmand_query
from correction_monitor.ingest.protocols.owntracks import decode_owntracks
from correction_monitor.metrics import FIXES_REJECTED
from correction_monitor.web.auth import parse_bearer
from correction_monitor.web.errors import ApiError, bad_request, unauthorized
from correction_monitor.web.jsonio import json_response
from correction_monitor.web.keys import COMMITTER, DEVICES, POLICY

routes = web.RouteTableDef()

MAX_FIXES_PER_REQUEST = 1000


def _decode_error(exc: DecodeError) -> ApiError:
    if exc.code == TOO_MANY_FIXES:
        return ApiError(413, exc.code, str(exc))
    return bad_request(exc.code, str(exc))


def _storage_unavailable() -> ApiError:
    err = ApiError(503, "storage_unavailable", "fixes could not be stored; retry shortly")
    err.headers["Retry-After"] = "5"
    return err


async def _device(lookup: Awaitable[DeviceIdentity | None]) -> DeviceIdentity | None:
    """A device lookup; PostgreSQL being away (a token not cached yet needs it) is a 503
    with Retry-After, like a failed commit, so the phone keeps its fixes and retries."""
    try:
        return await lookup
    except DATABASE_UNAVAILABLE as exc:
        raise _storage_unavailable() from exc


async def _ingest_batch(
    app: web.Application, device: DeviceIdentity, batch: FixBatch, protocol: str
) -> tuple[int, int, list[Rejection]]:
    """The stages after normalize, for a decoded batch (decoder refusals in ``rejected``);
    returns (accepted, duplicates, rejected)."""
    prepare_normalized(batch, time.time(), app[POLICY].ingest)
    rejected = batch.rejected
    for rejection in rejected:
        FIXES_REJECTED.labels(rejection.reason).inc()
    try:
        result = await app[COMMITTER].submit(device, batch, protocol)
    except Overloaded as exc:
        err = ApiError(503, "overloaded", "the service is busy; retry shortly")
        err.headers["Retry-After"] = str(exc.retry_after_s)
        raise err from exc
    except CommitFailed as exc:
        raise _storage_unavailable() from exc
    # The committer's count already includes the repeats dropped inside this request.
    return result.accepted, result.duplicates, sorted(rejected, key=lambda r: r.index)


def _summary(accepted: int, duplicates: int, rejected: Sequence[Rejection]) -> dict[str, object]:
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": [{"index": r.index, "reason": r.reason} for r in rejected],
    }


NATIVE_ROUTE = "/api/v1/fixes"


async def ingest_native(
    app: web.Application, authorization: str, read_body: Callable[[], Awaitable[bytes]]
) -> dict[str, object]:
    """A native batch through the whole pipeline, for this route and for the ingest front
    (``web.front``), which answers phones without aiohttp's request machinery. The body is
    read only once the token is known to be good."""
    token = parse_bearer(authorization)
    if token is None:
        raise unauthorized("a device bearer token is required")
    device = await _device(app[DEVICES].by_token(token))
    if device is None:
        raise unauthorized("unknown or revoked device token")
    try:
        batch = decode_native_batch(await read_body(), max_fixes=MAX_FIXES_PER_REQUEST)
    except DecodeError as exc:
        raise _decode_error(exc) from exc
    return _summary(*await _ingest_batch(app, device, batch, "native"))


@routes.post(NATIVE_ROUTE)
async def post_fixes(request: web.Request) -> web.Response:
    """Native batches (≤ 1000 fixes) from a phone holding a device bearer token."""
    authorization = request.headers.get("Authorization", "")
    return json_response(await ingest_native(request.app, authorization, request.read))


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
    try:
        if request.method == "POST" and request.content_type == "application/json":
            decoded = decode_osmand_json(await request.read(), max_fixes=MAX_FIXES_PER_REQUEST)
        else:
            params = dict(request.query)
            if request.method == "POST":
                params.update({k: str(v) for k, v in (await _form(request)).items()})
            decoded = decode_osmand_query(params)
    except DecodeError as exc:
        raise _decode_error(exc) from exc
    return json_response(await _ingest_osmand(request.app, decoded))


async def ingest_osmand_query(app: web.Application, params: dict[str, str]) -> dict[str, object]:
    """A Traccar Client query-form report through the whole pipeline, for the route above
    and for the ingest front (``web.front``)."""
    try:
        decoded = decode_osmand_query(params)
    except DecodeError as exc:
        raise _decode_error(exc) from exc
    return await _ingest_osmand(app, decoded)


async def _ingest_osmand(app: web.Application, decoded: Decoded) -> dict[str, object]:
    if decoded.device_ref is None:
        raise bad_request("missing_device_id", "the request names no device (id / deviceid)")
    device = await _device(app[DEVICES].by_osmand_id(decoded.device_ref))
    if device is None:
        raise unauthorized(f"unknown device id {decoded.device_ref!r}")
    return _summary(*await _ingest_batch(app, device, decoded.normalized(), "osmand"))


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


def _basic_challenge(message: str) -> ApiError:
    # The challenge names Basic, the scheme this endpoint takes, so the app can answer it.
    err = unauthorized(message)
    err.headers["WWW-Authenticate"] = 'Basic realm="correction-monitor"'
    return err


@routes.post("/owntracks")
async def owntracks(request: web.Request) -> web.Response:
    """OwnTracks HTTP mode: Basic auth (user = osmand_id, password = device token); answers
    with a JSON array of messages for the app (none)."""
    credentials = _basic_auth(request)
    if credentials is None:
        raise _basic_challenge("HTTP Basic credentials (device id and token) are required")
    device = await _device(request.app[DEVICES].by_osmand_id(*credentials))
    if device is None:
        raise _basic_challenge("unknown device or wrong token")
    try:
        decoded = decode_owntracks(await request.read(), max_fixes=MAX_FIXES_PER_REQUEST)
    except DecodeError as exc:
        raise _decode_error(exc) from exc
    accepted, duplicates, rejected = await _ingest_batch(
        request.app, device, decoded.normalized(), "owntracks"
    )
    if rejected and not accepted and not duplicates:
        first = rejected[0]
        raise bad_request(first.reason, f"location message refused: {first.reason}")
    return json_response([])
