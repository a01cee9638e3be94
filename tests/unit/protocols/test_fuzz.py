"""Hostile input to every body decoder: nothing escapes but the decoder's documented error
(the strategies are in ``hostile.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correction_monitor.domain.jsontext import INVALID_UTF8, MAX_DEPTH, TOO_DEEP
from correction_monitor.ingest.batch import FixBatch
from correction_monitor.ingest.protocols import (
    DECODE_ERROR_CODES,
    REJECTION_REASONS,
    Decoded,
    DecodeError,
    decode_native,
    decode_osmand_json,
    decode_osmand_query,
    decode_owntracks,
)
from correction_monitor.ingest.protocols.native import decode_native_batch
from correction_monitor.web.errors import ApiError
from correction_monitor.web.jsonio import parse_json
from tests.unit.protocols.hostile import (
    hostile_bytes,
    native_bodies,
    osmand_bodies,
    osmand_queries,
    owntracks_bodies,
)
from tests.unit.protocols.test_native_batch import assert_same

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- what a decoder may do -------------------------------------------------------------------


def decodes_or_refuses(decode: Callable[[bytes], Any], body: bytes) -> Any:
    """The decoder's result, or None after a documented refusal; anything else fails."""
    try:
        return decode(body)
    except DecodeError as exc:
        refusal = exc
    assert refusal.code in DECODE_ERROR_CODES
    assert refusal.message
    return None


def check_decoded(decoded: Decoded) -> None:
    assert {r.reason for r in decoded.rejected} <= set(REJECTION_REASONS)
    assert len(decoded.fixes) == len(decoded.indexes)
    for fix in decoded.fixes:
        assert math.isfinite(fix.lat)
        assert math.isfinite(fix.lon)
        assert fix.ts.tzinfo is not None
    decoded.normalized()


def check_native(body: bytes) -> None:
    reference = decodes_or_refuses(decode_native, body)
    if reference is not None:
        check_decoded(reference)
    batch = decodes_or_refuses(decode_native_batch, body)
    if reference is not None:
        # Whatever the per-fix decoder takes, the typed path decodes to the same result.
        assert batch is not None
        assert_same(batch, reference.normalized())
    elif batch is not None:
        # The typed path skips fields the service does not know without reading them, so
        # it can take a body whose ignored parts the per-fix parser refuses; never anything
        # the service reads.
        assert isinstance(batch, FixBatch)
        assert np.isfinite(batch.lat).all()
        assert np.isfinite(batch.lon).all()


def check_json_decoder(decode: Callable[[bytes], Decoded], body: bytes) -> None:
    decoded = decodes_or_refuses(decode, body)
    if decoded is not None:
        check_decoded(decoded)


@FUZZ
@given(st.one_of(native_bodies, hostile_bytes))
def test_native_decoders_refuse_only_with_decode_errors(body: bytes) -> None:
    check_native(body)


@FUZZ
@given(st.one_of(osmand_bodies, hostile_bytes))
def test_osmand_json_refuses_only_with_decode_errors(body: bytes) -> None:
    check_json_decoder(decode_osmand_json, body)


@FUZZ
@given(st.one_of(owntracks_bodies, hostile_bytes))
def test_owntracks_refuses_only_with_decode_errors(body: bytes) -> None:
    check_json_decoder(decode_owntracks, body)


@FUZZ
@given(osmand_queries())
def test_osmand_query_never_raises(params: dict[str, str]) -> None:
    check_decoded(decode_osmand_query(params))


@FUZZ
@given(st.one_of(hostile_bytes, native_bodies, osmand_bodies))
def test_officer_json_reader_refuses_with_400(body: bytes) -> None:
    try:
        parse_json(body)
    except ApiError as exc:
        refusal = exc
    else:
        return
    assert refusal.status == 400
    assert refusal.code in {"empty_body", "invalid_text", "invalid_json", INVALID_UTF8, TOO_DEEP}


# -- the two refusals the issue names, exactly ----------------------------------------------

GOOD_FIX = b'"ts":1767225600000,"lat":39.9,"lon":116.4'
BAD_ID = b'{"fixes":[{' + GOOD_FIX + b',"id":"a\xff\xfe"}]}'
DEEP = b'{"fixes":[{' + GOOD_FIX + b',"extra":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}]}"


@pytest.mark.parametrize(
    "decode",
    [decode_native, decode_native_batch, decode_osmand_json, decode_owntracks],
    ids=["native", "native_batch", "osmand", "owntracks"],
)
@pytest.mark.parametrize(("body", "code"), [(BAD_ID, INVALID_UTF8), (DEEP, TOO_DEEP)])
def test_invalid_utf8_and_deep_nesting_have_their_codes(
    decode: Callable[[bytes], Any], body: bytes, code: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(body)
    assert caught.value.code == code


def test_nesting_within_the_parsers_limit_decodes_on_either_path() -> None:
    # msgspec stops at the interpreter's recursion limit (about 1000 levels), orjson at
    # 1024: between the two the body is the per-fix path's, which takes it.
    for depth in (990, MAX_DEPTH - 3):
        body = b'{"fixes":[{' + GOOD_FIX + b',"x":' + b"[" * depth + b"]" * depth + b"}]}"
        assert decode_native_batch(body).lat.tolist() == [39.9]
    body = b'{"fixes":[{' + GOOD_FIX + b',"x":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}]}"
    with pytest.raises(DecodeError) as caught:
        decode_native_batch(body)
    assert caught.value.code == TOO_DEEP


@pytest.mark.parametrize(
    "timestamp", [b'"' + b"9" * 5000 + b'"', b'"' + b"0" * 4400 + b'1767225600000"']
)
def test_timestamps_of_thousands_of_digits_are_refused_per_fix(timestamp: bytes) -> None:
    body = b'{"fixes":[{"ts":' + timestamp + b',"lat":39.9,"lon":116.4}]}'
    assert [r.reason for r in decode_native(body).rejected] == ["bad_timestamp"]
    tst = b'{"_type":"lwt","tst":' + timestamp + b"}"
    assert [r.reason for r in decode_owntracks(tst).rejected] == ["bad_timestamp"]
    query = {"id": "1", "lat": "39.9", "lon": "116.4", "timestamp": timestamp.strip(b'"').decode()}
    assert [r.reason for r in decode_osmand_query(query).rejected] == ["bad_timestamp"]


def test_officer_reader_names_utf8_and_depth() -> None:
    for body, code in ((b'{"name": "\xe5\x8f"}', INVALID_UTF8), (b"[" * 3000, TOO_DEEP)):
        with pytest.raises(ApiError) as caught:
            parse_json(body)
        assert (caught.value.status, caught.value.code) == (400, code)
