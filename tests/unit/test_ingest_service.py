"""The ingest use case (``service/ingest.py``) through the composition root, over a device
directory and a group committer of its own: who may upload, what is refused and how, and
what reaches the committer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.fixes import Rejection
from correction_monitor.ingest.batch import FixBatch
from correction_monitor.ingest.committer import CommitFailed, IngestResult, Overloaded
from correction_monitor.policy import load_policy
from correction_monitor.service.bootstrap import ingest_service
from correction_monitor.service.errors import InvalidInput, TooLarge, TryAgain, Unauthenticated
from correction_monitor.service.ingest import (
    MAX_FIXES_PER_REQUEST,
    Ingest,
    SubmitNative,
    SubmitOsmAnd,
    SubmitOwnTracks,
)
from tests.fakes import T0

pytestmark = pytest.mark.unit

PHONE = DeviceIdentity(device_id=7, subject_id=3, osmand_id="4455667788", org_unit_id=1)
TOKEN = "device-token"


class Directory:
    """Knows one device; ``down`` makes every lookup fail as PostgreSQL being away does."""

    def __init__(self) -> None:
        self.down = False
        self.asked: list[tuple[str, ...]] = []

    async def by_token(self, token: str) -> DeviceIdentity | None:
        self.asked.append(("token", token))
        if self.down:
            raise ConnectionRefusedError("PostgreSQL is away")
        return PHONE if token == TOKEN else None

    async def by_osmand_id(self, osmand_id: str, token: str | None = None) -> DeviceIdentity | None:
        self.asked.append(("osmand", osmand_id) if token is None else ("osmand", osmand_id, token))
        if self.down:
            raise ConnectionRefusedError("PostgreSQL is away")
        if osmand_id != PHONE.osmand_id or token not in (None, TOKEN):
            return None
        return PHONE


class Committer:
    """Takes every batch (or raises ``failure``); counts one fix as a duplicate when asked."""

    def __init__(self) -> None:
        self.submitted: list[tuple[DeviceIdentity, FixBatch, str]] = []
        self.failure: Exception | None = None
        self.duplicates = 0

    async def submit(self, device: DeviceIdentity, batch: FixBatch, protocol: str) -> IngestResult:
        if self.failure is not None:
            raise self.failure
        self.submitted.append((device, batch, protocol))
        return IngestResult(len(batch) - self.duplicates, self.duplicates)


class Body:
    """A request body that remembers whether it was read."""

    def __init__(self, payload: Any) -> None:
        self.data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.read = False

    async def __call__(self) -> bytes:
        self.read = True
        return self.data


def epoch_ms(seconds_from_now: float) -> int:
    return round((T0 + timedelta(seconds=seconds_from_now)).timestamp() * 1000)


def native_fix(seconds_from_now: float, **fields: Any) -> dict[str, Any]:
    return {"ts": epoch_ms(seconds_from_now), "lon": 116.3, "lat": 39.9, **fields}


@pytest.fixture
def directory() -> Directory:
    return Directory()


@pytest.fixture
def committer() -> Committer:
    return Committer()


@pytest.fixture
def ingest(directory: Directory, committer: Committer) -> Ingest:
    # The clock stands still at T0: a fix's age and future skew are measured against it.
    return ingest_service(directory, committer, policy=load_policy(), clock=ManualClock(T0))


async def test_a_native_batch_is_checked_against_the_clock_and_handed_on(
    ingest: Ingest, committer: Committer
) -> None:
    body = Body(
        {
            "fixes": [
                native_fix(-60, id="a"),
                native_fix(3600, id="b"),  # beyond the policy's clock skew
                {"ts": epoch_ms(-50), "lon": 116.3, "lat": 91.0},  # refused by the decoder
                native_fix(-40, id="c"),
            ]
        }
    )
    receipt = await ingest.submit_native(SubmitNative(TOKEN, body))
    assert (receipt.accepted, receipt.duplicates) == (2, 0)
    # Refusals of every stage come back together, in request order.
    assert [r.index for r in receipt.rejected] == [1, 2]
    assert receipt.rejected[0] == Rejection(1, "future_timestamp")
    [(device, batch, protocol)] = committer.submitted
    assert (device, protocol) == (PHONE, "native")
    assert list(batch.index) == [0, 3]


async def test_the_clock_decides_what_is_too_old(
    directory: Directory, committer: Committer
) -> None:
    week_later = ManualClock(T0 + timedelta(days=8))
    ingest = ingest_service(directory, committer, policy=load_policy(), clock=week_later)
    body = Body({"fixes": [native_fix(-60)]})
    receipt = await ingest.submit_native(SubmitNative(TOKEN, body))
    assert receipt.accepted == 0
    assert [r.reason for r in receipt.rejected] == ["too_old"]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "a device bearer token is required"),
        ("not-enrolled", "unknown or revoked device token"),
    ],
)
async def test_an_unknown_phones_body_is_never_read(
    ingest: Ingest, committer: Committer, token: str | None, message: str
) -> None:
    body = Body({"fixes": [native_fix(-60)]})
    with pytest.raises(Unauthenticated) as refused:
        await ingest.submit_native(SubmitNative(token, body))
    assert (refused.value.code, refused.value.message) == ("unauthorized", message)
    assert not body.read
    assert committer.submitted == []


async def test_more_fixes_than_one_upload_takes_is_too_large(ingest: Ingest) -> None:
    body = Body({"fixes": [native_fix(-60)] * (MAX_FIXES_PER_REQUEST + 1)})
    with pytest.raises(TooLarge) as refused:
        await ingest.submit_native(SubmitNative(TOKEN, body))
    assert refused.value.code == "too_many_fixes"


async def test_an_unusable_body_is_invalid_input(ingest: Ingest) -> None:
    with pytest.raises(InvalidInput) as refused:
        await ingest.submit_native(SubmitNative(TOKEN, Body(b"{not json")))
    assert refused.value.code == "malformed_json"


@pytest.mark.parametrize(
    ("failure", "code", "retry_after_s"),
    [
        (Overloaded(retry_after_s=2), "overloaded", 2),
        (CommitFailed("the commit failed"), "storage_unavailable", 5),
    ],
)
async def test_a_commit_that_cannot_happen_asks_the_phone_to_retry(
    ingest: Ingest, committer: Committer, failure: Exception, code: str, retry_after_s: int
) -> None:
    committer.failure = failure
    with pytest.raises(TryAgain) as refused:
        await ingest.submit_native(SubmitNative(TOKEN, Body({"fixes": [native_fix(-60)]})))
    assert (refused.value.code, refused.value.retry_after_s) == (code, retry_after_s)


async def test_a_device_lookup_without_postgresql_asks_the_phone_to_retry(
    ingest: Ingest, directory: Directory
) -> None:
    directory.down = True
    body = Body({"fixes": [native_fix(-60)]})
    with pytest.raises(TryAgain) as refused:
        await ingest.submit_native(SubmitNative(TOKEN, body))
    assert (refused.value.code, refused.value.retry_after_s) == ("storage_unavailable", 5)
    assert not body.read
    with pytest.raises(TryAgain):
        await ingest.submit_osmand(SubmitOsmAnd({"id": PHONE.osmand_id, "lat": "39.9"}))


async def test_an_osmand_report_names_its_device(
    ingest: Ingest, directory: Directory, committer: Committer
) -> None:
    when = str(epoch_ms(-60) // 1000)
    query = {"id": PHONE.osmand_id, "lat": "39.9", "lon": "116.3", "timestamp": when}
    receipt = await ingest.submit_osmand(SubmitOsmAnd(query))
    assert receipt.accepted == 1
    assert directory.asked == [("osmand", PHONE.osmand_id)]
    assert committer.submitted[0][2] == "osmand"
    with pytest.raises(InvalidInput) as missing:
        await ingest.submit_osmand(SubmitOsmAnd({"lat": "39.9", "lon": "116.3"}))
    assert missing.value.code == "missing_device_id"
    with pytest.raises(Unauthenticated) as unknown:
        await ingest.submit_osmand(SubmitOsmAnd({**query, "id": "1"}))
    assert unknown.value.message == "unknown device id '1'"


async def test_an_osmand_json_body_is_decoded_as_json(ingest: Ingest, committer: Committer) -> None:
    location = {
        "timestamp": "2026-03-01T07:59:00Z",
        "coords": {"latitude": 39.9, "longitude": 116.3, "accuracy": 10},
    }
    body = orjson.dumps({"device_id": PHONE.osmand_id, "location": location})
    receipt = await ingest.submit_osmand(SubmitOsmAnd(body=body))
    assert (receipt.accepted, receipt.rejected) == (1, [])


async def test_owntracks_takes_the_devices_id_and_token_together(
    ingest: Ingest, directory: Directory, committer: Committer
) -> None:
    message = {"_type": "location", "lat": 39.9, "lon": 116.3, "tst": epoch_ms(-60) // 1000}
    with pytest.raises(Unauthenticated):
        await ingest.submit_owntracks(SubmitOwnTracks(None, Body(message)))
    wrong = Body(message)
    with pytest.raises(Unauthenticated) as refused:
        await ingest.submit_owntracks(SubmitOwnTracks((PHONE.osmand_id, "wrong"), wrong))
    assert refused.value.message == "unknown device or wrong token"
    assert not wrong.read
    receipt = await ingest.submit_owntracks(
        SubmitOwnTracks((PHONE.osmand_id, TOKEN), Body(message))
    )
    assert receipt.accepted == 1
    assert committer.submitted[0][2] == "owntracks"


async def test_an_owntracks_message_with_every_fix_refused_is_refused(ingest: Ingest) -> None:
    future = {"_type": "location", "lat": 39.9, "lon": 116.3, "tst": epoch_ms(3600) // 1000}
    with pytest.raises(InvalidInput) as refused:
        await ingest.submit_owntracks(SubmitOwnTracks((PHONE.osmand_id, TOKEN), Body(future)))
    assert (refused.value.code, refused.value.message) == (
        "future_timestamp",
        "location message refused: future_timestamp",
    )


async def test_repeats_are_duplicates_not_refusals(ingest: Ingest, committer: Committer) -> None:
    committer.duplicates = 1
    message = {"_type": "location", "lat": 39.9, "lon": 116.3, "tst": epoch_ms(-60) // 1000}
    receipt = await ingest.submit_owntracks(
        SubmitOwnTracks((PHONE.osmand_id, TOKEN), Body(message))
    )
    assert (receipt.accepted, receipt.duplicates, receipt.rejected) == (0, 1, [])
