"""A phone's upload as a use case: from its credentials and body to the fixes kept.

One command per protocol (``SubmitNative``, ``SubmitOsmAnd``, ``SubmitOwnTracks``) carries
what the request holds; :class:`Ingest` runs it through the pipeline's stages in order:
decode (``ingest/protocols``) → authenticate the device (``service/device_identity.py``) →
normalize → validate → dedupe → quality (``ingest/batch.py``) → persist + evaluate +
publish (the group committer, ``ingest/committer.py``). The answer is a :class:`Receipt`; a
request that cannot be used at all is refused with a ``service.errors`` error, each
entrypoint (the aiohttp routes, the ingest front) rendering both in its own way.

No unit of work is opened per upload: the group committer's transaction, shared by every
upload of its commit group, is the transaction of each of them. So these commands are not
``service.command.Command``s, which ``Services.handle`` runs each on a unit of work of its
own; :class:`Ingest`, which the composition root builds (``bootstrap.ingest_service``),
has one method per command. This path answers thousands of requests a second, so it
allocates little beyond the batch itself: a command, a receipt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from correction_monitor.adapters.db import DATABASE_UNAVAILABLE
from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.fixes import Rejection
from correction_monitor.ingest.batch import FixBatch, prepare_normalized
from correction_monitor.ingest.committer import CommitFailed, IngestResult, Overloaded
from correction_monitor.ingest.protocols.decoded import Decoded
from correction_monitor.ingest.protocols.errors import TOO_MANY_FIXES, DecodeError
from correction_monitor.ingest.protocols.native import decode_native_batch
from correction_monitor.ingest.protocols.osmand import decode_osmand_json, decode_osmand_query
from correction_monitor.ingest.protocols.owntracks import decode_owntracks
from correction_monitor.metrics import FIXES_REJECTED
from correction_monitor.policy import IngestPolicy
from correction_monitor.service.errors import (
    InvalidInput,
    ServiceError,
    TooLarge,
    TryAgain,
    Unauthenticated,
)

MAX_FIXES_PER_REQUEST = 1000
STORAGE_RETRY_AFTER_S = 5

ReadBody = Callable[[], Awaitable[bytes]]
"""Reads the request's body; called only once the device is known, so that an unknown
device's body is never read."""


class DeviceLookup(Protocol):
    """Who a phone's credentials name (``service/device_identity.py``)."""

    async def by_token(self, token: str) -> DeviceIdentity | None: ...

    async def by_osmand_id(
        self, osmand_id: str, token: str | None = None
    ) -> DeviceIdentity | None: ...


