"""Calling the service layer from a route: one command, its refusals in the API's shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from correction_monitor.service.command import Command
from correction_monitor.service.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceError,
    TooLarge,
    TooManyAttempts,
    TryAgain,
    Unauthenticated,
)
from correction_monitor.web.errors import ApiError
from correction_monitor.web.keys import SERVICES

R = TypeVar("R")

STATUS: dict[type[ServiceError], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    TryAgain: 503,
    TooManyAttempts: 429,
}
REFUSALS: tuple[type[ServiceError], ...] = tuple(STATUS)


def api_error(exc: ServiceError, hint: str = "", *, challenge: str | None = None) -> ApiError:
    """The answer to a refused command; ``hint`` is added to its message. An unauthenticated
    caller is told ``challenge`` (the ``WWW-Authenticate`` value of the scheme the route
    takes), one asked to try again when (``Retry-After``), if the refusal says."""
    status = next(s for kind, s in STATUS.items() if isinstance(exc, kind))
    err = ApiError(status, exc.code, f"{exc.message}{hint}", **exc.extra)
    if challenge is not None and isinstance(exc, Unauthenticated):
        err.headers["WWW-Authenticate"] = challenge
    if isinstance(exc, (TryAgain, TooManyAttempts)) and exc.retry_after_s is not None:
        err.headers["Retry-After"] = str(exc.retry_after_s)
    return err


async def handle(
    request: web.Request,
    command: Command[R],
    *,
    hint: Callable[[ServiceError], str] | None = None,
    challenge: str | None = None,
) -> R:
    """Run ``command`` through the app's services; a refusal becomes an ``ApiError``, its
    message followed by ``hint(refusal)`` when given (what the caller could do instead),
    an ``Unauthenticated`` one carrying ``challenge`` when given."""
    try:
        return await request.app[SERVICES].handle(command)
    # Only the refusals the API has a status for: anything else is a fault (a 500, logged).
    except REFUSALS as exc:
        raise api_error(exc, hint(exc) if hint else "", challenge=challenge) from exc
