"""One whole escalation story through the real service on a moved clock: a subject leaves
the activity area and stays out; the phone is messaged first, the officer's live feed shows
the alert; its SLA passes unacknowledged and the supervisor is notified through a signed
webhook and a signed DingTalk robot; the officer confirms and the county administrator
approves the 训诫; after two approved 训诫 a further confirmed breach is proposed a 警告
citing its article, and that proposal's evidence PDF carries the subject's name as text.

Every breach is a real episode from fixes posted to ``/api/v1/fixes``; the service's work
(timers, the event log's consumers, the SLA sweep, the notification sender) runs exactly as
its jobs run it, on the app's injected clock."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pypdf import PdfReader

from correction_monitor.domain.clock import ManualClock
from correction_monitor.policy import load_policy
from correction_monitor.service.tasks import SweepTaskEscalations
from correction_monitor.settings import Settings
from correction_monitor.web.keys import SERVICES
from tests.conftest import Officers, bearer
from tests.e2e.helpers import (
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    World,
    expect_json,
    same_instant,
    send,
    sql_row,
    track,
)
from tests.e2e.test_alerts_feed import next_event, open_stream
from tests.e2e.test_ladder import REPRIMAND, WARNING, confirm, decide, proposal_for
from tests.e2e.test_notifications import (
    DING_SECRET,
    SECRET,
    Receiver,
    Setup,
    add_channel,
)
from tests.e2e.test_tasks import (
    Client,
    Team,
    app_on,
    instant,
    make_team,
    released,
    run_work,
    task,
    tasks_of,
)

pytestmark = pytest.mark.e2e

STRICT = load_policy().level("strict")
MINUTE = timedelta(minutes=1)


@asynccontextmanager
async def receivers() -> AsyncIterator[Receiver]:
    """A local webhook receiver and a local DingTalk robot, each checking the signature of
    every request as its provider documents it (``test_notifications.Receiver``)."""
    receiver = Receiver()
    receiving = web.Application()
    receiving.router.add_post("/hook", receiver.hook)
    receiving.router.add_post("/robot/send", receiver.ding)
    async with TestServer(receiving) as server:
        receiver.base = str(server.make_url("")).rstrip("/")
        yield receiver


@asynccontextmanager
async def escalation_channels(notify: Setup, team: Team) -> AsyncIterator[None]:
    """The county's webhook and DingTalk robot for ``task.escalated``, signed with their
    secrets; deactivated afterwards, so later events of the shared database go nowhere."""
    ids = []
    for kind, url, secret in (
        ("webhook", "/hook", SECRET),
        ("dingtalk", "/robot/send?access_token=robot-token", DING_SECRET),
    ):
        channel = await add_channel(
            notify,
            team.county_admin,
            org_unit=team.world.county,
            kind=kind,
            url=notify.receiver.base + url,
            secret=secret,
            events=["task.escalated"],
        )
        ids.append(channel["id"])
    try:
        yield
    finally:
        for channel_id in ids:
            resp = await notify.client.delete(
                f"/api/v1/notification-channels/{channel_id}", headers=bearer(team.county_admin)
            )
            assert resp.status == 200, await resp.text()


def walk(start: datetime, outside: int, back: int) -> list[dict[str, Any]]:
    """A fix a minute from ``start``: ``outside`` minutes just beyond the county's east edge
    (about 430 m out, an ordinary walk across it), then ``back`` minutes inside again."""
    return track(start, [NEAR_OUTSIDE] * outside + [NEAR_INSIDE] * back)


async def alert_of(client: Client, world: World, alert_id: int) -> Any:
    resp = await client.get(
        "/api/v1/alerts",
        params={"subject_id": str(world.subject_id)},
        headers=bearer(world.admin_token),
    )
    [alert] = [a for a in (await expect_json(resp))["alerts"] if a["id"] == alert_id]
    return alert


async def new_alert(client: Client, world: World, known: set[int]) -> Any:
    """The subject's one left_activity_area alert not in ``known`` (which it joins)."""
    resp = await client.get(
        "/api/v1/alerts",
        params={"subject_id": str(world.subject_id), "type": "left_activity_area"},
        headers=bearer(world.admin_token),
    )
    [alert] = [a for a in (await expect_json(resp))["alerts"] if a["id"] not in known]
    known.add(alert["id"])
    return alert


