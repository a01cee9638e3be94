"""JSON in and out of HTTP handlers, with errors in the contract's shape."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
import pydantic
from aiohttp import web

from correction_monitor.domain.jsontext import json_refusal
from correction_monitor.web.errors import ApiError, bad_request

M = TypeVar("M", bound=pydantic.BaseModel)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(err: ApiError) -> web.Response:
    return json_response(err.body(), status=err.status, headers=err.headers or None)


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON, or a 400 naming what is wrong with it: ``empty_body``,
    ``invalid_text`` (U+0000), ``invalid_utf8``, ``too_deeply_nested`` or ``invalid_json``."""
    if not body:
        raise bad_request("empty_body", "the request body is empty; a JSON document is expected")
    if b"\\u0000" in body:
        # PostgreSQL text cannot hold U+0000; refuse it here rather than fail on storage.
        raise bad_request("invalid_text", "text may not contain the NUL character (U+0000)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        refusal = json_refusal(body, exc)
        if refusal is not None:
            raise bad_request(*refusal) from None
        raise bad_request("invalid_json", f"the request body is not valid JSON: {exc}") from None


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON (:func:`parse_json`); a body over the route's limit
    is refused with 413 by the body-limit middleware while it is read."""
    return parse_json(await request.read())


async def read_object(request: web.Request) -> dict[str, Any]:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise bad_request("invalid_json", "the request body must be a JSON object")
    return data


def refuse_nul(text: str | None) -> None:
    """A 400 if ``text`` (a query parameter) holds U+0000, which PostgreSQL text cannot store.

    JSON bodies need no such call: ``read_json`` refuses a ``\\u0000`` anywhere in them.
    """
    if text is not None and "\x00" in text:
        raise bad_request("invalid_text", "text may not contain the NUL character (U+0000)")


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def parse_model(model: type[M], data: Any) -> M:
    """Validate ``data`` against a pydantic model; a 400 names the offending fields."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise bad_request("invalid_request", describe_validation_error(exc)) from exc
