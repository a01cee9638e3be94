"""Sending notification requests over HTTP: one shared aiohttp client session per process,
with bounded concurrency and a total timeout per request. It lives with the entrypoints
because only they may build on aiohttp (tests/unit/test_layers.py).

The service layer sees only ``send(request) -> Answer`` (``service/notifications.py``'s
``Transport``); a refused connection, a timeout or a reset is an answer with status 0 and
the reason, never an exception, so one bad receiver cannot fail a round of sends.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from correction_monitor.domain.notifications import Answer, OutgoingRequest

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_CONCURRENCY = 64
MAX_ANSWER_BYTES = 64 * 1024  # robots answer a few bytes of JSON; read no more than this


class HttpTransport:
    """Sends requests through ``session``, at most ``concurrency`` at a time."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._session = session
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, request: OutgoingRequest) -> Answer:
        async with self._slots:
            try:
                async with self._session.request(
                    request.method,
                    # As built: re-quoting would change a signed query (DingTalk's sign).
                    URL(request.url, encoded=True),
                    data=request.body,
                    headers=request.headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as response:
                    body = await response.content.read(MAX_ANSWER_BYTES)
                    return Answer(response.status, body)
            except TimeoutError:
                return Answer(0, error="timed out")
            except aiohttp.ClientError as exc:
                return Answer(0, error=f"{type(exc).__name__}: {exc}"[:300])


def new_session(concurrency: int = DEFAULT_CONCURRENCY) -> aiohttp.ClientSession:
    """The process's client session for notifications (call inside the running loop)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
        timeout=aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT_S),
    )
