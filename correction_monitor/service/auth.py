"""Passwords (argon2) and bearer tokens (random, stored only as SHA-256).

Hashing a password costs tens of milliseconds of CPU by design. That work runs on a thread
pool of its own (:class:`PasswordWork`), never on the event loop, and never without bound:
at most a few hashes run at once (argon2-cffi releases the GIL, so they truly run beside the
loop) and a bounded number wait; beyond that a login is refused at once with ``TryAgain``.
A burst of wrong logins therefore takes the cores the pool has and no more, and ingestion,
the live feed and the other requests keep the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import os
import secrets
import threading
from collections.abc import Callable
from typing import Final, NoReturn, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from correction_monitor.service.errors import TryAgain

T = TypeVar("T")

# OWASP's first recommendation for argon2id (Password Storage Cheat Sheet): 19 MiB, two
# passes, one lane, about 20 ms of one core. argon2-cffi's default (64 MiB, three passes,
# four lanes) spreads each hash over four threads: one login then occupied every core of a
# small server for 100 ms, and a handful of logins stalled everything else. With one lane a
# hash takes one core, so the pool's size is exactly the cores logins may take.
TIME_COST: Final = 2
MEMORY_COST_KIB: Final = 19 * 1024
PARALLELISM: Final = 1

_hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with other parameters than today's (it is replaced by
    a fresh one at the officer's next successful login)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password, made with today's parameters: what a login for an
    unknown username or an inactive officer is checked against, so that it costs what a
    real check costs and its timing does not tell which usernames exist."""
    return hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What the database keeps of a token: its SHA-256 digest."""
    return hashlib.sha256(token.encode()).digest()


def default_workers() -> int:
    """Half the machine's cores (at least one): the rest stay with the event loop, the ingest
    pipeline and PostgreSQL, however many logins arrive."""
    return max(1, (os.cpu_count() or 2) // 2)


WAITING_PER_WORKER: Final = 8
"""Hashes that may wait per worker: at ~20 ms a hash, a login waits at most ~0.2 s in the
queue before its own hash runs."""
RETRY_AFTER_S: Final = 1


class PasswordWork:
    """Hashing and verifying passwords on a bounded pool of threads.

    At most ``workers`` hashes run at once and ``max_waiting`` more wait; a request that
    would exceed that is refused with ``TryAgain`` (``try_again``, retry after a second),
    answered after ``refusal_pause_s``, instead of queueing without limit. ``hasher`` and
    ``verifier`` are the functions run on the pool (tests count calls with their own).
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        max_waiting: int | None = None,
        hasher: Callable[[str], str] = hash_password,
        verifier: Callable[[str, str], bool] = verify_password,
        refusal_pause_s: float = RETRY_AFTER_S,
    ) -> None:
        self.workers = workers or default_workers()
        self.refusal_pause_s = refusal_pause_s
        self.max_waiting = WAITING_PER_WORKER * self.workers if max_waiting is None else max_waiting
        self._hasher = hasher
        self._verifier = verifier
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="password"
        )
        # Counted from submission until the work is done in its thread (not until the awaiting
        # coroutine resumes, nor when it is cancelled while the thread still hashes).
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Hashes running or waiting now."""
        return self._in_flight

    @property
    def capacity(self) -> int:
        return self.workers + self.max_waiting

    async def check_room(self) -> None:
        """``TryAgain`` if the pool is full, before the caller spends anything else on the
        request (a login's queries)."""
        if self._in_flight >= self.capacity:
            await self._refuse()

    async def _refuse(self) -> NoReturn:
        """Refuse for load, after :attr:`refusal_pause_s`. A client that sends its next
        login the moment it is refused would otherwise turn refusals into a flood that costs
        the event loop more than the hashes it was spared; the pause costs a timer, no CPU."""
        await asyncio.sleep(self.refusal_pause_s)
        raise TryAgain(
            "try_again",
            "too many logins are being checked right now; try again shortly",
            retry_after_s=RETRY_AFTER_S,
        )

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the pool; ``TryAgain`` when it is full."""
        with self._lock:
            admitted = self._in_flight < self.capacity
            if admitted:
                self._in_flight += 1
        if not admitted:
            await self._refuse()
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _future: concurrent.futures.Future[T] | None) -> None:
        with self._lock:
            self._in_flight -= 1

    async def hash(self, password: str) -> str:
        return await self.run(self._hasher, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``. With no hash (an unknown username,
        an inactive officer) it is checked against :func:`dummy_hash` all the same, and
        answers False: both cost one verification."""
        if password_hash is None:
            await self.run(self._verify_dummy, password)
            return False
        return await self.run(self._verifier, password_hash, password)

    def _verify_dummy(self, password: str) -> bool:
        self._verifier(dummy_hash(), password)
        return False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@functools.cache
def shared_password_work() -> PasswordWork:
    """The process's pool: one per process, whatever number of apps or command-line
    services it builds, so the bound holds for the process."""
    work = PasswordWork()
    # Made once now, so the first unknown username costs no extra hash.
    dummy_hash()
    return work


# A forked child has none of its parent's threads: it makes a pool of its own when it first
# needs one (``serve --workers N`` forks before any is made, but nothing should rely on it).
os.register_at_fork(after_in_child=shared_password_work.cache_clear)
