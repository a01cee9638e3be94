"""Hostile request bodies and parameters for the decoder fuzz tests and the HTTP ones.

Bodies are built as bytes, not through a JSON encoder, so they can hold what no encoder
writes: invalid UTF-8 inside strings, nesting past any parser's limit, integers of
thousands of digits, ``NaN`` and ``Infinity`` tokens. Fix-shaped bodies put those values
where each decoder reads fields, so the per-fix code runs on them too.
"""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

from correction_monitor.domain.jsontext import MAX_DEPTH

_INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]
_ODD_STRINGS = ["NaN", "-Infinity", "1e999", "0x1F", "９", "٣", " 1", "", "\x00", "9" * 5000]


def _number_text(value: float) -> bytes:
    return repr(value).encode()


def rarely(
    hostile: st.SearchStrategy[bytes], plain: st.SearchStrategy[bytes], one_in: int
) -> st.SearchStrategy[bytes]:
    """``hostile`` one time in ``one_in``, else ``plain``: most bodies stay readable, so the
    decoders get past their first refusal and into the code behind it."""
    # The plain choice is the one hypothesis shrinks towards (the smallest integer).
    return st.integers(1, one_in).flatmap(lambda i: hostile if i == one_in else plain)


plain_scalars = st.one_of(
    st.sampled_from([b"null", b"true", b"false", b"-0"]),
    st.integers().map(lambda n: str(n).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(_number_text),
    st.text(max_size=12).map(lambda s: orjson.dumps(s)),
    st.sampled_from(_ODD_STRINGS).map(lambda s: orjson.dumps(s)),
)
hostile_scalars = st.one_of(
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]),
    # Digits past Python's int-from-text limit (4300), bare and as a string.
    st.integers(4290, 4400).map(lambda n: b"9" * n),
    st.integers(4290, 4400).map(lambda n: b'"' + b"1" * n + b'"'),
    st.sampled_from([b"1e400", b"-1e400", b"1e-400", b"1.5e308", b"0.1e1", b"01", b"1."]),
    st.sampled_from(_INVALID_UTF8).map(lambda b: b'"a' + b + b'"'),
    st.sampled_from([b'"\\ud800"', b'"\\udc00x"', b'"\\u0000"', b'"\\x"']),
)
scalars = rarely(hostile_scalars, plain_scalars, 8)


def _array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def _object(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(k + b":" + v for k, v in pairs) + b"}"


keys = rarely(
    st.sampled_from(_INVALID_UTF8).map(lambda b: b'"k' + b + b'"'),
    st.text(max_size=8).map(lambda s: orjson.dumps(s)),
    20,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(st.tuples(keys, inner), max_size=4).map(_object),
    ),
    max_leaves=12,
)


@st.composite
def nested(draw: st.DrawFn, value: st.SearchStrategy[bytes] = json_values) -> bytes:
    """A value under a few arrays or objects, or (one time in four) under as many as
    three times orjson's depth limit."""
    deep = draw(st.integers(0, 3)) == 3
    depth = draw(st.integers(MAX_DEPTH - 5, 3 * MAX_DEPTH) if deep else st.integers(0, 5))
    inside = draw(value)
    if draw(st.booleans()):
        return b"[" * depth + inside + b"]" * depth
    return b'{"a":' * depth + inside + b"}" * depth


any_value = st.one_of(json_values, nested())


@st.composite
def fix_shaped(
    draw: st.DrawFn, fields: dict[str, st.SearchStrategy[bytes]], extras: int = 2
) -> bytes:
    """An object with most of ``fields``, each value sane or (one time in eight) anything,
    up to ``extras`` unknown fields, in any order: close enough to the shape that each decoder
    reads its fields rather than refusing the object at once."""
    pairs = []
    for name, sane in fields.items():
        # Present and sane are the choices hypothesis shrinks towards (the smallest integer).
        if draw(st.integers(0, 4)) == 4:
            continue
        hostile = draw(st.integers(0, 7)) == 7
        pairs.append((orjson.dumps(name), draw(any_value if hostile else sane)))
    pairs += draw(st.lists(st.tuples(keys, any_value), max_size=extras))
    return _object(draw(st.permutations(pairs)))


