"""Typed keys for the objects shared through the aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from correction_monitor.domain.access import Principal
from correction_monitor.settings import Settings

if TYPE_CHECKING:
    from correction_monitor.adapters.hot_state import HotState
    from correction_monitor.domain.clock import Clock
    from correction_monitor.policy import Policy
    from correction_monitor.service.bootstrap import Services
    from correction_monitor.service.feed import FeedHub

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
HOT_STATE: web.AppKey[HotState] = web.AppKey("hot_state")
POLICY: web.AppKey[Policy] = web.AppKey("policy")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
SERVICES: web.AppKey[Services] = web.AppKey("services")
FEED_HUB: web.AppKey[FeedHub] = web.AppKey("feed_hub")

REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL = web.RequestKey("principal", Principal)

if TYPE_CHECKING:
    from correction_monitor.ingest.committer import GroupCommitter
    from correction_monitor.ingest.profiles import ProfileCache
    from correction_monitor.service.device_identity import DeviceDirectory
    from correction_monitor.service.ingest import Ingest

COMMITTER: web.AppKey[GroupCommitter] = web.AppKey("committer")
DEVICES: web.AppKey[DeviceDirectory] = web.AppKey("devices")
PROFILES: web.AppKey[ProfileCache] = web.AppKey("profiles")
INGEST: web.AppKey[Ingest] = web.AppKey("ingest")

if TYPE_CHECKING:
    from correction_monitor.adapters.subjects import DeviceIdentity

DEVICE: web.RequestKey[DeviceIdentity] = web.RequestKey("device")

if TYPE_CHECKING:
    from correction_monitor.web.http_sender import HttpTransport

NOTIFY_TRANSPORT: web.AppKey[HttpTransport] = web.AppKey("notify_transport")
