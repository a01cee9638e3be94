"""Why a client's JSON text was refused, when the reason is more than a syntax error.

Phone decoders and the officer API parse bodies with orjson, which refuses invalid UTF-8
and nesting deeper than :data:`MAX_DEPTH` with the same exception as a missing comma. A
client (or an attacker) is better told which of these it was, so both readers answer those
two with a code of their own; the classification runs only once orjson has refused a body,
never on the way to a successful parse.
"""

from __future__ import annotations

from typing import Final

import orjson

MAX_DEPTH: Final = 1024
"""The deepest nesting of arrays and objects orjson parses (a fixed limit of orjson's)."""

INVALID_UTF8: Final = "invalid_utf8"
"""The body is not UTF-8 text."""
TOO_DEEP: Final = "too_deeply_nested"
"""The body nests arrays and objects deeper than :data:`MAX_DEPTH`."""

# orjson's own words for a document nested too deeply (pinned by tests/unit/protocols).
_DEPTH_MESSAGE: Final = "depth limit exceeded"


def json_refusal(body: bytes, exc: orjson.JSONDecodeError) -> tuple[str, str] | None:
    """``(code, message)`` when orjson refused ``body`` for invalid UTF-8 or for nesting
    too deep; None for any other malformation, which the caller names in its own terms.

    Examples
    --------
    >>> def why(body):
    ...     try:
    ...         orjson.loads(body)
    ...     except orjson.JSONDecodeError as exc:
    ...         return json_refusal(body, exc)
    >>> why(b'{"id": "caf\\xe9"}')
    ('invalid_utf8', 'the body is not UTF-8 text (byte 0xe9 at offset 11)')
    >>> why(b"[" * 2000 + b"]" * 2000)[0]
    'too_deeply_nested'
    >>> why(b'{"id": }') is None
    True
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return (
            INVALID_UTF8,
            f"the body is not UTF-8 text (byte 0x{body[bad.start]:02x} at offset {bad.start})",
        )
    if exc.msg.startswith(_DEPTH_MESSAGE):
        return TOO_DEEP, f"the body nests arrays and objects deeper than {MAX_DEPTH} levels"
    return None