def num(lo: float, hi: float) -> st.SearchStrategy[bytes]:
    return st.floats(lo, hi).map(_number_text)


def stamp(lo: int, hi: int) -> st.SearchStrategy[bytes]:
    """A time as a number or a digit string (phones send both), at times too long to
    convert."""
    return rarely(
        st.integers(4290, 4400).map(lambda n: b'"' + b"1" * n + b'"'),
        st.one_of(
            st.integers(lo, hi).map(lambda n: str(n).encode()),
            st.integers(lo, hi).map(lambda n: b'"%d"' % n),
        ),
        6,
    )


native_fix = fix_shaped(
    {
        "ts": stamp(1_600_000_000_000, 1_900_000_000_000),
        "lat": num(-90, 90),
        "lon": num(-180, 180),
        "accuracy_m": num(0, 100),
        "id": st.text(max_size=40).map(lambda s: orjson.dumps(s)),
        "crs": st.sampled_from([b'"wgs84"', b'"gcj02"', b'"BD-09"']),
        "mock": st.sampled_from([b"true", b"false"]),
        "provider": st.just(b'"gps"'),
    }
)
native_bodies = st.one_of(
    st.lists(native_fix, max_size=5).map(lambda fixes: b'{"fixes":' + _array(fixes) + b"}"),
    st.tuples(st.lists(native_fix, max_size=3), st.tuples(keys, any_value)).map(
        lambda t: _object([(b'"fixes"', _array(t[0])), t[1]])
    ),
)
osmand_location = fix_shaped(
    {
        "timestamp": st.one_of(
            st.sampled_from([b'"2026-01-01T00:00:00Z"', b'"2026-01-01"']),
            stamp(1_600_000_000, 1_900_000_000_000),
        ),
        "coords": fix_shaped(
            {"latitude": num(-90, 90), "longitude": num(-180, 180), "accuracy": num(0, 99)}
        ),
        "uuid": st.just(b'"u-1"'),
        "battery": fix_shaped({"level": num(0, 1)}),
    }
)
osmand_bodies = st.one_of(
    st.tuples(any_value, st.lists(osmand_location, max_size=4)).map(
        lambda t: _object([(b'"device_id"', t[0]), (b'"location"', _array(t[1]))])
    ),
    osmand_location,
)
owntracks_message = fix_shaped(
    {
        "_type": st.sampled_from([b'"location"', b'"lwt"', b'"transition"', b'"card"']),
        "lat": num(-90, 90),
        "lon": num(-180, 180),
        "tst": stamp(1_600_000_000, 1_900_000_000),
        "acc": num(0, 99),
        "tid": st.just(b'"JJ"'),
    }
)
owntracks_bodies = st.one_of(owntracks_message, st.lists(owntracks_message, max_size=4).map(_array))

hostile_bytes = st.one_of(
    st.binary(max_size=300),
    any_value,
    st.tuples(any_value, st.sampled_from(_INVALID_UTF8), st.integers(0, 400)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]  # a bad byte somewhere in good text
    ),
)


query_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(_ODD_STRINGS),
    st.integers().map(str),
    st.integers(4290, 4400).map(lambda n: "-" + "1" * n),
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01 00:00:00", "39.9,116.4", "-1"]),
)
QUERY_FIELDS: dict[str, st.SearchStrategy[str]] = {
    "id": st.just("123456"),
    "lat": st.just("39.9"),
    "lon": st.just("116.4"),
    "location": st.just("39.9,116.4"),
    "timestamp": st.one_of(
        st.just("1767225600"), st.integers(4290, 4400).map(lambda n: "-" + "1" * n)
    ),
    "speed": st.just("3.5"),
    "bearing": st.just("90"),
    "batt": st.just("80"),
    "accuracy": st.just("8"),
    "hdop": st.just("8"),
    "altitude": st.just("50"),
    "valid": st.just("true"),
    "mock": st.just("false"),
}


@st.composite
def osmand_queries(draw: st.DrawFn) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, sane in QUERY_FIELDS.items():
        if draw(st.integers(0, 4)) == 4:
            continue
        params[name] = draw(query_text if draw(st.integers(0, 3)) == 3 else sane)
    params.update(draw(st.dictionaries(st.text(max_size=5), query_text, max_size=2)))
    return params
