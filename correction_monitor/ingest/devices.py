"""Device authentication for the ingest path, with a short in-process cache.

Phones send many requests; looking the token up in PostgreSQL each time would cost more
than the rest of the request. Identities are cached for ``ttl_s`` seconds, so a revoked
device is refused within that time on every process.
"""

from __future__ import annotations

import hmac
import time

import asyncpg

from correction_monitor.adapters import subjects
from correction_monitor.adapters.subjects import DeviceIdentity
from correction_monitor.service.auth import token_hash


class DeviceDirectory:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 10.0, max_entries: int = 200_000) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._by_token: dict[bytes, tuple[float, DeviceIdentity | None]] = {}
        self._by_osmand: dict[str, tuple[float, DeviceIdentity | None, bytes | None]] = {}

    def _trim(self) -> None:
        if len(self._by_token) > self.max_entries:
            self._by_token.clear()
        if len(self._by_osmand) > self.max_entries:
            self._by_osmand.clear()

    async def by_token(self, token: str) -> DeviceIdentity | None:
        """The device holding this bearer token, or None (unknown or revoked)."""
        digest = token_hash(token)
        now = time.monotonic()
        hit = self._by_token.get(digest)
        if hit is not None and now - hit[0] < self.ttl_s:
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
        if hit is not None and now - hit[0] < self.ttl_s:
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
