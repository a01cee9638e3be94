"""OwnTracks HTTP mode (``/owntracks``): one JSON message a request, or an array of them.

Only ``_type: "location"`` messages carry a fix. Every other type (transition, waypoint,
lwt, card, cmd, status, ...) decodes to nothing and is not an error: the app posts them to
the same URL and expects a 200. Messages are checked as the upstream JSON schema
(owntracks/json-schema ``message.json``) checks them where positions are concerned:
``lat``/``lon`` must be JSON numbers and ``tst`` an integer wherever they appear, and
location, transition and lwt messages must carry their required fields. One relaxation:
``tst`` may be a numeric string, as the iOS app writes it in lwt messages.

The app is not ours to fix, so beyond the position only readable values are kept: an
unknown ``acc``/``vel``/``cog`` (-1) or an impossible ``batt`` becomes None. Large
accuracies (kilometres, from cell positioning) are kept as sent; the quality stage of the
pipeline decides about coarse fixes.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from correction_monitor.domain.fixes import RawFix, Rejection
from correction_monitor.ingest.protocols.decoded import Decoded
from correction_monitor.ingest.protocols.errors import (
    BAD_COORDINATES,
    BAD_TIMESTAMP,
    BAD_TYPE,
    INVALID_BODY,
    MISSING_FIELD,
    TOO_MANY_FIXES,
    DecodeError,
    FixRefused,
    malformed,
)
from correction_monitor.ingest.protocols.fields import (
    KMH_MPS,
    bearing_or_none,
    from_epoch_s,
    json_number,
    non_negative_or_none,
    on_earth,
    percent_or_none,
    positive_or_none,
)

DEFAULT_MAX_FIXES: Final = 1000
"""Most messages one request may carry (recorder tools post arrays)."""

REQUIRED_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "location": ("lat", "lon", "tst"),
    "transition": ("acc", "event", "lat", "lon", "tst", "wtst"),
    "lwt": ("tst",),
}
"""Fields the upstream schema requires, for the message types that concern presence."""


def decode_owntracks(body: bytes, *, max_fixes: int = DEFAULT_MAX_FIXES) -> Decoded:
    """Decode an OwnTracks HTTP-mode request body.

    Parameters
    ----------
    body
        One JSON message object, or a JSON array of them; an empty body is an empty
        request (the upstream schema accepts it).
    max_fixes
        Most messages accepted in one request.

    Returns
    -------
    Decoded
        ``device_ref`` is None (HTTP Basic user or ``?u=&d=`` name the device). Each
        location message gives one fix: ``tst`` epoch seconds, ``acc`` metres, ``alt``
        metres, ``vel`` km/h converted to m/s, ``cog`` degrees, ``batt`` percent, and
        client id ``"<tid>:<tst>"`` when ``tid`` is present. Indexes count messages
        (0 for a single object); invalid messages are rejected with their index.

    Raises
    ------
    DecodeError
        ``malformed_json`` when the body is not JSON, ``invalid_body`` when it is neither
        an object nor an array, ``too_many_fixes`` past ``max_fixes`` messages.

    Examples
    --------
    >>> out = decode_owntracks(b'{"_type": "location", "tst": 1497349316, "lat": 48.85833,'
    ...                        b' "lon": 2.29513, "acc": 5, "vel": 36, "tid": "JJ"}')
    >>> fix = out.fixes[0]
    >>> fix.ts.isoformat(), fix.accuracy_m, fix.speed_mps, fix.client_id
    ('2017-06-13T10:21:56+00:00', 5.0, 10.0, 'JJ:1497349316')
    >>> decode_owntracks(b'{"_type": "lwt", "tst": "1440363922"}').fixes
    []
    """
    if not body.strip():
        return Decoded(None)
    try:
        root = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed(body, exc) from None
    if type(root) is dict:
        messages = [root]
    elif type(root) is list:
        messages = root
    else:
        raise DecodeError(INVALID_BODY, "body must be a JSON message object or an array")
    if len(messages) > max_fixes:
        raise DecodeError(
            TOO_MANY_FIXES, f"at most {max_fixes} messages a request, got {len(messages)}"
        )
    decoded = Decoded(None)
    for index, message in enumerate(messages):
        try:
            fix = _message_fix(message)
        except FixRefused as refused:
            decoded.rejected.append(Rejection(index, refused.reason))
            continue
        if fix is not None:
            decoded.fixes.append(fix)
            decoded.indexes.append(index)
    return decoded


def _message_fix(message: Any) -> RawFix | None:
    """The fix a message carries, None for a valid message without one."""
    if type(message) is not dict:
        raise FixRefused(BAD_TYPE)
    kind = message.get("_type")
    if kind is None:
        raise FixRefused(MISSING_FIELD)
    if type(kind) is not str:
        raise FixRefused(BAD_TYPE)
    raw_lat, raw_lon, raw_tst = message.get("lat"), message.get("lon"), message.get("tst")
    lat = None if raw_lat is None else json_number(raw_lat)
    lon = None if raw_lon is None else json_number(raw_lon)
    if (raw_lat is not None and lat is None) or (raw_lon is not None and lon is None):
        raise FixRefused(BAD_TYPE)
    seconds = None if raw_tst is None else _tst_seconds(raw_tst)
    if kind != "location":
        for name in REQUIRED_FIELDS.get(kind, ()):
            if message.get(name) is None:
                raise FixRefused(MISSING_FIELD)
        return None
    # REQUIRED_FIELDS["location"], checked on the values already read.
    if lat is None or lon is None or seconds is None:
        raise FixRefused(MISSING_FIELD)
    if not on_earth(lat, lon):
        raise FixRefused(BAD_COORDINATES)
    ts = from_epoch_s(seconds)
    if ts is None:
        raise FixRefused(BAD_TIMESTAMP)

    kmh = non_negative_or_none(json_number(message.get("vel")))
    tid = message.get("tid")
    return RawFix(
        ts=ts,
        lat=lat,
        lon=lon,
        accuracy_m=positive_or_none(json_number(message.get("acc"))),
        # The app sends the same fix again after a network failure: tracker id plus fix
        # time names it stably.
        client_id=f"{tid}:{seconds}" if type(tid) is str and tid else None,
        speed_mps=kmh * KMH_MPS if kmh is not None else None,
        bearing=bearing_or_none(json_number(message.get("cog"))),
        altitude_m=json_number(message.get("alt")),
        battery_pct=percent_or_none(json_number(message.get("batt"))),
    )


def _tst_seconds(raw: Any) -> int | float:
    """``tst`` as epoch seconds: a JSON number, or a string of digits (iOS lwt messages)."""
    if type(raw) is int:
        return raw
    if type(raw) is float:
        if raw.is_integer():
            return int(raw)
        return raw
    if type(raw) is str:
        if raw.isascii() and raw.isdigit():
            try:
                return int(raw)
            except ValueError:  # more digits than Python converts (sys.int_info)
                pass
        raise FixRefused(BAD_TIMESTAMP)
    raise FixRefused(BAD_TYPE)
