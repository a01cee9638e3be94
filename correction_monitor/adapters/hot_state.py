"""Hot state in Redis: latest positions, subject status, and the live-feed fan-out.

Redis only ever holds copies. PostgreSQL is the source of truth, so every operation here
degrades to a no-op (counted in ``cm_redis_errors_total``) when Redis is unreachable, and
``rebuild`` restores the copies from PostgreSQL once it answers again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from correction_monitor.metrics import REDIS_ERRORS

log = structlog.get_logger("correction_monitor.redis")

FEED_CHANNEL = "alerts"


class HotState:
    """Thin, failure-tolerant wrapper over one Redis client with a key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str = "cm:") -> None:
        self.client = client
        self.prefix = prefix
        self.healthy = True
        # Operations failed since start. The rebuild watch compares it between ticks: any
        # caller (a readiness probe's PING too) may be first to find Redis back and reset
        # ``healthy``, so a flag alone can hide an outage from the watch.
        self.failures = 0

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def _failed(self, op: str, exc: Exception) -> None:
        REDIS_ERRORS.inc()
        self.failures += 1
        if self.healthy:
            log.warning("redis unavailable; continuing from PostgreSQL", op=op, error=str(exc))
        self.healthy = False

    async def ping(self) -> bool:
        """Tell whether Redis answers PING.

        Returns
        -------
        bool
            False when it does not, after one retry on a connection error: a pooled
            connection the server closed (it restarted) fails one command before the pool
            reconnects, and should not make a readiness probe or the rebuild watch wait.
        """
        for attempt in (1, 2):
            try:
                await self.client.ping()
            except RedisConnectionError as exc:
                self._failed("ping", exc)
                if attempt == 2:
                    return False
            except (RedisError, OSError) as exc:
                self._failed("ping", exc)
                return False
            else:
                break
        self.healthy = True
        return True

    async def copies_present(self) -> bool:
        """Tell whether the marker left by the last rebuild is still in Redis.

        Returns
        -------
        bool
            False when it is gone (Redis restarted without persistence, or was flushed,
            losing every copy with it) or Redis does not answer.
        """
        try:
            return bool(await self.client.exists(self.key("rebuilt")))
        except (RedisError, OSError) as exc:
            self._failed("copies_present", exc)
            return False

    async def mark_rebuilt(self) -> bool:
        """Leave the marker that :meth:`copies_present` looks for; call after a rebuild.

        Returns
        -------
        bool
            True when Redis stored it.
        """
        try:
            await self.client.set(self.key("rebuilt"), int(time.time()))
        except (RedisError, OSError) as exc:
            self._failed("mark_rebuilt", exc)
            return False
        return True

    async def set_latest_positions(self, positions: Mapping[int, dict[str, Any]]) -> bool:
        """Store each subject's newest position (one hash field per subject)."""
        if not positions:
            return True
        try:
            await self.client.hset(
                self.key("latest"),
                mapping={str(k): orjson.dumps(v) for k, v in positions.items()},
            )
        except (RedisError, OSError) as exc:
            self._failed("set_latest_positions", exc)
            return False
        self.healthy = True
        return True

    async def latest_positions(self, subject_ids: list[int]) -> dict[int, dict[str, Any]]:
        if not subject_ids:
            return {}
        try:
            values = await self.client.hmget(self.key("latest"), [str(s) for s in subject_ids])
        except (RedisError, OSError) as exc:
            self._failed("latest_positions", exc)
            return {}
        return {s: orjson.loads(v) for s, v in zip(subject_ids, values, strict=True) if v}

    async def publish_commit(
        self, positions: Mapping[int, dict[str, Any]], events: list[dict[str, Any]]
    ) -> bool:
        """Latest positions and feed events of one or more commits, in one round trip."""
        if not positions and not events:
            return True
        try:
            pipe = self.client.pipeline(transaction=False)
            if positions:
                pipe.hset(
                    self.key("latest"),
                    mapping={str(k): orjson.dumps(v) for k, v in positions.items()},
                )
            for event in events:
                pipe.publish(self.key(FEED_CHANNEL), orjson.dumps(event))
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("publish_commit", exc)
            return False
        self.healthy = True
        return True

    async def follow_feed(self, wake: Callable[[], None], *, retry_s: float = 2.0) -> None:
        """Call ``wake`` whenever any process publishes a feed change, until cancelled.

        This holds one pub/sub connection for as long as it runs; a process runs it once (the
        feed hub) and fans the wake-ups out in memory. It also calls ``wake`` on each
        (re)subscription: what was published while it was not subscribed was missed, and the
        caller's next read catches up. A lost connection is counted like any other failure and
        retried after ``retry_s``.
        """
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.key(FEED_CHANNEL))
                    wake()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            wake()
            except (RedisError, OSError) as exc:
                self._failed("follow_feed", exc)
            await asyncio.sleep(retry_s)

    async def close(self) -> None:
        await self.client.aclose()


def client_name(prefix: str) -> str:
    """The name every connection of a process using ``prefix`` gives itself (``CLIENT
    SETNAME``), so ``CLIENT LIST`` shows which deployment holds which connections. Names may
    not contain spaces or control characters: those become ``_``."""
    return "correction-monitor:" + "".join(c if "!" <= c <= "~" else "_" for c in prefix)


def connect(redis_url: str, prefix: str = "cm:") -> HotState:
    client = aioredis.Redis.from_url(
        redis_url,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        health_check_interval=10,
        client_name=client_name(prefix),
    )
    return HotState(client, prefix)