async def test_a_breach_escalates_to_the_supervisor_and_climbs_the_ladder_to_a_warning(
    settings: Settings, database_url: str
) -> None:
    # The story's fixes lie in the last hour (a phone may not report the future); the
    # service's clock starts now and only moves forward.
    now = datetime.now(UTC).replace(microsecond=0)
    clock = ManualClock(now)
    async with (
        receivers() as receiver,
        app_on(settings, clock) as client,
        AsyncExitStack() as stack,
    ):
        officers = Officers(database_url, client)
        team = await make_team(client, officers)  # strict subject 张三, 二级包保 set
        world, services = team.world, client.app[SERVICES]
        notify = Setup(client, clock, receiver, officers)
        await stack.enter_async_context(escalation_channels(notify, team))
        known: set[int] = set()
        stream = await open_stream(client, team.officer)
        try:
            # 1. The subject leaves the area and stays out: the phone is messaged first.
            start = now - timedelta(minutes=60)
            await send(client, world, track(start, [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 6))
            first = await new_alert(client, world, known)
            await run_work(client)
            in_grace = await alert_of(client, world, first["id"])
            assert in_grace["ended_at"] is None
            assert in_grace["released_at"] is None
            until = instant(in_grace["self_resolution_until"])
            assert until == instant(in_grace["detected_at"]) + timedelta(seconds=300)
            resp = await client.get("/api/v1/me/messages", headers=bearer(world.device_token))
            [message] = [
                m for m in (await expect_json(resp))["messages"] if m["kind"] == "self_resolution"
            ]
            assert message["text"] == "您已离开活动区域，请立即返回或联系社区矫正工作人员。"
            assert message["data"]["alert_id"] == first["id"]
            # They do not return: the grace runs out and the alert reaches officers.
            clock.set(until + timedelta(seconds=1))
            await released(client, first["id"])
            out = await alert_of(client, world, first["id"])
            assert out["released_at"] is not None
            assert (out["self_resolved"], out["ended_at"]) == (False, None)

            # 2. The officer's live feed showed the alert opening, then reaching officers.
            opened = await next_event(stream)
            assert opened["event"] == "opened"
            assert json.loads(opened["data"])["id"] == first["id"]
            assert json.loads(opened["data"])["type"] == "left_activity_area"
            told = await next_event(stream)
            assert told["event"] == "released"
            assert json.loads(told["data"])["id"] == first["id"]
        finally:
            stream.close()

        # 3. The SLA passes unacknowledged: the supervisor is notified by webhook and robot.
        [verify] = await tasks_of(client, team.officer, assignee="me", kind="verify_alert")
        assert (verify["alert_id"], verify["assignee_id"]) == (first["id"], team.officer_id)
        due = instant(out["detected_at"]) + timedelta(seconds=STRICT.ack_sla_high_s)
        assert same_instant(verify["due_at"], due.isoformat())
        clock.set(due + timedelta(seconds=1))
        await services.handle(SweepTaskEscalations(clock.now()))
        await notify.deliver()
        escalated = await task(client, team.supervisor, verify["id"])
        assert (escalated["escalation_level"], escalated["status"]) == (1, "open")
        assert escalated["assignee_id"] == team.supervisor_id
        [hook] = [h for h in receiver.hooks if h["event"] == "task.escalated"]
        assert hook["org_unit"] == world.station
        assert hook["data"]["task_id"] == verify["id"]
        assert hook["data"]["alert_id"] == first["id"]
        assert hook["data"]["subject_id"] == world.subject_id
        assert hook["data"]["from_assignee_id"] == team.officer_id
        assert hook["data"]["to_assignee_id"] == team.supervisor_id
        assert hook["data"]["escalation_level"] == 1
        [ding] = receiver.dingtalk
        assert ding["markdown"]["title"] == "【任务升级】张三 核实告警，升至第1级"
        assert f"任务编号：{verify['id']}" in ding["markdown"]["text"]
        assert f"事件编号：{hook['id']}" in ding["markdown"]["text"]
        supervisor = await sql_row(
            client,
            "SELECT coalesce(display_name, username) AS name FROM officers WHERE id = $1",
            team.supervisor_id,
        )
        assert f"- 承办人：{supervisor['name']}" in ding["markdown"]["text"].split("\n")
        assert receiver.bad == []  # every request carried its provider's valid signature

        # 4. The officer confirms; the county administrator approves the 训诫.
        await confirm(client, team.officer, first["id"])
        reprimand = await proposal_for(client, team.officer, first["id"])
        assert (reprimand["measure"], reprimand["status"]) == ("reprimand", "pending")
        assert reprimand["article"] == REPRIMAND
        assert reprimand["alert_ids"] == [first["id"]]
        approved = await decide(client, team.county_admin, reprimand["id"], "approved")
        assert (approved["status"], approved["decided_by"]) == ("approved", team.county_admin_id)
        await run_work(client)
        assert (await task(client, team.officer, verify["id"]))["status"] == "done"

        # 5. Back home, out again: a second 训诫, approved; then a further confirmed breach
        # is proposed a 警告 citing its article.
        await send(client, world, walk(start + 15 * MINUTE, outside=0, back=4))
        assert (await alert_of(client, world, first["id"]))["ended_at"] is not None
        await send(client, world, walk(start + 20 * MINUTE, outside=10, back=4))
        second = await new_alert(client, world, known)
        await run_work(client)
        await confirm(client, team.officer, second["id"])
        again = await proposal_for(client, team.officer, second["id"])
        assert (again["measure"], again["article"]) == ("reprimand", REPRIMAND)
        approved = await decide(client, team.county_admin, again["id"], "approved")
        assert approved["status"] == "approved"

        await send(client, world, walk(start + 35 * MINUTE, outside=10, back=4))
        third = await new_alert(client, world, known)
        await run_work(client)
        await confirm(client, team.officer, third["id"])
        warning = await proposal_for(client, team.officer, third["id"])
        assert (warning["measure"], warning["status"]) == ("warning", "pending")
        assert warning["article"] == WARNING
        assert warning["basis"]["counters"]["reprimands"] == 2
        assert any(WARNING in g for g in warning["grounds"])

        # 6. The warning's evidence PDF renders, the subject's Chinese name extractable.
        resp = await client.get(
            f"/api/v1/proposals/{warning['id']}/document", headers=bearer(team.county_admin)
        )
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/pdf"
        pdf = PdfReader(io.BytesIO(await resp.read()))
        text = "".join("".join(page.extract_text().split()) for page in pdf.pages)
        assert "张三" in text
        assert WARNING in text
