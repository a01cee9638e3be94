"""Notifications end to end: channels set up over HTTP, events from the log, local receivers
started here that check each signature as its provider documents it, retries on a moved
clock, subtree delivery, exactly one delivery per channel and event, robots' rate limit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.events import DomainEvent
from correction_monitor.service.bootstrap import Services
from correction_monitor.service.notifications import NotificationSender
from correction_monitor.service.unit_of_work import PostgresUnitOfWork
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.http_sender import HttpTransport, new_session
from correction_monitor.web.keys import POLICY, POOL, SERVICES
from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import (
    OUTSIDE,
    County,
    expect_error,
    expect_json,
    make_county,
    make_world,
    send,
    track,
)

pytestmark = pytest.mark.e2e

SECRET = "hook-secret-1"
DING_SECRET = "SEC0123456789abcdef"
ALIYUN_KEY_ID = "LTAI-test-id"
ALIYUN_SECRET = "aliyun-test-secret"


@dataclass
class Receiver:
    """Local receivers for each kind of channel; each checks the request exactly as its
    provider documents it and records what it accepted, or answers ``fail`` first."""

    hooks: list[dict[str, Any]] = field(default_factory=list)
    dingtalk: list[dict[str, Any]] = field(default_factory=list)
    wecom: list[dict[str, Any]] = field(default_factory=list)
    sms: list[dict[str, str]] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # path -> failures still to answer
    base: str = ""

    def failing(self, path: str) -> bool:
        if self.fail.get(path, 0) > 0:
            self.fail[path] -= 1
            return True
        return False

    async def hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if request.headers.get("X-CM-Signature") != expected:
            self.bad.append("webhook signature")
            return web.Response(status=401)
        if self.failing("hook"):
            return web.Response(status=503)
        self.hooks.append(json.loads(raw))
        return web.Response(status=204)

    async def ding(self, request: web.Request) -> web.Response:
        # DingTalk: timestamp and sign in the query; sign = urlencode(base64(HMAC-SHA256(
        # key=secret, "timestamp\nsecret"))).
        timestamp = request.query.get("timestamp", "")
        string_to_sign = f"{timestamp}\n{DING_SECRET}"
        digest = hmac.new(DING_SECRET.encode(), string_to_sign.encode(), hashlib.sha256).digest()
        raw_sign = request.raw_path.split("sign=", 1)[-1].split("&", 1)[0]  # as sent
        if request.query.get("access_token") != "robot-token" or raw_sign != quote_plus(
            base64.b64encode(digest)
        ):
            self.bad.append("dingtalk sign")
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        if self.failing("ding"):
            return web.json_response({"errcode": 130101, "errmsg": "send too fast"})
        body = await request.json()
        if body.get("msgtype") != "markdown" or set(body["markdown"]) != {"title", "text"}:
            self.bad.append("dingtalk body")
        self.dingtalk.append(body | {"timestamp": int(timestamp)})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def wecom_robot(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.query.get("key") != "wecom-key" or body.get("msgtype") != "markdown":
            self.bad.append("wecom")
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        if set(body["markdown"]) != {"content"}:
            self.bad.append("wecom body")
        if self.failing("wecom"):
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        self.wecom.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def aliyun(self, request: web.Request) -> web.Response:
        # Alibaba Cloud RPC signature, recomputed from the raw form as their documentation
        # spells it (URLEncoder, then + → %20, * → %2A, %7E → ~).
        raw = (await request.read()).decode()
        params = dict(parse_qsl(raw, keep_blank_values=True))

        def enc(value: str) -> str:
            return quote_plus(value).replace("+", "%20").replace("*", "%2A").replace("%7E", "~")

        signature = params.pop("Signature", "")
        canonical = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params))
        string_to_sign = f"{request.method}&{enc('/')}&{enc(canonical)}"
        key = (ALIYUN_SECRET + "&").encode()
        expected = base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha1).digest())
        if signature != expected.decode() or params.get("AccessKeyId") != ALIYUN_KEY_ID:
            self.bad.append("aliyun signature")
            return web.json_response({"Code": "SignatureDoesNotMatch"}, status=400)
        self.sms.append(params)
        return web.json_response({"Code": "OK", "Message": "OK", "RequestId": "r", "BizId": "b"})


@dataclass
class Setup:
    client: TestClient[Any, Any]
    clock: ManualClock
    receiver: Receiver
    officers: Officers

    @property
    def services(self) -> Services:
        services: Services = self.client.app[SERVICES]
        return services

    @property
    def sender(self) -> NotificationSender:
        sender = self.services.sender
        assert sender is not None
        return sender

    @property
    def pool(self) -> asyncpg.Pool:
        return self.client.app[POOL]

    async def deliver(self) -> int:
        """Run the consumers, then the sender, as the jobs do."""
        await self.services.consumers.run_all()
        return await self.sender.run_once()


@pytest.fixture(scope="module")
async def setup(settings: Settings, database_url: str) -> AsyncIterator[Setup]:
    receiver = Receiver()
    receiving = web.Application()
    receiving.router.add_post("/hook", receiver.hook)
    receiving.router.add_post("/robot/send", receiver.ding)
    receiving.router.add_post("/cgi-bin/webhook/send", receiver.wecom_robot)
    receiving.router.add_post("/", receiver.aliyun)
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with (
        TestServer(receiving) as receiving_server,
        TestClient[Any, Any](TestServer(init_app(settings, clock=clock))) as client,
    ):
        receiver.base = str(receiving_server.make_url("")).rstrip("/")
        yield Setup(client, clock, receiver, Officers(database_url, client))


async def add_channel(setup: Setup, token: str, **body: Any) -> dict[str, Any]:
    resp = await setup.client.post(
        "/api/v1/notification-channels", json=body, headers=bearer(token)
    )
    created: dict[str, Any] = await expect_json(resp, 201)
    return created


async def emit(setup: Setup, name: str, org_code: str, count: int = 1, **data: Any) -> list[int]:
    """``count`` events named ``name`` about the unit ``org_code``, as a handler emits them."""
    unit_id = await setup.pool.fetchval("SELECT id FROM org_units WHERE code = $1", org_code)
    uow = PostgresUnitOfWork(setup.pool)
    async with uow:
        for n in range(count):
            uow.emit(DomainEvent(name, unit_id, data={"task_id": n, "kind": "verify_alert"} | data))
    rows = await setup.pool.fetch(
        "SELECT id FROM events WHERE name = $1 AND org_unit_id = $2 ORDER BY id DESC LIMIT $3",
        name,
        unit_id,
        count,
    )
    return sorted(r["id"] for r in rows)


async def deliveries(setup: Setup, channel_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await setup.pool.fetch(
        "SELECT * FROM notification_deliveries WHERE channel_id = $1 ORDER BY id", channel_id
    )
    return rows


async def station_in(setup: Setup, county: County) -> str:
    code = unique("s")
    resp = await setup.client.post(
        "/api/v1/org-units",
        json={"code": code, "name": "城关司法所", "parent_code": county.code},
        headers=bearer(county.admin_token),
    )
    await expect_json(resp, 201)
    return code


async def test_channels_are_validated_audited_and_never_show_their_secret(setup: Setup) -> None:
    county, other = await make_county(setup.officers), await make_county(setup.officers)
    # County administrators: each sees and acts within their own county only.
    _, mine = await setup.officers.create("county_admin", county.code)
    _, theirs = await setup.officers.create("county_admin", other.code)
    h = bearer(mine)
    base = {"org_unit": county.code, "kind": "webhook", "url": setup.receiver.base + "/hook"}
    url = "/api/v1/notification-channels"
    resp = await setup.client.post(
        url, json=base | {"events": ["alert.opened", "alert.nope"]}, headers=h
    )
    error = await expect_error(resp, 400, "unknown_event")
    assert "alert.nope" in error["message"]
    bad: dict[str, Any]
    for bad in ({"kind": "fax"}, {"url": "ftp://x/y"}, {"events": []}):
        resp = await setup.client.post(url, json=base | {"events": ["task.done"]} | bad, headers=h)
        await expect_error(resp, 400)
    sms = {
        "kind": "sms",
        "events": ["task.done"],
        "secret": "x",
        "settings": {"provider": "tencent"},
    }
    await expect_error(
        await setup.client.post(url, json=base | sms, headers=h), 400, "unsupported_provider"
    )
    resp = await setup.client.post(
        url, json=base | {"org_unit": other.code, "events": ["task.done"]}, headers=h
    )
    await expect_error(resp, 403)
    ding = await add_channel(
        setup,
        mine,
        org_unit=county.code,
        kind="dingtalk",
        url=setup.receiver.base + "/robot/send?access_token=robot-token",
        secret=DING_SECRET,
        events=["task.escalated"],
    )
    assert ding["secret_set"] is True
    assert "robot-token" not in json.dumps(ding)
    listed = await expect_json(await setup.client.get(url, headers=h))
    assert [c["id"] for c in listed["channels"]] == [ding["id"]]
    assert DING_SECRET not in json.dumps(listed)
    # Another county's administrator neither sees nor deletes it.
    theirs_listed = await expect_json(await setup.client.get(url, headers=bearer(theirs)))
    assert ding["id"] not in [c["id"] for c in theirs_listed["channels"]]
    resp = await setup.client.delete(f"{url}/{ding['id']}", headers=bearer(theirs))
    await expect_error(resp, 404)
    resp = await setup.client.delete(f"{url}/{ding['id']}", headers=h)
    assert (await expect_json(resp))["active"] is False
    actions = await setup.pool.fetch(
        "SELECT action, officer_id, detail FROM audit_log WHERE detail->>'channel_id' = $1"
        " ORDER BY id",
        str(ding["id"]),
    )
    assert [a["action"] for a in actions] == [
        "notification_channel.create",
        "notification_channel.deactivate",
    ]
    assert all(a["officer_id"] is not None for a in actions)
    assert DING_SECRET not in str(actions)
    assert "robot-token" not in str(actions)
    _, officer_token = await setup.officers.create("officer", unique("s"), parent=county.code)
    resp = await setup.client.post(
        url, json=base | {"events": ["task.done"]}, headers=bearer(officer_token)
    )
    await expect_error(resp, 403)


async def test_a_county_channel_receives_its_stations_events_once_and_a_sibling_none(
    setup: Setup,
) -> None:
    county, sibling = await make_county(setup.officers), await make_county(setup.officers)
    station = await station_in(setup, county)
    hook = {"kind": "webhook", "url": setup.receiver.base + "/hook", "secret": SECRET}
    mine = await add_channel(
        setup, county.admin_token, org_unit=county.code, events=["task.escalated"], **hook
    )
    theirs = await add_channel(
        setup, sibling.admin_token, org_unit=sibling.code, events=["task.escalated"], **hook
    )
    before = len(setup.receiver.hooks)
    (event_id,) = await emit(setup, "task.escalated", station, escalation_level=1)
    await setup.deliver()
    got = [h for h in setup.receiver.hooks[before:] if h["id"] == event_id]
    assert len(got) == 1
    assert got[0]["event"] == "task.escalated"
    assert got[0]["org_unit"] == station
    assert got[0]["data"]["escalation_level"] == 1
    assert len(await deliveries(setup, mine["id"])) == 1
    assert await deliveries(setup, theirs["id"]) == []
    # A replayed event writes no second delivery; a second round sends nothing.
    uow = PostgresUnitOfWork(setup.pool)
    async with uow:
        assert (
            await uow.notifications.fan_out(event_id, "task.escalated", 1, setup.clock.now()) == 0
        )
        unit_id = await setup.pool.fetchval("SELECT id FROM org_units WHERE code = $1", station)
        assert (
            await uow.notifications.fan_out(event_id, "task.escalated", unit_id, setup.clock.now())
            == 0
        )
    assert await setup.sender.run_once() == 0
    assert [h["id"] for h in setup.receiver.hooks].count(event_id) == 1
    assert setup.receiver.bad == []


async def test_two_senders_racing_send_each_delivery_once(setup: Setup, database_url: str) -> None:
    county = await make_county(setup.officers)
    await add_channel(
        setup,
        county.admin_token,
        org_unit=county.code,
        kind="webhook",
        url=setup.receiver.base + "/hook",
        secret=SECRET,
        events=["task.created"],
    )
    ids = await emit(setup, "task.created", county.code, count=300)
    await setup.services.consumers.run_all()
    other_pool = await create_pool(database_url, min_size=1, max_size=4)
    session = new_session()
    try:
        policy = setup.client.app[POLICY].notifications
        senders = [
            NotificationSender(
                lambda: PostgresUnitOfWork(setup.pool),
                HttpTransport(session),
                policy,
                setup.clock,
                batch=40,
            ),
            NotificationSender(
                lambda: PostgresUnitOfWork(other_pool),
                HttpTransport(session),
                policy,
                setup.clock,
                batch=40,
            ),
        ]
        await asyncio.gather(*(s.drain() for s in senders))
    finally:
        await session.close()
        await other_pool.close()
    received = [h["id"] for h in setup.receiver.hooks if h["id"] in set(ids)]
    assert sorted(received) == ids


async def test_failures_are_retried_with_backoff_until_delivered_or_given_up(setup: Setup) -> None:
    county = await make_county(setup.officers)
    channel = await add_channel(
        setup,
        county.admin_token,
        org_unit=county.code,
        kind="webhook",
        url=setup.receiver.base + "/hook",
        secret=SECRET,
        events=["task.escalated"],
    )
    setup.receiver.fail["hook"] = 2
    (event_id,) = await emit(setup, "task.escalated", county.code)
    await setup.deliver()
    (row,) = await deliveries(setup, channel["id"])
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert "503" in row["last_error"]
    first_wait = (row["next_attempt_at"] - setup.clock.now()).total_seconds()
    assert 5 <= first_wait <= 6.25  # retry_base_s, plus at most a quarter of jitter
    assert await setup.sender.run_once() == 0  # not due yet
    setup.clock.advance(first_wait)
    await setup.sender.run_once()
    (row,) = await deliveries(setup, channel["id"])
    assert row["attempts"] == 2
    assert 10 <= (row["next_attempt_at"] - setup.clock.now()).total_seconds() <= 12.5
    setup.clock.advance(13)
    await setup.sender.run_once()
    (row,) = await deliveries(setup, channel["id"])
    assert row["status"] == "delivered"
    assert row["attempts"] == 3
    assert [h["id"] for h in setup.receiver.hooks].count(event_id) == 1

    # A receiver that never answers well: failed after max_attempts, shown over HTTP.
    dead = await add_channel(
        setup,
        county.admin_token,
        org_unit=county.code,
        kind="webhook",
        url=setup.receiver.base + "/nowhere",
        events=["task.done"],
    )
    await emit(setup, "task.done", county.code)
    await setup.services.consumers.run_all()
    max_attempts = setup.client.app[POLICY].notifications.max_attempts
    for _ in range(max_attempts):
        assert await setup.sender.run_once() >= 1
        setup.clock.advance(setup.client.app[POLICY].notifications.retry_max_s * 1.25)
    assert await setup.sender.run_once() == 0
    resp = await setup.client.get(
        f"/api/v1/notification-channels/{dead['id']}/deliveries",
        params={"status": "failed"},
        headers=bearer(county.admin_token),
    )
    (failed,) = (await expect_json(resp))["deliveries"]
    assert failed["attempts"] == max_attempts
    assert failed["last_error"] == "HTTP 404"


async def test_dingtalk_and_wecom_robots_and_sms_are_signed_as_documented(setup: Setup) -> None:
    county = await make_county(setup.officers)
    base = setup.receiver.base
    await add_channel(
        setup,
        county.admin_token,
        org_unit=county.code,
        kind="dingtalk",
        url=base + "/robot/send?access_token=robot-token",
        secret=DING_SECRET,
        events=["task.escalated"],
    )
    await add_channel(
        setup,
        county.admin_token,
        org_unit=county.code,
        kind="wecom",
        url=base + "/cgi-bin/webhook/send?key=wecom-key",
        events=["task.escalated"],
    )
    sms = await add_channel(
        setup,
        county.admin_token,
        org_unit=county.code,
        kind="sms",
        url=base + "/",
        secret=ALIYUN_SECRET,
        events=["task.escalated"],
        settings={
            "provider": "aliyun",
            "access_key_id": ALIYUN_KEY_ID,
            "sign_name": "社区矫正",
            "template_code": "SMS_123456789",
            "phone_numbers": ["13800000000", "13900000000"],
        },
    )
    assert sms["settings"]["phone_numbers"] == ["13800000000", "13900000000"]
    assert "secret" not in sms["settings"]
    assert sms["secret_set"] is True
    setup.receiver.fail["ding"] = 1  # errcode ≠ 0 is retried
    before = (len(setup.receiver.dingtalk), len(setup.receiver.wecom), len(setup.receiver.sms))
    await emit(setup, "task.escalated", county.code, escalation_level=2, kind="search")
    await setup.deliver()
    assert len(setup.receiver.wecom) == before[1] + 1
    assert len(setup.receiver.sms) == before[2] + 1
    assert len(setup.receiver.dingtalk) == before[0]
    setup.clock.advance(7)
    await setup.sender.run_once()
    assert len(setup.receiver.dingtalk) == before[0] + 1
    ding = setup.receiver.dingtalk[-1]
    assert ding["markdown"]["title"] == "【任务升级】组织查找，升至第2级"
    assert ding["timestamp"] == int(setup.clock.now().timestamp() * 1000)
    assert setup.receiver.wecom[-1]["markdown"]["content"].startswith("### 【任务升级】")
    message = setup.receiver.sms[-1]
    assert message["Action"] == "SendSms"
    assert message["PhoneNumbers"] == "13800000000,13900000000"
    assert message["SignName"] == "社区矫正"
    assert message["TemplateCode"] == "SMS_123456789"
    assert json.loads(message["TemplateParam"])["event"] == "任务升级"
    assert setup.receiver.bad == []


async def test_a_burst_to_a_robot_sends_at_most_its_limit_a_minute_with_one_digest(
    setup: Setup,
) -> None:
    county = await make_county(setup.officers)
    channel = await add_channel(
        setup,
        county.admin_token,
        org_unit=county.code,
        kind="wecom",
        url=setup.receiver.base + "/cgi-bin/webhook/send?key=wecom-key",
        events=["task.created"],
    )
    limit = setup.client.app[POLICY].notifications.robot_per_minute
    before = len(setup.receiver.wecom)
    await emit(setup, "task.created", county.code, count=50)
    await setup.deliver()
    assert await setup.sender.run_once() == 0
    sent = setup.receiver.wecom[before:]
    assert len(sent) == limit
    digests = [m for m in sent if "另有" in m["markdown"]["content"]]
    assert len(digests) == 1
    assert "另有 31 条通知" in digests[0]["markdown"]["content"]
    rows = await deliveries(setup, channel["id"])
    by_status = {s: [r for r in rows if r["status"] == s] for s in ("delivered", "digested")}
    assert len(by_status["delivered"]) == limit
    assert len(by_status["digested"]) == 30
    (carrier,) = [r for r in rows if r["digest_id"] == r["id"]]
    assert all(r["digest_id"] == carrier["id"] for r in by_status["digested"])
    # The next event waits for the minute to have room, then goes alone.
    await emit(setup, "task.created", county.code)
    await setup.deliver()
    assert len(setup.receiver.wecom) == before + limit
    setup.clock.advance(61)
    await setup.sender.run_once()
    assert len(setup.receiver.wecom) == before + limit + 1
    assert "另有" not in setup.receiver.wecom[-1]["markdown"]["content"]


async def test_an_alert_from_a_phone_reaches_a_webhook_with_the_subjects_alert(
    setup: Setup,
) -> None:
    world = await make_world(setup.client, setup.officers, level="strict")
    await add_channel(
        setup,
        world.admin_token,
        org_unit=world.county,
        kind="webhook",
        url=setup.receiver.base + "/hook",
        secret=SECRET,
        events=["alert.opened"],
    )
    start = setup.clock.now().timestamp() - 600
    await send(setup.client, world, track(datetime.fromtimestamp(start, UTC), [OUTSIDE] * 6))
    await setup.deliver()
    opened = [
        h
        for h in setup.receiver.hooks
        if h["event"] == "alert.opened" and h["data"].get("subject_id") == world.subject_id
    ]
    assert len(opened) == 1
    assert opened[0]["data"]["type"] == "left_activity_area"
    assert opened[0]["data"]["alert_id"]
