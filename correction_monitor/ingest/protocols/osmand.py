"""The OsmAnd protocol as spoken by the Traccar Client and OsmAnd apps (``/osmand/``).

Two request forms, decoded as Traccar's ``OsmAndProtocolDecoder`` decodes them:

* query form (GET query string, or the same parameters as a POST
  ``application/x-www-form-urlencoded`` body): one fix a request, device in
  ``id`` / ``deviceid`` / ``device_id``, position in ``lat`` + ``lon`` or
  ``location=lat,lon``, ``speed`` in knots;
* JSON form (Transistorsoft background-geolocation, the current Traccar Client):
  ``{"location": {...} | [{...}, ...], "device_id": ...}`` with ``speed`` in m/s and
  ``battery.level`` as a fraction 0..1.

These apps are not ours to fix, so only the position itself (time, latitude, longitude) is
checked strictly; an unreadable or impossible speed, course, altitude, accuracy or battery
value is dropped (None) and the position kept. A request with cell/Wi-Fi data but no
coordinates yields no fix and one ``missing_field`` rejection at index 0, so the device
still counts as reporting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
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
    KNOT_MPS,
    bearing_or_none,
    from_epoch_ms,
    json_number,
    non_negative_or_none,
    on_earth,
    parse_iso8601,
    percent_or_none,
    positive_or_none,
    text_number,
    to_utc,
)

DEVICE_KEYS: Final = ("id", "deviceid", "device_id")
"""Parameters naming the device, in the order they are looked up."""

DEFAULT_MAX_FIXES: Final = 1000
"""Most locations one JSON request may carry."""

# Traccar reads an integer timestamp below Java's Integer.MAX_VALUE as seconds, else ms.
_SECONDS_BELOW: Final = 2**31 - 1
# Java's Long.parseLong: an optional sign and ASCII digits, nothing else.
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
_TRUE_WORDS: Final = frozenset({"true", "1"})


def decode_osmand_query(
    params: Mapping[str, str],
    *,
    received_at: datetime | None = None,
    naive_tz: tzinfo = UTC,
) -> Decoded:
    """Decode one OsmAnd query-form request (GET query or url-encoded POST form).

    Parameters
    ----------
    params
        The URL-decoded parameters (a ``+`` already turned into a space); with repeated
        names, the mapping's own choice of value is used.
    received_at
        When the server received the request (aware); used as the fix time when the
        request has no ``timestamp``, as Traccar does. Defaults to the current UTC time.
    naive_tz
        Zone of a ``yyyy-MM-dd HH:mm:ss`` or offset-less ISO timestamp (Traccar uses its
        server's zone); UTC unless the caller knows the device's zone.

    Returns
    -------
    Decoded
        ``device_ref`` from ``id`` / ``deviceid`` / ``device_id`` (None when absent: the
        caller must refuse the request); at most one fix, at index 0. Speed is converted
        from knots to m/s; ``hdop``/``hacc`` stand in for ``accuracy`` (metres) when it is
        absent; ``valid=false`` refuses the fix as ``bad_coordinates``.

    Examples
    --------
    >>> out = decode_osmand_query({"id": "123456", "timestamp": "1377177267",
    ...                            "location": "60.0,30.0", "speed": "10"})
    >>> fix = out.fixes[0]
    >>> out.device_ref, fix.ts.isoformat(), fix.lat, fix.lon, round(fix.speed_mps, 4)
    ('123456', '2013-08-22T13:14:27+00:00', 60.0, 30.0, 5.1444)
    """
    get = _non_empty(params)
    device_ref = next((value for key in DEVICE_KEYS if (value := get(key)) is not None), None)
    try:
        fix = _query_fix(get, received_at, naive_tz)
    except FixRefused as refused:
        return Decoded(device_ref, [], [Rejection(0, refused.reason)], [])
    return Decoded(device_ref, [fix], [], [0])


def decode_osmand_json(
    body: bytes, *, max_fixes: int = DEFAULT_MAX_FIXES, naive_tz: tzinfo = UTC
) -> Decoded:
    """Decode an OsmAnd JSON POST (Transistorsoft background-geolocation shape).

    Accepted shapes: ``{"location": {...}, "device_id": ...}``, the same with a list of
    locations (batch sync), or a location object at the root (``httpRootProperty "."``).

    Parameters
    ----------
    body
        The request body, UTF-8 JSON.
    max_fixes
        Most locations accepted in one request.
    naive_tz
        Zone of a ``timestamp`` written without offset.

    Returns
    -------
    Decoded
        ``device_ref`` from ``device_id`` / ``id`` / ``deviceid`` at the root (None when
        absent); fixes indexed by their position in the location list (0 for a single
        object). Speed stays in m/s (negative = unknown), ``battery.level`` 0..1 becomes
        percent, ``mock: true`` on the location or its coords sets ``RawFix.mock``, the
        location ``uuid`` becomes the client id used for deduplication.

    Raises
    ------
    DecodeError
        ``malformed_json`` / ``invalid_body`` when the body is not a JSON object,
        ``too_many_fixes`` past ``max_fixes`` locations.

    Examples
    --------
    >>> out = decode_osmand_json(b'{"device_id": "7", "location": {"timestamp":'
    ...     b' "2021-07-21T08:06:34.444Z", "coords": {"latitude": -6.1, "longitude": 106.6,'
    ...     b' "speed": 18.67}, "battery": {"level": 0.79}}}')
    >>> out.device_ref, out.fixes[0].speed_mps, out.fixes[0].battery_pct
    ('7', 18.67, 79.0)
    """
    try:
        root = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed(body, exc) from None
    if type(root) is not dict:
        raise DecodeError(INVALID_BODY, "body must be a JSON object")
    device_ref = next(
        (ref for key in DEVICE_KEYS if (ref := _json_device_ref(root.get(key))) is not None),
        None,
    )
    if "location" in root:
        located = root["location"]
        locations = located if type(located) is list else [located]
    elif "coords" in root or "timestamp" in root:
        locations = [root]
    else:
        # A heartbeat with no location at all: the device reports, but without a position.
        return Decoded(device_ref, [], [Rejection(0, MISSING_FIELD)], [])
    if len(locations) > max_fixes:
        raise DecodeError(
            TOO_MANY_FIXES, f"at most {max_fixes} locations a request, got {len(locations)}"
        )
    decoded = Decoded(device_ref)
    for index, location in enumerate(locations):
        try:
            fix = _json_fix(location, naive_tz)
        except FixRefused as refused:
            decoded.rejected.append(Rejection(index, refused.reason))
            continue
        decoded.fixes.append(fix)
        decoded.indexes.append(index)
    return decoded


def _non_empty(params: Mapping[str, str]) -> Callable[[str], str | None]:
    """A lookup that treats an empty parameter as absent, as Traccar skips empty values."""

    def get(key: str) -> str | None:
        value = params.get(key)
        return value if value else None

    return get


def _query_fix(
    get: Callable[[str], str | None], received_at: datetime | None, naive_tz: tzinfo
) -> RawFix:
    lat_text, lon_text = get("lat"), get("lon")
    if lat_text is None or lon_text is None:
        location = get("location")
        if location is None:
            raise FixRefused(MISSING_FIELD)
        # Traccar reads the first two comma-separated parts and ignores any further ones.
        parts = location.split(",")
        if len(parts) < 2:
            raise FixRefused(BAD_COORDINATES)
        lat_text, lon_text = parts[0], parts[1]
    lat, lon = text_number(lat_text), text_number(lon_text)
    if lat is None or lon is None or not on_earth(lat, lon):
        raise FixRefused(BAD_COORDINATES)

    valid = get("valid")
    # Traccar: Boolean.parseBoolean(value) || "1".equals(value).
    if valid is not None and valid.lower() != "true" and valid != "1":
        raise FixRefused(BAD_COORDINATES)

    stamp = get("timestamp")
    ts: datetime | None
    if stamp is not None:
        ts = _query_timestamp(stamp, naive_tz)
    elif received_at is not None:
        ts = to_utc(received_at)
    else:
        # Traccar's rule for a request without time: the fix is as old as the request.
        ts = datetime.now(UTC)
    if ts is None:
        raise FixRefused(BAD_TIMESTAMP)

    # The OsmAnd app and older Traccar Clients put Android's accuracy radius (metres) in
    # "hdop"; the iOS client sends "hacc". An explicit "accuracy" wins.
    accuracy = None
    for key in ("accuracy", "hacc", "hdop"):
        text = get(key)
        if text is not None:
            accuracy = positive_or_none(text_number(text))
            break
    speed = get("speed")
    knots = non_negative_or_none(text_number(speed)) if speed is not None else None
    course = get("bearing") or get("heading")
    altitude = get("altitude")
    battery = get("batt") or get("battery")
    mock = get("mock") or get("is_mock")
    return RawFix(
        ts=ts,
        lat=lat,
        lon=lon,
        accuracy_m=accuracy,
        speed_mps=knots * KNOT_MPS if knots is not None else None,
        bearing=bearing_or_none(text_number(course)) if course is not None else None,
        altitude_m=text_number(altitude) if altitude is not None else None,
        battery_pct=percent_or_none(text_number(battery)) if battery is not None else None,
        mock=mock is not None and mock.lower() in _TRUE_WORDS,
    )


def _query_timestamp(text: str, naive_tz: tzinfo) -> datetime | None:
    if _INTEGER.fullmatch(text):
        try:
            number = int(text)
        except ValueError:  # more digits than Python converts (sys.int_info)
            return None
        return from_epoch_ms(number * 1000 if number < _SECONDS_BELOW else number)
    if "T" in text:
        return parse_iso8601(text, naive_tz)
    # Traccar's only other form, "yyyy-MM-dd HH:mm:ss" in the server's zone.
    try:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return to_utc(local.replace(tzinfo=naive_tz))


def _json_device_ref(value: object) -> str | None:
    if type(value) is str:
        return value or None
    if type(value) is int:
        return str(value)
    return None


def _json_fix(location: Any, naive_tz: tzinfo) -> RawFix:
    if type(location) is not dict:
        raise FixRefused(BAD_TYPE)
    stamp = location.get("timestamp")
    coords = location.get("coords")
    if stamp is None or coords is None:
        raise FixRefused(MISSING_FIELD)
    if type(stamp) is str:
        ts = parse_iso8601(stamp, naive_tz)
    elif type(stamp) is int:
        ts = from_epoch_ms(stamp * 1000 if stamp < _SECONDS_BELOW else stamp)
    else:
        raise FixRefused(BAD_TIMESTAMP)
    if ts is None:
        raise FixRefused(BAD_TIMESTAMP)
    if type(coords) is not dict:
        raise FixRefused(BAD_TYPE)
    raw_lat, raw_lon = coords.get("latitude"), coords.get("longitude")
    if raw_lat is None or raw_lon is None:
        raise FixRefused(MISSING_FIELD)
    lat, lon = json_number(raw_lat), json_number(raw_lon)
    if lat is None or lon is None:
        raise FixRefused(BAD_TYPE)
    if not on_earth(lat, lon):
        raise FixRefused(BAD_COORDINATES)

    battery = location.get("battery")
    level = json_number(battery.get("level")) if type(battery) is dict else None
    uuid = location.get("uuid")
    return RawFix(
        ts=ts,
        lat=lat,
        lon=lon,
        accuracy_m=positive_or_none(json_number(coords.get("accuracy"))),
        client_id=uuid if type(uuid) is str and uuid else None,
        speed_mps=non_negative_or_none(json_number(coords.get("speed"))),
        bearing=bearing_or_none(json_number(coords.get("heading"))),
        altitude_m=json_number(coords.get("altitude")),
        # Rounded: 0.79 * 100 is 79.00000000000001 in binary floating point.
        battery_pct=percent_or_none(round(level * 100.0, 6)) if level is not None else None,
        mock=location.get("mock") is True
        or location.get("is_mock") is True
        or coords.get("mock") is True,
    )
