"""What can go wrong while decoding a phone request: request-level errors and per-fix reasons.

A request either cannot be used at all (:class:`DecodeError`, one code for the whole
request) or is usable and some of its fixes are refused, each with one of
:data:`REJECTION_REASONS`. Range checks that depend on policy (fixes too far in the future,
too old) are not made here: the ingestion pipeline makes them after normalisation.
"""

from __future__ import annotations

from typing import Final

import orjson

from correction_monitor.domain.jsontext import INVALID_UTF8, TOO_DEEP, json_refusal

MALFORMED_JSON: Final = "malformed_json"
"""The body is not JSON."""
INVALID_BODY: Final = "invalid_body"
"""The body is JSON but not of the protocol's shape (not an object, no ``fixes`` list...)."""
TOO_MANY_FIXES: Final = "too_many_fixes"
"""More fixes in one request than the decoder accepts; the HTTP layer answers 413."""

DECODE_ERROR_CODES: Final[tuple[str, ...]] = (
    MALFORMED_JSON,
    INVALID_UTF8,
    TOO_DEEP,
    INVALID_BODY,
    TOO_MANY_FIXES,
)
"""Every code a :class:`DecodeError` can carry."""

MISSING_FIELD: Final = "missing_field"
"""A required field is absent or null (timestamp, latitude, longitude, message type)."""
BAD_TIMESTAMP: Final = "bad_timestamp"
"""The timestamp cannot be read, has no UTC offset where one is required, or is out of range."""
BAD_COORDINATES: Final = "bad_coordinates"
"""Latitude/longitude not finite or off the earth, or the device marked the position invalid."""
BAD_ACCURACY: Final = "bad_accuracy"
"""The accuracy radius is negative or not finite (native protocol)."""
BAD_CRS: Final = "bad_crs"
"""The coordinate reference system is not one of wgs84, gcj02, bd09."""
BAD_TYPE: Final = "bad_type"
"""A field has the wrong JSON type (a string latitude, a fix that is not an object...)."""
BAD_VALUE: Final = "bad_value"
"""An optional field has the right type but an impossible value (battery 150 %, bearing 400°)."""

REJECTION_REASONS: Final[tuple[str, ...]] = (
    MISSING_FIELD,
    BAD_TIMESTAMP,
    BAD_COORDINATES,
    BAD_ACCURACY,
    BAD_CRS,
    BAD_TYPE,
    BAD_VALUE,
)
"""Every reason slug a decoder can give a rejected fix."""


class DecodeError(ValueError):
    """The whole request is unusable; no fix in it is decoded.

    Parameters
    ----------
    code
        One of :data:`DECODE_ERROR_CODES`; the HTTP layer maps ``too_many_fixes`` to 413
        and every other code to 400.
    message
        Human-readable explanation, safe to return to the client.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FixRefused(Exception):
    """Raised inside a decoder to refuse the fix being decoded, never across the package.

    The request loop catches it and records a rejection with ``reason``, one of
    :data:`REJECTION_REASONS`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def malformed(body: bytes, exc: orjson.JSONDecodeError) -> DecodeError:
    """The refusal of a body orjson could not parse: ``invalid_utf8`` or
    ``too_deeply_nested`` when that is why, else ``malformed_json`` with orjson's words."""
    refusal = json_refusal(body, exc)
    if refusal is not None:
        return DecodeError(*refusal)
    return DecodeError(MALFORMED_JSON, f"body is not valid JSON: {exc}")
