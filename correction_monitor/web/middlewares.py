"""Request ids, JSON errors in the contract's shape, and request metrics."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from correction_monitor.adapters.db import DATABASE_UNAVAILABLE
from correction_monitor.metrics import HTTP_LATENCY, HTTP_REQUESTS
from correction_monitor.web.errors import ApiError
from correction_monitor.web.jsonio import error_response
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.limits import body_limit as route_body_limit
from correction_monitor.web.limits import body_too_large

log = structlog.get_logger("correction_monitor.http")

REQUEST_ID_HEADER = "X-Request-ID"

# Request ids: a random per-process prefix and a counter. Unique across processes without a
# random-number system call per request (uuid4 costs one, and ingestion answers thousands).
_ID_COUNTER = itertools.count(1)
_id_prefix = os.urandom(6).hex()


def _new_prefix() -> None:
    # Workers are forked from one parent: each draws its own prefix.
    global _id_prefix
    _id_prefix = os.urandom(6).hex()


os.register_at_fork(after_in_child=_new_prefix)


def new_request_id() -> str:
    return f"{_id_prefix}{next(_ID_COUNTER):010x}"


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give each request an id (the caller's, if sent) and bind it to every log line."""
    request_id = request.headers.get(REQUEST_ID_HEADER) or new_request_id()
    request[REQUEST_ID] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def error_for(exc: Exception, path: str) -> ApiError:
    """The answer to an exception a handler raised: its own for an ``ApiError``, 503 when
    PostgreSQL is away (every route answers "retry later", never a 500), else a logged 500
    that leaks no traceback."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DATABASE_UNAVAILABLE):
        log.warning("database unavailable", path=path, error=repr(exc))
        unavailable = ApiError(
            503, "storage_unavailable", "the database is unavailable; retry shortly"
        )
        unavailable.headers["Retry-After"] = "5"
        return unavailable
    log.error("unhandled error", path=path, exc_info=exc)
    return ApiError(500, "internal_error", "internal error; see server logs")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error": {"code", "message"}}``; nothing leaks a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }.get(exc.status, exc.reason.lower().replace(" ", "_"))
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return error_response(ApiError(exc.status, code, message))
    except Exception as exc:
        return error_response(error_for(exc, request.path))


def _too_large(limit: int) -> web.Response:
    response = error_response(body_too_large(limit))
    # The rest of the body is not wanted and the connection is not reused: aiohttp drains
    # what arrives within its lingering time (so the client gets to read this answer rather
    # than a reset), then closes.
    response.force_close()
    return response


@web.middleware
async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body over its route's limit (``web.limits``) is refused with 413 before it is read
    whole: at once when ``Content-Length`` declares it, else as soon as the bytes read
    pass the limit (aiohttp's ``client_max_size``, set to the route's)."""
    limit = route_body_limit(_route_name(request))
    declared = request.content_length
    if declared is not None and declared > limit:
        return _too_large(limit)
    if limit != request.client_max_size:
        request = request.clone(client_max_size=limit)
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _too_large(limit)


# Labelled children, looked up once: ``labels()`` validates and hashes its arguments on every
# call, which costs as much as the count itself on a route answering thousands a second.
_REQUEST_COUNTS: dict[tuple[str, str, int], Any] = {}
_REQUEST_LATENCY: dict[str, Any] = {}


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency (also for the ingest front)."""
    key = (method, route, status)
    counter = _REQUEST_COUNTS.get(key)
    if counter is None:
        if len(_REQUEST_COUNTS) > 10_000:  # arbitrary methods could grow it without bound
            _REQUEST_COUNTS.clear()
        counter = _REQUEST_COUNTS[key] = HTTP_REQUESTS.labels(method, route, str(status))
    counter.inc()
    latency = _REQUEST_LATENCY.get(route)
    if latency is None:
        latency = _REQUEST_LATENCY[route] = HTTP_LATENCY.labels(route)
    latency.observe(seconds)


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        record_request(request.method, _route_name(request), status, time.perf_counter() - started)
