"""Request ids, JSON errors in the contract's shape, and request metrics."""

from __future__ import annotations

import itertools
import os
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from correction_monitor.adapters.db import DATABASE_UNAVAILABLE
from correction_monitor.metrics import HTTP_LATENCY, HTTP_REQUESTS
from correction_monitor.web.errors import ApiError
from correction_monitor.web.jsonio import error_response
from correction_monitor.web.keys import REQUEST_ID

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


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error": {"code", "message"}}``; nothing leaks a traceback."""
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status, exc.reason.lower().replace(" ", "_"))
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return error_response(ApiError(exc.status, code, message))
    except DATABASE_UNAVAILABLE as exc:
        # PostgreSQL is away: every route answers "retry later", never a 500.
        log.warning("database unavailable", path=request.path, error=repr(exc))
        unavailable = ApiError(
            503, "storage_unavailable", "the database is unavailable; retry shortly"
        )
        unavailable.headers["Retry-After"] = "5"
        return error_response(unavailable)
    except Exception:
        log.exception("unhandled error", path=request.path)
        return error_response(ApiError(500, "internal_error", "internal error; see server logs"))


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        route = _route_name(request)
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)
