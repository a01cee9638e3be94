"""The aiohttp application factory, used by ``serve`` and by the tests alike."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from correction_monitor.adapters import hot_state
from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.clock import Clock, SystemClock
from correction_monitor.ingest.committer import GroupCommitter
from correction_monitor.ingest.profiles import ProfileCache
from correction_monitor.policy import load_policy
from correction_monitor.service.bootstrap import bootstrap, ingest_service
from correction_monitor.service.device_identity import DeviceDirectory
from correction_monitor.service.feed import FeedHub
from correction_monitor.service.jobs import (
    JobRunner,
    build_scheduler,
    ensure_partitions,
    standard_jobs,
)
from correction_monitor.service.unit_of_work import PostgresUnitOfWork
from correction_monitor.settings import Settings
from correction_monitor.web import middlewares
from correction_monitor.web import routes as route_modules
from correction_monitor.web.http_sender import HttpTransport, new_session
from correction_monitor.web.keys import (
    CLOCK,
    COMMITTER,
    DEVICES,
    FEED_HUB,
    HOT_STATE,
    INGEST,
    NOTIFY_TRANSPORT,
    POLICY,
    POOL,
    PROFILES,
    SERVICES,
    SETTINGS,
)
from correction_monitor.web.limits import DEFAULT_BODY_LIMIT


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url, "init_app needs a resolved database URL"
    app[POOL] = await create_pool(settings.database_url, max_size=settings.db_pool_size)
    yield
    await app[POOL].close()


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    # One client session per process for every notification sent (service/notifications.py).
    session = new_session()
    app[NOTIFY_TRANSPORT] = HttpTransport(session)
    yield
    await session.close()


async def _services(app: web.Application) -> AsyncIterator[None]:
    pool = app[POOL]
    app[SERVICES] = bootstrap(
        lambda: PostgresUnitOfWork(pool),
        policy=app[POLICY],
        token_ttl_s=app[SETTINGS].token_ttl_s,
        clock=app[CLOCK],
        positions=app[HOT_STATE],
        pdf_font=app[SETTINGS].pdf_font,
        transport=app[NOTIFY_TRANSPORT],
    )
    yield


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.redis_url, "init_app needs a resolved redis URL"
    app[HOT_STATE] = hot_state.connect(settings.redis_url, settings.redis_prefix)
    yield
    await app[HOT_STATE].close()


async def _ingest(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[PROFILES] = ProfileCache(app[POLICY])
    app[DEVICES] = DeviceDirectory(app[POOL])
    app[COMMITTER] = GroupCommitter(
        app[POOL],
        app[PROFILES],
        app[HOT_STATE],
        queue_limit=settings.ingest_queue_limit,
        clock=app[CLOCK],
    )
    app[INGEST] = ingest_service(app[DEVICES], app[COMMITTER], policy=app[POLICY], clock=app[CLOCK])
    await ensure_partitions(app[POOL])
    watch = asyncio.create_task(app[DEVICES].watch(), name="device-revocations")
    try:
        async with app[COMMITTER].running():
            yield
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


async def _feed(app: web.Application) -> AsyncIterator[None]:
    app[FEED_HUB] = FeedHub(app[POOL], app[HOT_STATE])
    await app[FEED_HUB].start()
    yield
    await app[FEED_HUB].close()


async def _end_streams(app: web.Application) -> None:
    # Open streams never finish on their own: end them before the server waits for its
    # requests, so shutdown need not wait out its timeout.
    app[FEED_HUB].end_streams()


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    if not app[SETTINGS].run_scheduler:
        yield
        return
    pool, services = app[POOL], app[SERVICES]
    jobs = standard_jobs(pool, app[POLICY], app[HOT_STATE], services)
    scheduler = build_scheduler(JobRunner(pool, services.clock), jobs)
    scheduler.start()
    yield
    scheduler.shutdown(wait=False)


def init_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """Build the application. ``settings.database_url`` and ``redis_url`` must be set
    (the CLI resolves them, starting the embedded servers when the environment has none).
    Deadlines and scheduled jobs run on ``clock`` (the system clock unless given)."""
    app = web.Application(
        middlewares=[
            middlewares.request_context,
            middlewares.metrics,
            middlewares.json_errors,
            middlewares.body_limit,
        ],
        # Routes with another limit (web.limits) raise it for their own requests.
        client_max_size=DEFAULT_BODY_LIMIT,
    )
    app[SETTINGS] = settings
    app[POLICY] = load_policy(settings.policy_file)
    app[CLOCK] = clock or SystemClock()
    # The services read the hot state: Redis's context comes first.
    app.cleanup_ctx.extend([_database, _redis, _http_client, _services, _ingest, _feed, _scheduler])
    app.on_shutdown.append(_end_streams)
    for module in _route_modules():
        app.router.add_routes(module.routes)
    return app


def _route_modules() -> list[Any]:
    """Every module of ``web/routes``, by name: each holds the routes of one part of the
    API in its ``routes`` table (no two modules serve one method and path)."""
    names = sorted(info.name for info in pkgutil.iter_modules(route_modules.__path__))
    return [importlib.import_module(f"{route_modules.__name__}.{name}") for name in names]
