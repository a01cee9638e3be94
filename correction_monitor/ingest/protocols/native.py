"""The service's own fix upload protocol: the body of ``POST /api/v1/fixes``.

Body: ``{"fixes": [{"id"?, "ts", "lat", "lon", "accuracy_m"?, "crs"?, "speed_mps"?,
"bearing"?, "altitude_m"?, "battery"?, "provider"?, "mock"?}, ...]}``. Since this is our
own API, fields of the wrong type or with impossible values refuse the fix (so app bugs
show up in the response); negative speed, bearing or battery follow the phone convention
for "unknown" and become None. Unknown fields are ignored, so newer apps can send more.
This is the hot ingest path: one pass over the parsed JSON, no per-field allocations
beyond the :class:`~correction_monitor.domain.fixes.RawFix` itself.
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
import numpy as np
import orjson

from correction_monitor.domain.fixes import FixFlag, RawFix, Rejection
from correction_monitor.ingest.batch import FixBatch, client_key
from correction_monitor.ingest.protocols.decoded import Decoded
from correction_monitor.ingest.protocols.errors import (
    BAD_ACCURACY,
    BAD_COORDINATES,
    BAD_CRS,
    BAD_TIMESTAMP,
    BAD_TYPE,
    BAD_VALUE,
    INVALID_BODY,
    MISSING_FIELD,
    TOO_MANY_FIXES,
    DecodeError,
    FixRefused,
    malformed,
)
from correction_monitor.ingest.protocols.fields import (
    FAST_EPOCH_MS_LIMIT,
    from_epoch_ms,
    to_utc,
)
from geofences.crs import CRS, to_wgs84

DEFAULT_MAX_FIXES: Final = 1000
"""Most fixes one request may carry (the Device API contract)."""

MAX_CLIENT_ID_LENGTH: Final = 128
"""Longest fix ``id`` accepted, in characters (a UUID is 36)."""

_CRS_BY_NAME: Final[dict[str, str]] = {
    "wgs84": "wgs84",
    "wgs-84": "wgs84",
    "gcj02": "gcj02",
    "gcj-02": "gcj02",
    "bd09": "bd09",
    "bd-09": "bd09",
}


_LARGEST_FLOAT: Final = sys.float_info.max


class _Fix(msgspec.Struct, gc=False):
    """A native fix of the common shape, every value in range, for the typed fast path of
    :func:`decode_native_batch`; anything else fails to decode and takes the per-fix path
    (which names the reason). The bounds are those :func:`_decode_fix` checks. Not tracked
    by the garbage collector: it holds only numbers and strings, and a request decodes
    hundreds."""

    ts: Annotated[int, msgspec.Meta(ge=0, lt=FAST_EPOCH_MS_LIMIT)]
    lat: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    lon: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    accuracy_m: Annotated[float, msgspec.Meta(ge=0.0, le=_LARGEST_FLOAT)] | None = None
    id: Annotated[str, msgspec.Meta(max_length=MAX_CLIENT_ID_LENGTH)] | int | None = None
    crs: str | None = None
    mock: bool = False
    speed_mps: float | None = None
    bearing: Annotated[float, msgspec.Meta(le=360.0)] | None = None
    altitude_m: float | None = None
    battery: Annotated[float, msgspec.Meta(le=100.0)] | None = None
    provider: str | None = None


class _Body(msgspec.Struct, gc=False):
    fixes: list[_Fix]


_FAST_DECODER: Final = msgspec.json.Decoder(_Body)
_SENT_OTHER_CRS: Final = FixFlag.SENT_GCJ02 | FixFlag.SENT_BD09
_CRS_FLAG: Final[dict[str, int]] = {
    name: {"wgs84": 0, "gcj02": FixFlag.SENT_GCJ02, "bd09": FixFlag.SENT_BD09}[crs]
    for name, crs in _CRS_BY_NAME.items()
}


def decode_native_batch(body: bytes, *, max_fixes: int = DEFAULT_MAX_FIXES) -> FixBatch:
    """Decode a ``POST /api/v1/fixes`` body straight into a normalised :class:`FixBatch`.

    The same result as :func:`decode_native` followed by
    :func:`~correction_monitor.ingest.batch.normalize` (decoder refusals in
    ``batch.rejected``), but a body whose fixes all have the common shape — epoch
    milliseconds, numbers where numbers belong, values in range — is decoded by a typed
    msgspec decoder and checked on arrays, without a Python object per fix. Any body
    that does not fit takes the per-fix path, which names each refusal's reason.

    Examples
    --------
    >>> batch = decode_native_batch(b'{"fixes": [{"ts": 1700000000000, "lat": 39.9,'
    ...                             b' "lon": 116.4, "id": "a1"}]}')
    >>> batch.ts.tolist(), batch.lat.tolist(), batch.key.tolist() == [client_key("a1")]
    ([1700000000.0], [39.9], True)
    """
    batch = _fast_batch(body, max_fixes)
    if batch is not None:
        return batch
    return decode_native(body, max_fixes=max_fixes).normalized()


def _fast_batch(body: bytes, max_fixes: int) -> FixBatch | None:
    """The typed path of :func:`decode_native_batch`, or None when the body needs the
    per-fix path (a fix of another shape, a value out of range, too many fixes)."""
    try:
        fixes = _FAST_DECODER.decode(body).fixes
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    except (UnicodeDecodeError, RecursionError):
        # msgspec's own refusals of invalid UTF-8 in a string it reads and of nesting deeper
        # than the interpreter's recursion limit; the per-fix path's JSON parser then names
        # the request's fault (or, nested less than its own limit, decodes it).
        return None
    n = len(fixes)
    if n > max_fixes:
        return None
    # The decoder checked every bound; what is left is gathering columns (lists, not numpy:
    # most requests carry a handful of fixes, where each numpy call costs more than a loop).
    ts_ms = [f.ts for f in fixes]
    lat = [f.lat for f in fixes]
    lon = [f.lon for f in fixes]
    acc = [math.nan if f.accuracy_m is None else f.accuracy_m for f in fixes]
    keys = [
        0 if f.id is None else client_key(f.id if type(f.id) is str else str(f.id)) for f in fixes
    ]
    flagged = any(f.mock or f.crs is not None for f in fixes)
    if flagged:
        crs_flags = [0 if f.crs is None else _CRS_FLAG.get(f.crs.lower(), -1) for f in fixes]
        if -1 in crs_flags:
            return None  # a CRS name this service does not know: refused per fix
        mock = [FixFlag.MOCK if f.mock else 0 for f in fixes]
        flags = np.array(crs_flags, dtype=np.int16) | np.array(mock, dtype=np.int16)
    else:
        flags = np.zeros(n, dtype=np.int16)
    batch = FixBatch(
        np.arange(n, dtype=np.int32),
        np.array(ts_ms, dtype=np.int64) / 1000.0,
        np.array(lon, dtype=np.float64),
        np.array(lat, dtype=np.float64),
        np.array(acc, dtype=np.float64),
        flags,
        np.array(keys, dtype=np.int32),
    )
    if flagged and (flags & _SENT_OTHER_CRS).any():
        for code, crs_name in ((FixFlag.SENT_GCJ02, CRS.GCJ02), (FixFlag.SENT_BD09, CRS.BD09)):
            sel = (batch.flags & code) != 0
            if sel.any():
                batch.lon[sel], batch.lat[sel] = to_wgs84(batch.lon[sel], batch.lat[sel], crs_name)
    return batch


def decode_native(body: bytes, *, max_fixes: int = DEFAULT_MAX_FIXES) -> Decoded:
    """Decode a ``POST /api/v1/fixes`` body into raw fixes and per-fix rejections.

    Parameters
    ----------
    body
        The request body, UTF-8 JSON.
    max_fixes
        Most fixes accepted in one request.

    Returns
    -------
    Decoded
        ``device_ref`` is None (the bearer token names the device); rejected fixes carry
        their index in ``fixes`` and a reason from
        :data:`~correction_monitor.ingest.protocols.errors.REJECTION_REASONS`.

    Raises
    ------
    DecodeError
        ``malformed_json`` / ``invalid_body`` when the body is not ``{"fixes": [...]}``,
        ``too_many_fixes`` when it holds more than ``max_fixes`` fixes.

    Examples
    --------
    >>> out = decode_native(b'{"fixes": [{"ts": 1700000000000, "lat": 39.9, "lon": 116.4},'
    ...                     b' {"ts": "yesterday", "lat": 39.9, "lon": 116.4}]}')
    >>> out.fixes[0].ts.isoformat(), out.indexes, out.rejected
    ('2023-11-14T22:13:20+00:00', [0], [Rejection(index=1, reason='bad_timestamp')])
    """
    try:
        root = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed(body, exc) from None
    if type(root) is not dict:
        raise DecodeError(INVALID_BODY, 'body must be a JSON object {"fixes": [...]}')
    items = root.get("fixes")
    if type(items) is not list:
        raise DecodeError(INVALID_BODY, '"fixes" must be a list of fix objects')
    if len(items) > max_fixes:
        raise DecodeError(
            TOO_MANY_FIXES, f"at most {max_fixes} fixes a request, this one has {len(items)}"
        )
    fixes: list[RawFix] = []
    rejected: list[Rejection] = []
    indexes: list[int] = []
    for index, item in enumerate(items):
        try:
            fix = _decode_fix(item)
        except FixRefused as refused:
            rejected.append(Rejection(index, refused.reason))
            continue
        fixes.append(fix)
        indexes.append(index)
    return Decoded(None, fixes, rejected, indexes)


def _decode_fix(item: Any) -> RawFix:
    if type(item) is not dict:
        raise FixRefused(BAD_TYPE)
    get = item.get
    raw_ts = get("ts")
    lat = get("lat")
    lon = get("lon")
    if raw_ts is None or lat is None or lon is None:
        raise FixRefused(MISSING_FIELD)
    ts = _timestamp(raw_ts)
    if type(lat) is int:
        lat = float(lat)
    elif type(lat) is not float:
        raise FixRefused(BAD_TYPE)
    if type(lon) is int:
        lon = float(lon)
    elif type(lon) is not float:
        raise FixRefused(BAD_TYPE)
    # Inline rather than fields.on_earth: this runs for every fix uploaded.
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise FixRefused(BAD_COORDINATES)

    accuracy = get("accuracy_m")
    if accuracy is not None:
        accuracy = _number(accuracy)
        # Not "<= 0": an explicit 0 m is the client's claim of a point fix, kept as sent.
        if not 0.0 <= accuracy < math.inf:
            raise FixRefused(BAD_ACCURACY)

    crs = get("crs")
    if crs is None:
        crs = "wgs84"
    else:
        crs = _CRS_BY_NAME.get(crs.lower()) if type(crs) is str else None
        if crs is None:
            raise FixRefused(BAD_CRS)

    speed = get("speed_mps")
    if speed is not None:
        speed = _number(speed)
        if speed < 0.0:
            speed = None
    bearing = get("bearing")
    if bearing is not None:
        bearing = _number(bearing)
        if bearing < 0.0:
            bearing = None
        elif bearing >= 360.0:
            if bearing > 360.0:
                raise FixRefused(BAD_VALUE)
            bearing = 0.0
    altitude = get("altitude_m")
    if altitude is not None:
        altitude = _number(altitude)
    battery = get("battery")
    if battery is not None:
        battery = _number(battery)
        if battery < 0.0:
            battery = None
        elif battery > 100.0:
            raise FixRefused(BAD_VALUE)

    mock = get("mock")
    if mock is None:
        mock = False
    elif type(mock) is not bool:
        raise FixRefused(BAD_TYPE)
    provider = get("provider")
    if provider is not None and type(provider) is not str:
        raise FixRefused(BAD_TYPE)
    client_id = get("id")
    if client_id is not None:
        client_id = _client_id(client_id)

    # Positional: a keyword call costs several times as much on this path. Order is
    # RawFix's: ts, lat, lon, accuracy_m, crs, client_id, speed_mps, bearing,
    # altitude_m, battery_pct, provider, mock.
    return RawFix(
        ts,
        lat,
        lon,
        accuracy,
        crs,
        client_id,
        speed,
        bearing,
        altitude,
        battery,
        provider or None,
        mock,
    )


def _timestamp(raw: Any) -> datetime:
    """ISO-8601, or epoch milliseconds (a JSON number or a digit string).

    An ISO time without offset is read as UTC, as the OsmAnd protocol does: phones stamp
    fixes from GPS time, which is UTC, and a refused fix is lost evidence. Epoch
    milliseconds may carry a fraction (``time.time() * 1000``).
    """
    if type(raw) is str:
        if raw.isascii() and raw.isdigit():
            try:
                ts = from_epoch_ms(int(raw))
            except ValueError:  # more digits than Python converts (sys.int_info)
                raise FixRefused(BAD_TIMESTAMP) from None
        else:
            if len(raw) <= 10:  # a date alone says nothing about when the fix was taken
                raise FixRefused(BAD_TIMESTAMP)
            try:
                ts = datetime.fromisoformat(raw)
            except ValueError:
                raise FixRefused(BAD_TIMESTAMP) from None
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            elif ts.tzinfo is not UTC:
                ts = to_utc(ts)
    elif type(raw) is int:
        ts = from_epoch_ms(raw)
    elif type(raw) is float and math.isfinite(raw):
        ts = from_epoch_ms(round(raw))
    else:
        raise FixRefused(BAD_TIMESTAMP)
    if ts is None:
        raise FixRefused(BAD_TIMESTAMP)
    return ts


def _number(value: Any) -> float:
    """A JSON number as float; refuses the fix for any other JSON type."""
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise FixRefused(BAD_TYPE)


def _client_id(raw: Any) -> str | None:
    if type(raw) is str:
        if len(raw) > MAX_CLIENT_ID_LENGTH:
            raise FixRefused(BAD_VALUE)
        # An empty id is how some clients say "no id": deduplicate on the timestamp instead.
        return raw or None
    if type(raw) is int:
        return str(raw)
    if type(raw) is float:
        return str(int(raw)) if raw.is_integer() else repr(raw)
    raise FixRefused(BAD_TYPE)
