"""Device identity: which enrolled device a phone's credentials name, with an in-process
cache kept honest.

A phone proves itself with its device token (native uploads, and the check-ins to come),
its OsmAnd id (Traccar Client) or both (OwnTracks' Basic credentials). Phones send many
requests; looking the token up in PostgreSQL each time would cost more
than the rest of the request, and a phone reports every 15–60 s, so only a cache that
outlives that interval saves anything. Known devices are therefore cached for
``ttl_s`` (five minutes), and every process watches the ``devices`` table for revocations
(:meth:`DeviceDirectory.watch`, every ``watch_every_s``) and forgets a revoked device at
once: a revoked token is refused everywhere within a few seconds. Should the watch stop
answering (PostgreSQL away), entries fall back to ``fallback_ttl_s`` so the bound holds.
Unknown tokens are remembered only for ``fallback_ttl_s`` (a device enrolled meanwhile
must not be refused for long).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import datetime, timedelta

import asyncpg
import structlog

from correction_monitor.adapters import subjects
from correction_monitor.adapters.db import database_now
from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.service.auth import token_hash

log = structlog.get_logger("correction_monitor.devices")

REVOCATION_OVERLAP_S = 60.0


class DeviceDirectory:
    """The process's one directory of devices (see the module docstring); every lookup
    answers a :class:`DeviceIdentity` or None, for a device unknown or revoked."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl_s: float = 300.0,
        fallback_ttl_s: float = 10.0,
        watch_every_s: float = 2.0,
        max_entries: int = 200_000,
    ) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.fallback_ttl_s = fallback_ttl_s
        self.watch_every_s = watch_every_s
        self.max_entries = max_entries
        self._by_token: dict[bytes, tuple[float, DeviceIdentity | None]] = {}
        self._by_osmand: dict[str, tuple[float, DeviceIdentity | None, bytes | None]] = {}
        self._watched_at: float | None = None  # monotonic time of the last good watch
        self._revoked_since: datetime | None = None
        self._forgotten: dict[int, datetime] = {}

    def _trim(self) -> None:
        if len(self._by_token) > self.max_entries:
            self._by_token.clear()
        if len(self._by_osmand) > self.max_entries:
            self._by_osmand.clear()

    def _fresh(self, cached_at: float, identity: DeviceIdentity | None, now: float) -> bool:
        watched = self._watched_at
        long_lived = (
            identity is not None
            and watched is not None
            and now - watched < self.watch_every_s + self.fallback_ttl_s
        )
        return now - cached_at < (self.ttl_s if long_lived else self.fallback_ttl_s)

    async def by_token(self, token: str) -> DeviceIdentity | None:
        """The device holding this bearer token, or None (unknown or revoked)."""
        digest = token_hash(token)
        now = time.monotonic()
        hit = self._by_token.get(digest)
        if hit is not None and self._fresh(hit[0], hit[1], now):
            return hit[1]
        async with self.pool.acquire() as conn:
            found = await subjects.device_by_token(conn, digest)
        self._trim()
        self._by_token[digest] = (now, found)
        return found

    async def by_osmand_id(self, osmand_id: str, token: str | None = None) -> DeviceIdentity | None:
        """The device with this OsmAnd identifier; with ``token``, only if it matches too."""
        if "\x00" in osmand_id:
            # A URL or a Basic header can carry a NUL, PostgreSQL text cannot: no such device.
            return None
        now = time.monotonic()
        hit = self._by_osmand.get(osmand_id)
        if hit is not None and self._fresh(hit[0], hit[1], now):
            identity, digest = hit[1], hit[2]
        else:
            async with self.pool.acquire() as conn:
                found = await subjects.device_by_osmand_id(conn, osmand_id)
            identity, digest = found if found is not None else (None, None)
            self._trim()
            self._by_osmand[osmand_id] = (now, identity, digest)
        if identity is None:
            return None
        if token is not None and (
            digest is None or not hmac.compare_digest(digest, token_hash(token))
        ):
            return None
        return identity

    def forget(self, device_ids: set[int]) -> None:
        """Drop cached identities of these devices (revoked ones)."""
        if not device_ids:
            return
        for digest, (_, identity) in list(self._by_token.items()):
            if identity is not None and identity.device_id in device_ids:
                del self._by_token[digest]
        for osmand_id, (_, identity, _) in list(self._by_osmand.items()):
            if identity is not None and identity.device_id in device_ids:
                del self._by_osmand[osmand_id]

    async def check_revocations(self) -> None:
        """One look at the recent revocations; forget the devices newly revoked.

        ``revoked_at`` is the revoking transaction's start, which can precede its commit:
        each look reaches back ``REVOCATION_OVERLAP_S`` before the newest revocation seen,
        and remembers what it already forgot so each device is forgotten once.
        """
        async with self.pool.acquire() as conn:
            if self._revoked_since is None:
                self._revoked_since = await database_now(conn)
            since = self._revoked_since - timedelta(seconds=REVOCATION_OVERLAP_S)
            revoked = await subjects.revoked_since(conn, since)
        new = {device_id for device_id, _ in revoked if device_id not in self._forgotten}
        self.forget(new)
        for device_id, at in revoked:
            self._forgotten[device_id] = at
            self._revoked_since = max(self._revoked_since, at)
        horizon = self._revoked_since - timedelta(seconds=2 * REVOCATION_OVERLAP_S)
        self._forgotten = {d: at for d, at in self._forgotten.items() if at >= horizon}
        self._watched_at = time.monotonic()

    async def watch(self) -> None:
        """Run :meth:`check_revocations` every ``watch_every_s`` until cancelled."""
        while True:
            try:
                await self.check_revocations()
            except Exception as exc:  # whatever fails, the watch lives on; entries go short
                log.warning("revocation watch failed; device cache is short-lived", error=repr(exc))
            await asyncio.sleep(self.watch_every_s)