class FixSubmitter(Protocol):
    """Where prepared batches are persisted and evaluated (``ingest/committer.py``)."""

    async def submit(
        self, device: DeviceIdentity, batch: FixBatch, protocol: str
    ) -> IngestResult: ...


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of an upload's fixes: ``accepted`` stored (and evaluated), ``duplicates``
    already stored or repeated, ``rejected`` refused with a reason, by index in the request."""

    accepted: int
    duplicates: int
    rejected: list[Rejection]


@dataclass(frozen=True, slots=True)
class SubmitNative:
    """A native batch (``POST /api/v1/fixes``): the device token (None when the request
    carries none) and the JSON body, read once the token is known to be good."""

    token: str | None
    body: ReadBody


@dataclass(frozen=True, slots=True)
class SubmitOsmAnd:
    """A Traccar Client (OsmAnd protocol) report: its query or form parameters, or, when
    ``body`` is given, its JSON body. The device is named inside the report."""

    params: Mapping[str, str] | None = None
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class SubmitOwnTracks:
    """An OwnTracks HTTP-mode message: its Basic credentials (user = the device's OsmAnd
    id, password = its token; None when absent or unreadable) and its JSON body."""

    credentials: tuple[str, str] | None
    body: ReadBody


def _storage_unavailable() -> TryAgain:
    # The phone keeps its fixes and retries, as after any failed commit.
    return TryAgain(
        "storage_unavailable",
        "fixes could not be stored; retry shortly",
        retry_after_s=STORAGE_RETRY_AFTER_S,
    )


def _undecodable(exc: DecodeError) -> ServiceError:
    if exc.code == TOO_MANY_FIXES:
        return TooLarge(exc.code, str(exc))
    return InvalidInput(exc.code, str(exc))


def _by_index(rejection: Rejection) -> int:
    return rejection.index


class Ingest:
    """The ingest use case of one process, over its device directory and group committer.

    ``policy`` bounds what is accepted (clock skew, age, accuracy); ``clock`` is what a
    fix's time is measured against.
    """

    __slots__ = ("_clock", "_committer", "_devices", "_policy")

    def __init__(
        self,
        devices: DeviceLookup,
        committer: FixSubmitter,
        *,
        policy: IngestPolicy,
        clock: Clock,
    ) -> None:
        self._devices = devices
        self._committer = committer
        self._policy = policy
        self._clock = clock

    async def submit_native(self, command: SubmitNative) -> Receipt:
        if command.token is None:
            raise Unauthenticated("unauthorized", "a device bearer token is required")
        try:
            device = await self._devices.by_token(command.token)
        except DATABASE_UNAVAILABLE as exc:  # a token not cached yet needs PostgreSQL
            raise _storage_unavailable() from exc
        if device is None:
            raise Unauthenticated("unauthorized", "unknown or revoked device token")
        try:
            batch = decode_native_batch(await command.body(), max_fixes=MAX_FIXES_PER_REQUEST)
        except DecodeError as exc:
            raise _undecodable(exc) from exc
        return await self._submit(device, batch, "native")

    async def submit_osmand(self, command: SubmitOsmAnd) -> Receipt:
        try:
            if command.body is not None:
                decoded = decode_osmand_json(command.body, max_fixes=MAX_FIXES_PER_REQUEST)
            else:
                decoded = decode_osmand_query(command.params or {})
        except DecodeError as exc:
            raise _undecodable(exc) from exc
        if decoded.device_ref is None:
            raise InvalidInput("missing_device_id", "the request names no device (id / deviceid)")
        try:
            device = await self._devices.by_osmand_id(decoded.device_ref)
        except DATABASE_UNAVAILABLE as exc:
            raise _storage_unavailable() from exc
        if device is None:
            raise Unauthenticated("unauthorized", f"unknown device id {decoded.device_ref!r}")
        return await self._submit(device, decoded.normalized(), "osmand")

    async def submit_owntracks(self, command: SubmitOwnTracks) -> Receipt:
        """As the others, and a message whose every fix is refused is refused itself (400
        with the first fix's reason): OwnTracks shows the app nothing of a 200's body."""
        if command.credentials is None:
            raise Unauthenticated(
                "unauthorized", "HTTP Basic credentials (device id and token) are required"
            )
        try:
            device = await self._devices.by_osmand_id(*command.credentials)
        except DATABASE_UNAVAILABLE as exc:
            raise _storage_unavailable() from exc
        if device is None:
            raise Unauthenticated("unauthorized", "unknown device or wrong token")
        try:
            decoded: Decoded = decode_owntracks(
                await command.body(), max_fixes=MAX_FIXES_PER_REQUEST
            )
        except DecodeError as exc:
            raise _undecodable(exc) from exc
        receipt = await self._submit(device, decoded.normalized(), "owntracks")
        if receipt.rejected and not receipt.accepted and not receipt.duplicates:
            first = receipt.rejected[0]
            raise InvalidInput(first.reason, f"location message refused: {first.reason}")
        return receipt

    async def _submit(self, device: DeviceIdentity, batch: FixBatch, protocol: str) -> Receipt:
        """The stages after decoding, for a decoded batch (decoder refusals in its
        ``rejected``)."""
        prepare_normalized(batch, self._clock.now().timestamp(), self._policy)
        rejected = batch.rejected
        for rejection in rejected:
            FIXES_REJECTED.labels(rejection.reason).inc()
        try:
            result = await self._committer.submit(device, batch, protocol)
        except Overloaded as exc:
            raise TryAgain(
                "overloaded", "the service is busy; retry shortly", retry_after_s=exc.retry_after_s
            ) from exc
        except CommitFailed as exc:
            raise _storage_unavailable() from exc
        # The committer's count already includes the repeats dropped inside this request.
        return Receipt(result.accepted, result.duplicates, sorted(rejected, key=_by_index))
