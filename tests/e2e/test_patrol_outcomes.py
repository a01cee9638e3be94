"""Patrol outcomes through HTTP: validation, an absent finding during curfew confirming a
curfew violation that enters the legal ladder, the phone's own curfew alert confirmed
instead of a second one, and a present finding contradicting a location alert."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.domain.clock import ManualClock
from correction_monitor.service.ladder import LADDER_CONSUMER
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import POOL, SERVICES
from tests.conftest import FrontTestServer, Officers, bearer, unique
from tests.e2e.helpers import World, expect_error, expect_json, make_county, make_world, sql_row
from tests.e2e.patrol_helpers import HOME, Plan, add_subject, make_plan

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]
# 23:30 in Shanghai on 1 March 2026: within a 22:00-06:00 curfew.
NOW = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
NIGHT = date(2026, 3, 1)
CURFEW = {"start": "22:00", "end": "06:00"}


@asynccontextmanager
async def app_at(settings: Settings, moment: datetime) -> AsyncIterator[Client]:
    async with TestClient(FrontTestServer(init_app(settings, clock=ManualClock(moment)))) as c:
        yield c


async def run_ladder(client: Client) -> None:
    services = client.app[SERVICES]
    (consumer,) = [c for c in services.consumers.consumers if c.name == LADDER_CONSUMER]
    await services.consumers.run(consumer)


async def record(
    client: Client, token: str, plan: Plan, subject_id: int, body: dict[str, Any]
) -> Any:
    return await client.post(
        f"/api/v1/patrol-plans/{plan.plan_id}/stops/{subject_id}/outcome",
        json=body,
        headers=bearer(token),
    )


async def setup(client: Client, officers: Officers, **world: Any) -> tuple[World, Plan, str, int]:
    w = await make_world(client, officers, home=HOME, **world)
    plan = await make_plan(client, w, NIGHT, [w.subject_id], eta=NOW - timedelta(hours=1))
    username, token = await officers.create("officer", w.station)
    officer_id = (await sql_row(client, "SELECT id FROM officers WHERE username = $1", username))[
        "id"
    ]
    return w, plan, token, officer_id


async def alerts_of(client: Client, subject_id: int, type_: str) -> list[Any]:
    async with client.app[POOL].acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT * FROM alerts WHERE subject_id = $1 AND type = $2 ORDER BY id",
                subject_id,
                type_,
            )
        )


async def test_outcomes_are_validated_and_stops_outside_the_plan_are_not_found(
    settings: Settings, officers: Officers
) -> None:
    async with app_at(settings, NOW) as client:
        world, plan, token, _ = await setup(client, officers)
        stranger = await add_subject(client, world, "王五")
        at = (NOW - timedelta(minutes=5)).isoformat()
        await expect_error(
            await record(client, token, plan, world.subject_id,
                         {"outcome": "present", "at": (NOW + timedelta(minutes=1)).isoformat()}),
            400,
            "at_in_future",
        )  # fmt: skip
        for bad in (
            {"outcome": "asleep", "at": at},
            {"outcome": "present"},
            {"outcome": "present", "at": "yesterday"},
            {"outcome": "present", "at": at, "fix": {"lat": 95, "lon": 116}},
            {"outcome": "present", "at": at, "extra": 1},
        ):
            await expect_error(await record(client, token, plan, world.subject_id, bad), 400)
        await expect_error(
            await record(client, token, plan, stranger, {"outcome": "present", "at": at}), 404
        )
        neighbour = await make_world(client, officers)
        _, outsider = await officers.create("officer", neighbour.station)
        await expect_error(
            await record(
                client, outsider, plan, world.subject_id, {"outcome": "present", "at": at}
            ),
            404,
        )
        _, auditor = await officers.create("auditor", world.county)
        await expect_error(
            await record(client, auditor, plan, world.subject_id, {"outcome": "present", "at": at}),
            403,
        )
        # Epoch milliseconds are a time too; a correction keeps the value it replaced.
        epoch = int((NOW - timedelta(minutes=20)).timestamp() * 1000)
        first = await expect_json(
            await record(client, token, plan, world.subject_id,
                         {"outcome": "no_answer", "at": epoch, "note": "敲门无人应答"})
        )  # fmt: skip
        assert (first["outcome"], first["at"]) == ("no_answer", "2026-03-01T15:10:00Z")
        second = await expect_json(
            await record(client, token, plan, world.subject_id,
                         {"outcome": "present", "at": at,
                          "fix": {"lat": 39.91, "lon": 116.31, "accuracy_m": 8}})
        )  # fmt: skip
        assert second["outcome"] == "present"
        assert second["fix"]["lat"] == 39.91
        entries = await client.app[POOL].fetch(
            "SELECT detail FROM audit_log WHERE action = 'patrol_stop.record' "
            "AND subject_id = $1 ORDER BY id",
            world.subject_id,
        )
        assert [e["detail"]["outcome"] for e in entries] == ["no_answer", "present"]
        assert entries[0]["detail"]["previous"] is None
        assert entries[1]["detail"]["previous"]["outcome"] == "no_answer"
        assert entries[1]["detail"]["previous"]["note"] == "敲门无人应答"
        events = await client.app[POOL].fetch(
            "SELECT data FROM events WHERE name = 'patrol_stop.recorded' AND subject_id = $1",
            world.subject_id,
        )
        assert [e["data"]["corrected"] for e in events] == [False, True]


async def test_absent_during_curfew_opens_a_confirmed_curfew_violation_and_a_reprimand(
    settings: Settings, officers: Officers
) -> None:
    async with app_at(settings, NOW) as client:
        world, plan, token, officer_id = await setup(client, officers, curfew=CURFEW)
        at = NOW - timedelta(minutes=10)
        stop = await expect_json(
            await record(client, token, plan, world.subject_id,
                         {"outcome": "absent", "at": at.isoformat(), "note": "家属称外出未归",
                          "fix": {"lat": 39.9101, "lon": 116.3102}})
        )  # fmt: skip
        (alert,) = await alerts_of(client, world.subject_id, "curfew_violation")
        assert stop["alert_id"] == alert["id"]
        assert (alert["status"], alert["disposition"], alert["resolved_by"]) == (
            "resolved",
            "confirmed",
            officer_id,
        )
        assert alert["started_at"] == at
        assert alert["released_at"] is not None
        (visit,) = alert["evidence"]["patrols"]
        assert {k: visit[k] for k in ("plan_id", "team_id", "outcome", "note", "recorded_by")} == {
            "plan_id": plan.plan_id,
            "team_id": plan.team_id,
            "outcome": "absent",
            "note": "家属称外出未归",
            "recorded_by": officer_id,
        }
        assert visit["fix"]["lat"] == 39.9101
        assert alert["evidence"]["curfew"]["night"] == "2026-03-01"
        resolve = await sql_row(
            client,
            "SELECT officer_id, detail FROM audit_log WHERE action = 'alert.resolve' "
            "AND (detail ->> 'alert_id')::bigint = $1",
            alert["id"],
        )
        assert (resolve["officer_id"], resolve["detail"]["via"]) == (officer_id, "patrol_stop")

        await run_ladder(client)
        proposal = await sql_row(
            client,
            "SELECT measure, status, subject_id FROM proposals WHERE dedupe_key = $1",
            f"alert:{alert['id']}",
        )
        assert proposal is not None
        assert (proposal["measure"], proposal["status"]) == ("reprimand", "pending")

        # Recording the same finding again opens nothing and proposes nothing more.
        again = await expect_json(
            await record(client, token, plan, world.subject_id,
                         {"outcome": "absent", "at": at.isoformat()})
        )  # fmt: skip
        assert again["alert_id"] == alert["id"]
        assert len(await alerts_of(client, world.subject_id, "curfew_violation")) == 1
        (still,) = await alerts_of(client, world.subject_id, "curfew_violation")
        assert len(still["evidence"]["patrols"]) == 1


async def test_absent_outside_curfew_is_recorded_only(
    settings: Settings, officers: Officers
) -> None:
    # 20:30 in Shanghai: before a 22:00 curfew.
    early = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    async with app_at(settings, early) as client:
        world, plan, token, _ = await setup(client, officers, curfew=CURFEW)
        stop = await expect_json(
            await record(client, token, plan, world.subject_id,
                         {"outcome": "absent", "at": early.isoformat()})
        )  # fmt: skip
        assert (stop["outcome"], stop["alert_id"]) == ("absent", None)
        assert await alerts_of(client, world.subject_id, "curfew_violation") == []


async def test_absent_while_the_phones_curfew_alert_is_open_confirms_that_alert(
    settings: Settings, officers: Officers
) -> None:
    async with app_at(settings, NOW) as client:
        world, plan, token, officer_id = await setup(client, officers, curfew=CURFEW)
        phone = await sql_row(
            client,
            """
            INSERT INTO alerts (subject_id, org_unit_id, type, severity, episode_key, started_at,
                detected_at, released_at, evidence)
            SELECT id, org_unit_id, 'curfew_violation', 'normal', $2, $3, $3, $3,
                '{"reason": "outside_home"}'::jsonb
            FROM subjects WHERE id = $1 RETURNING id
            """,
            world.subject_id,
            unique("curfew-"),
            NOW - timedelta(minutes=50),
        )
        stop = await expect_json(
            await record(client, token, plan, world.subject_id,
                         {"outcome": "absent", "at": (NOW - timedelta(minutes=5)).isoformat()})
        )  # fmt: skip
        (alert,) = await alerts_of(client, world.subject_id, "curfew_violation")
        assert alert["id"] == phone["id"] == stop["alert_id"]
        assert (alert["status"], alert["disposition"], alert["resolved_by"]) == (
            "resolved",
            "confirmed",
            officer_id,
        )
        assert alert["evidence"]["reason"] == "outside_home"
        assert [v["plan_id"] for v in alert["evidence"]["patrols"]] == [plan.plan_id]
        await run_ladder(client)
        proposal = await sql_row(
            client, "SELECT status FROM proposals WHERE dedupe_key = $1", f"alert:{phone['id']}"
        )
        assert proposal["status"] == "pending"


async def test_present_while_a_left_activity_area_alert_is_open_is_a_contradiction(
    settings: Settings, officers: Officers
) -> None:
    async with app_at(settings, NOW) as client:
        county = await make_county(officers)
        world, plan, token, _ = await setup(client, officers, in_county=county)
        away = await sql_row(
            client,
            """
            INSERT INTO alerts (subject_id, org_unit_id, type, severity, episode_key, started_at,
                detected_at, released_at)
            SELECT id, org_unit_id, 'left_activity_area', 'high', $2, $3, $3, $3
            FROM subjects WHERE id = $1 RETURNING id
            """,
            world.subject_id,
            unique("left-"),
            NOW - timedelta(minutes=40),
        )
        stop = await expect_json(
            await record(client, token, plan, world.subject_id,
                         {"outcome": "present", "at": (NOW - timedelta(minutes=5)).isoformat(),
                          "note": "本人在家，手机不在身边"})
        )  # fmt: skip
        assert stop["contradicted_alert_ids"] == [away["id"]]
        (alert,) = await alerts_of(client, world.subject_id, "left_activity_area")
        assert alert["status"] == "open"  # the disposition stays the officers' decision
        (visit,) = alert["evidence"]["patrol_contradiction"]
        assert (visit["plan_id"], visit["outcome"]) == (plan.plan_id, "present")
        (signal,) = await alerts_of(client, world.subject_id, "device_integrity")
        assert signal["evidence"]["rule"] == "patrol_contradiction"
        event = await sql_row(
            client,
            "SELECT alert_id FROM events WHERE name = 'patrol_stop.contradicted' "
            "AND subject_id = $1",
            world.subject_id,
        )
        assert event["alert_id"] == away["id"]

        _, county_admin = await officers.create("county_admin", county.code)
        report = await expect_json(
            await client.get(
                "/api/v1/reports/alert-quality",
                params={"org_unit": world.station},
                headers=bearer(county_admin),
            )
        )
        rows = {r["type"]: r for r in report["rows"]}
        assert rows["left_activity_area"]["patrol_contradicted"] == 1
        assert rows["device_integrity"]["patrol_contradicted"] == 0
