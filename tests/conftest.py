"""Shared fixtures: a private database and Redis key space per test run, and the app.

The servers are the environment's (CM_DATABASE_URL / CM_REDIS_URL) or the machine's local
ones; each run creates its own database ``cm_test_<random>`` and drops it afterwards, and uses
a Redis key prefix of its own, so concurrent runs never collide.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from correction_monitor.migrations import migrate
from correction_monitor.service.bootstrap import create_officer
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.front import FrontSite

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def shared_data(*parts: str) -> Path:
    """A file of ../shared/data, or skip the test when the checkout has none."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not present: {path}")
    return path


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_database_url() -> str:
    return os.environ.get("CM_DATABASE_URL") or DEFAULT_DATABASE_URL


@pytest.fixture(scope="session")
def database_url(server_database_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test run; dropped at the end."""
    import asyncio

    name = f"cm_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server_database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = _with_database(server_database_url, name)
    migrate(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("CM_REDIS_URL") or DEFAULT_REDIS_URL


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"cmtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: Any
) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        data_dir=tmp_path_factory.mktemp("cm-data"),
        run_scheduler=False,
    )


class FrontTestServer(TestServer):
    """The app served as ``correction-monitor serve`` serves it: every connection starts at
    the ingest front (``web.front``), which hands all but native uploads to aiohttp."""

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.runner:
            return
        self._loop = loop
        runner = await self._make_runner(handler_cancellation=True, **kwargs)
        assert isinstance(runner, web.AppRunner)
        self.runner = runner
        await runner.setup()
        sock = self.socket_factory(self.host, 0, socket.AF_INET)
        self.host, self.port = sock.getsockname()[:2]
        await FrontSite(runner, sock, grace_s=5.0).start()
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """An HTTP client against the real app (real PostgreSQL and Redis), served as in
    production."""
    app = init_app(settings)
    async with TestClient(FrontTestServer(app)) as test_client:
        yield test_client


def unique(prefix: str = "t") -> str:
    """A short unique code, so tests sharing one database never collide."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Officers:
    """Creates officers through the same code path as the CLI and logs them in over HTTP."""

    def __init__(self, database_url: str, client: TestClient[Any, Any]) -> None:
        self.database_url = database_url
        self.client = client

    async def create(
        self,
        role: str,
        org_code: str,
        *,
        parent: str | None = None,
        password: str = "correct-horse-9",
    ) -> tuple[str, str]:
        """Create an officer (and their org unit if missing); returns (username, token)."""
        username = unique(role[:3])
        await create_officer(
            self.database_url,
            username=username,
            password=password,
            role=role,
            org_code=org_code,
            org_name=f"单位 {org_code}",
            parent_code=parent,
        )
        resp = await self.client.post(
            "/api/v1/auth/token", json={"username": username, "password": password}
        )
        assert resp.status == 200, await resp.text()
        return username, (await resp.json())["access_token"]


@pytest.fixture(scope="session")
def officers(database_url: str, client: TestClient[Any, Any]) -> Officers:
    return Officers(database_url, client)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
