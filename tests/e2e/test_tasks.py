"""Tasks (二级包保) end to end on a moved clock: opened from the event log, completed by what
settles them, escalated past their SLA exactly once across processes and restarts, worked
and listed over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.events import EventName
from correction_monitor.policy import load_policy
from correction_monitor.service.lost_contact import SweepLostContact
from correction_monitor.service.tasks import SweepTaskEscalations
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import POOL, SERVICES
from tests.conftest import Officers, bearer
from tests.e2e.helpers import (
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    World,
    alerts_of,
    expect_error,
    expect_json,
    iso_z,
    make_county,
    make_world,
    same_instant,
    send,
    sql_row,
)

pytestmark = pytest.mark.e2e

POLICY = load_policy()
STRICT = POLICY.level("strict")
SCHOOL = (116.30, 39.90)
BESIDE = (116.30, 39.91)  # about 1.1 km north of the school, inside the county
SCHOOL_ZONE = {
    "name": "某小学",
    "kind": "exclusion",
    "geometry": {"type": "Point", "coordinates": list(SCHOOL)},
    "radius_m": 200,
}

Client = TestClient[Any, Any]


@asynccontextmanager
async def app_on(settings: Settings, clock: ManualClock) -> AsyncIterator[Client]:
    """A service process of its own on ``clock`` (no scheduler: the test runs its work)."""
    async with TestClient[Any, Any](TestServer(init_app(settings, clock=clock))) as client:
        yield client


@dataclass
class Team:
    """A subject's world and the people of 二级包保 around it."""

    world: World
    officer_id: int
    officer: str
    supervisor_id: int
    supervisor: str
    county_admin_id: int
    county_admin: str


async def officer_id(client: Client, username: str) -> int:
    row = await sql_row(client, "SELECT id FROM officers WHERE username = $1", username)
    return int(row["id"])


async def make_team(client: Client, officers: Officers, **world: Any) -> Team:
    """A county of its own (its one county administrator is the one escalations reach)."""
    w = await make_world(client, officers, in_county=await make_county(officers), **world)
    officer, officer_token = await officers.create("officer", w.station)
    supervisor, supervisor_token = await officers.create("supervisor", w.station)
    admin, admin_token = await officers.create("county_admin", w.county)
    team = Team(
        w,
        await officer_id(client, officer),
        officer_token,
        await officer_id(client, supervisor),
        supervisor_token,
        await officer_id(client, admin),
        admin_token,
    )
    resp = await client.patch(
        f"/api/v1/subjects/{w.subject_id}",
        json={
            "responsible_officer_id": team.officer_id,
            "responsible_supervisor_id": team.supervisor_id,
            "reason": "二级包保",
        },
        headers=bearer(w.admin_token),
    )
    await expect_json(resp)
    return team


def fix(ts: datetime, point: tuple[float, float]) -> dict[str, Any]:
    return {
        "id": f"f{ts.timestamp():.0f}",
        "ts": ts.isoformat(),
        "lon": point[0],
        "lat": point[1],
        "accuracy_m": 10,
    }


async def run_work(client: Client) -> None:
    """What the scheduler would run meanwhile: due timers and the event log's consumers
    (twice: a consumer's events feed the next)."""
    services = client.app[SERVICES]
    for _ in range(2):
        await services.timers.fire_due()
        await services.consumers.run_all()


async def released(client: Client, alert_id: int) -> None:
    """Run the service's work until the alert has reached officers (``alert.released``, by
    the self-resolution consumer) and its task is opened."""
    await run_work(client)
    told = await sql_row(
        client,
        "SELECT count(*) AS n FROM events WHERE name = $1 AND alert_id = $2",
        EventName.ALERT_RELEASED.value,
        alert_id,
    )
    assert told["n"] == 1, "the alert was not released"
    await run_work(client)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def tasks_of(client: Client, token: str, **query: str) -> list[Any]:
    resp = await client.get("/api/v1/tasks", params=query, headers=bearer(token))
    tasks: list[Any] = (await expect_json(resp))["tasks"]
    return tasks


async def task(client: Client, token: str, task_id: int) -> Any:
    return await expect_json(await client.get(f"/api/v1/tasks/{task_id}", headers=bearer(token)))


async def escalations(client: Client, task_id: int) -> list[Any]:
    async with client.app[POOL].acquire() as conn:
        rows = await conn.fetch(
            "SELECT data FROM events WHERE name = $1 AND (data->>'task_id')::bigint = $2"
            " ORDER BY id",
            EventName.TASK_ESCALATED.value,
            task_id,
        )
    return [r["data"] for r in rows]


async def zone_alert(client: Client, team: Team, clock: ManualClock) -> Any:
    """Ten minutes inside the school's zone, up to the clock's now: one alert."""
    start = clock.now() - timedelta(minutes=12)
    points = [BESIDE, BESIDE] + [SCHOOL] * 10
    await send(
        client, team.world, [fix(start + timedelta(minutes=n), p) for n, p in enumerate(points)]
    )
    [alert] = await alerts_of(client, team.world)
    assert alert["type"] == "entered_exclusion_zone"
    return alert


async def test_an_alert_reaching_officers_is_a_verification_acknowledged_or_escalated_twice(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers, exclusions=[SCHOOL_ZONE])
        subject = str(team.world.subject_id)
        alert = await zone_alert(client, team, clock)
        await released(client, alert["id"])

        [opened] = await tasks_of(client, team.officer, assignee="me", subject_id=subject)
        assert opened["kind"] == "verify_alert"
        assert opened["alert_id"] == alert["id"]
        assert opened["assignee_id"] == team.officer_id
        assert opened["escalation_level"] == 0
        assert opened["status"] == "open"
        assert opened["done_at"] is None
        due = instant(alert["detected_at"])
        assert same_instant(opened["due_at"], iso_z(due + timedelta(seconds=STRICT.ack_sla_high_s)))
        assert opened["overdue"] is False
        # Told again, the release opens nothing more.
        await released(client, alert["id"])
        assert len(await tasks_of(client, team.officer, subject_id=subject)) == 1

        # Not acknowledged by its due time: the responsible supervisor's, with a new due.
        services = client.app[SERVICES]
        clock.set(due + timedelta(seconds=STRICT.ack_sla_high_s))
        await services.handle(SweepTaskEscalations(clock.now()))
        first = await task(client, team.supervisor, opened["id"])
        assert first["escalation_level"] == 1
        assert first["assignee_id"] == team.supervisor_id
        assert same_instant(
            first["due_at"],
            iso_z(clock.now() + timedelta(seconds=POLICY.tasks.escalation_sla_s[0])),
        )
        [told] = await escalations(client, opened["id"])
        assert told["from_assignee_id"] == team.officer_id
        assert told["to_assignee_id"] == team.supervisor_id
        assert told["level"] == 1
        assert told["alert_id"] == alert["id"]
        assert told["subject_id"] == team.world.subject_id
        assert [s["kind"] for s in first["steps"]] == ["escalated"]
        # Swept again before the new due: nothing moves.
        await services.handle(SweepTaskEscalations(clock.now()))
        assert len(await escalations(client, opened["id"])) == 1

        # Missed again: the county administrator's.
        clock.advance(POLICY.tasks.escalation_sla_s[0])
        await services.handle(SweepTaskEscalations(clock.now()))
        second = await task(client, team.county_admin, opened["id"])
        assert (second["escalation_level"], second["assignee_id"]) == (2, team.county_admin_id)
        assert [e["level"] for e in await escalations(client, opened["id"])] == [1, 2]
        assert [t["id"] for t in await tasks_of(client, team.county_admin, assignee="me")] == [
            opened["id"]
        ]
        # Missed at the county too: recorded once; the task stays with the county.
        clock.advance(POLICY.tasks.escalation_sla_s[1])
        for _ in range(2):
            await services.handle(SweepTaskEscalations(clock.now()))
        last = await task(client, team.county_admin, opened["id"])
        assert (last["escalation_level"], last["assignee_id"]) == (2, team.county_admin_id)
        assert last["overdue"] is True
        assert last["sla_missed_at"] is not None
        assert [s["kind"] for s in last["steps"]] == ["escalated", "escalated", "sla_missed"]
        audited = await sql_row(
            client,
            "SELECT count(*) AS n FROM audit_log WHERE officer_id IS NULL"
            " AND action IN ('task.escalate', 'task.sla_missed')"
            " AND (detail->>'task_id')::bigint = $1",
            opened["id"],
        )
        assert audited["n"] == 3

        # The county administrator acknowledges: done, by them.
        resp = await client.post(
            f"/api/v1/alerts/{alert['id']}/acknowledge", headers=bearer(team.county_admin)
        )
        await expect_json(resp)
        await run_work(client)
        done = await task(client, team.officer, opened["id"])
        assert done["status"] == "done"
        assert done["done_by"] == team.county_admin_id
        assert done["overdue"] is False
        assert await tasks_of(client, team.officer, status="open", subject_id=subject) == []


async def test_acknowledged_in_time_the_task_is_done_and_never_escalates(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers, exclusions=[SCHOOL_ZONE])
        alert = await zone_alert(client, team, clock)
        await released(client, alert["id"])
        resp = await client.post(
            f"/api/v1/alerts/{alert['id']}/acknowledge", headers=bearer(team.officer)
        )
        await expect_json(resp)
        await run_work(client)
        [done] = await tasks_of(client, team.officer, subject_id=str(team.world.subject_id))
        assert done["status"] == "done"
        assert done["done_by"] == team.officer_id
        clock.advance(86400)
        await client.app[SERVICES].handle(SweepTaskEscalations(clock.now()))
        assert await escalations(client, done["id"]) == []


async def test_two_processes_sweeping_the_same_due_tasks_escalate_each_once(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as one, app_on(settings, clock) as two:
        team = await make_team(one, officers)
        # Forty due verifications of one subject, as the consumer opens them.
        async with one.app[POOL].acquire() as conn:
            ids = await conn.fetch(
                """
                INSERT INTO tasks (kind, subject_id, org_unit_id, assignee_id, due_at,
                                   created_at, dedupe_key)
                SELECT 'review_checkin', s.id, s.org_unit_id, $2, $3, $3, $4 || n
                FROM subjects s, generate_series(1, 40) n WHERE s.id = $1
                RETURNING id
                """,
                team.world.subject_id,
                team.officer_id,
                clock.now() - timedelta(seconds=1),
                f"race:{team.world.subject_id}:",
            )
        task_ids = [r["id"] for r in ids]
        for _ in range(3):  # repeat the race, each round one level up
            sweeps = [
                one.app[SERVICES].handle(SweepTaskEscalations(clock.now(), batch=7)),
                two.app[SERVICES].handle(SweepTaskEscalations(clock.now(), batch=7)),
            ]
            results = await asyncio.gather(*sweeps)
            assert sum(r.escalated + r.missed for r in results) >= len(task_ids)
            clock.advance(max(POLICY.tasks.escalation_sla_s))
        async with one.app[POOL].acquire() as conn:
            told = await conn.fetch(
                "SELECT (data->>'task_id')::bigint AS task_id, count(*) AS n FROM events"
                " WHERE name = $1 AND (data->>'task_id')::bigint = ANY($2::bigint[])"
                " GROUP BY 1",
                EventName.TASK_ESCALATED.value,
                task_ids,
            )
            steps = await conn.fetch(
                "SELECT task_id, count(*) AS n FROM task_steps WHERE task_id = ANY($1::bigint[])"
                " GROUP BY 1",
                task_ids,
            )
        # Level 1, level 2, then the county's miss: three each, never more.
        assert {r["task_id"]: r["n"] for r in told} == dict.fromkeys(task_ids, 3)
        assert {r["task_id"]: r["n"] for r in steps} == dict.fromkeys(task_ids, 3)


async def test_a_restarted_process_does_not_escalate_again(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers, exclusions=[SCHOOL_ZONE])
        alert = await zone_alert(client, team, clock)
        await released(client, alert["id"])
        [opened] = await tasks_of(client, team.officer, subject_id=str(team.world.subject_id))
        # Past its due (detected_at, stamped by the ingest's commit, plus the SLA).
        clock.set(instant(opened["due_at"]) + timedelta(seconds=1))
        swept = await client.app[SERVICES].handle(SweepTaskEscalations(clock.now()))
        assert swept.escalated >= 1
    # A new process on the same clock finds nothing new for this task.
    async with app_on(settings, clock) as restarted:
        await run_work(restarted)
        await restarted.app[SERVICES].handle(SweepTaskEscalations(clock.now()))
        assert len(await escalations(restarted, opened["id"])) == 1
        again = await task(restarted, team.supervisor, opened["id"])
        assert again["escalation_level"] == 1


async def test_lost_contact_is_a_search_whose_steps_are_recorded(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers)
        await send(client, team.world, [fix(clock.now() - timedelta(minutes=1), BESIDE)])
        clock.advance(STRICT.lost_contact_after_s + 60)
        await client.app[SERVICES].handle(SweepLostContact(clock.now()))
        [alert] = await alerts_of(client, team.world, type="lost_contact")
        await released(client, alert["id"])
        [search] = await tasks_of(client, team.officer, assignee="me", kind="search")
        assert search["alert_id"] == alert["id"]
        assert search["status"] == "open"
        url = f"/api/v1/tasks/{search['id']}"
        for kind in ("phone", "info_check", "visit", "notify_police"):
            resp = await client.post(
                f"{url}/steps",
                json={"kind": kind, "note": f"{kind} 无果"},
                headers=bearer(team.officer),
            )
            step = await expect_json(resp, 201)
            assert step["kind"] == kind
            assert step["officer_id"] == team.officer_id
        earlier = iso_z(clock.now() - timedelta(minutes=5))
        resp = await client.post(
            f"{url}/steps", json={"kind": "note", "at": earlier}, headers=bearer(team.officer)
        )
        assert same_instant((await expect_json(resp, 201))["at"], earlier)
        await expect_error(
            await client.post(f"{url}/steps", json={"kind": "dance"}, headers=bearer(team.officer)),
            400,
        )
        await expect_error(
            await client.post(
                f"{url}/done", json={"outcome": "maybe"}, headers=bearer(team.officer)
            ),
            400,
        )
        read = await task(client, team.officer, search["id"])
        assert [s["kind"] for s in read["steps"]] == [
            "phone",
            "info_check",
            "visit",
            "notify_police",
            "note",
        ]
        assert read["steps_count"] == 5
        resp = await client.post(
            f"{url}/done",
            json={"outcome": "found", "note": "在亲戚家"},
            headers=bearer(team.officer),
        )
        done = await expect_json(resp)
        assert done["status"] == "done"
        assert done["outcome"] == "found"
        assert done["done_by"] == team.officer_id
        await expect_error(
            await client.post(
                f"{url}/done", json={"outcome": "found"}, headers=bearer(team.officer)
            ),
            409,
            "task_done",
        )
        audited = await sql_row(
            client,
            "SELECT count(*) AS n FROM audit_log WHERE officer_id = $1"
            " AND action IN ('task.step', 'task.done') AND (detail->>'task_id')::bigint = $2",
            team.officer_id,
            search["id"],
        )
        assert audited["n"] == 6
        row = await sql_row(
            client,
            "SELECT count(*) AS n FROM events WHERE name = 'task.done'"
            " AND (data->>'task_id')::bigint = $1",
            search["id"],
        )
        assert row["n"] == 1


async def test_only_a_search_takes_search_steps_or_closes_by_hand(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers, exclusions=[SCHOOL_ZONE])
        alert = await zone_alert(client, team, clock)
        await released(client, alert["id"])
        [verify] = await tasks_of(client, team.officer, subject_id=str(team.world.subject_id))
        url = f"/api/v1/tasks/{verify['id']}"
        h = bearer(team.officer)
        await expect_error(
            await client.post(f"{url}/steps", json={"kind": "visit"}, headers=h), 409
        )
        await expect_error(await client.post(f"{url}/done", json={}, headers=h), 409)
        resp = await client.post(f"{url}/steps", json={"kind": "note", "note": "已电话"}, headers=h)
        await expect_json(resp, 201)
        # An auditor reads but does not work; another county does not see it at all.
        _, auditor = await officers.create("auditor", team.world.county)
        assert (await task(client, auditor, verify["id"]))["id"] == verify["id"]
        await expect_error(
            await client.post(f"{url}/steps", json={"kind": "note"}, headers=bearer(auditor)), 403
        )
        elsewhere = await make_county(officers)
        _, stranger = await officers.create("county_admin", elsewhere.code)
        await expect_error(await client.get(url, headers=bearer(stranger)), 404)
        assert await tasks_of(client, stranger) == []
        await expect_error(await client.get("/api/v1/tasks/0", headers=h), 404)
        await expect_error(
            await client.get("/api/v1/tasks", params={"status": "x"}, headers=h), 400
        )
        await expect_error(await client.get("/api/v1/tasks", params={"kind": "x"}, headers=h), 400)
        await expect_error(
            await client.get("/api/v1/tasks", params={"assignee": "x"}, headers=h), 400
        )


PHOTO = "ab" * 32


async def test_a_check_in_needing_review_is_a_task_done_by_the_review(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers)
        w = team.world
        clock.advance(1)
        resp = await client.post(
            f"/api/v1/subjects/{w.subject_id}/challenges",
            json={"answer_within_s": 1800},
            headers=bearer(team.officer),
        )
        checkin = await expect_json(resp, 201)
        body = {
            "ts": iso_z(clock.now()),
            "lat": BESIDE[1],
            "lon": BESIDE[0],
            "accuracy_m": 10,
            "photo_sha256": PHOTO,
        }
        resp = await client.post(
            f"/api/v1/me/checkins/{checkin['id']}", json=body, headers=bearer(w.device_token)
        )
        assert (await expect_json(resp))["status"] == "needs_review"
        await run_work(client)
        [review] = await tasks_of(client, team.officer, assignee="me", kind="review_checkin")
        assert review["checkin_id"] == checkin["id"]
        assert review["status"] == "open"
        assert same_instant(
            review["due_at"], iso_z(clock.now() + timedelta(seconds=POLICY.tasks.review_checkin_s))
        )
        resp = await client.post(
            f"/api/v1/checkins/{checkin['id']}/review",
            json={"decision": "passed", "note": "视频通话核实本人"},
            headers=bearer(team.officer),
        )
        await expect_json(resp)
        await run_work(client)
        done = await task(client, team.officer, review["id"])
        assert done["status"] == "done"
        assert done["done_by"] == team.officer_id
        assert done["outcome"] == "passed"


async def test_leave_applications_are_approval_tasks_by_level_done_when_decided(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers)
        w = team.world
        tianjin = {
            "type": "Polygon",
            "coordinates": [
                [[117.1, 39.0], [117.3, 39.0], [117.3, 39.2], [117.1, 39.2], [117.1, 39.0]]
            ],
        }
        leaves = []
        for days in (2, 10):
            start = clock.now() + timedelta(days=3)
            resp = await client.post(
                "/api/v1/me/leave",
                json={
                    "destination": {"geometry": tianjin},
                    "reason": "medical",
                    "start": iso_z(start),
                    "end": iso_z(start + timedelta(days=days - 1)),
                },
                headers=bearer(w.device_token),
            )
            leaves.append(await expect_json(resp, 201))
        assert [leave["approval_level"] for leave in leaves] == ["station", "county"]
        await run_work(client)
        tasks = await tasks_of(
            client, team.county_admin, kind="approve_leave", subject_id=str(w.subject_id)
        )
        holders = {t["leave_id"]: t["assignee_id"] for t in tasks}
        assert holders == {
            leaves[0]["id"]: team.officer_id,
            leaves[1]["id"]: team.county_admin_id,
        }
        resp = await client.post(
            f"/api/v1/leave/{leaves[0]['id']}/approve", json={}, headers=bearer(team.officer)
        )
        await expect_json(resp)
        resp = await client.post(
            f"/api/v1/me/leave/{leaves[1]['id']}/cancel", headers=bearer(w.device_token)
        )
        await expect_json(resp)
        await run_work(client)
        done = {
            t["leave_id"]: (t["status"], t["outcome"], t["done_by"])
            for t in await tasks_of(
                client, team.county_admin, kind="approve_leave", subject_id=str(w.subject_id)
            )
        }
        assert done == {
            leaves[0]["id"]: ("done", "approved", team.officer_id),
            leaves[1]["id"]: ("done", "cancelled", None),
        }


async def test_a_confirmed_breach_proposal_is_the_county_administrators_to_decide(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers, exclusions=[SCHOOL_ZONE])
        alert = await zone_alert(client, team, clock)
        await released(client, alert["id"])
        resp = await client.post(
            f"/api/v1/alerts/{alert['id']}/resolve",
            json={"disposition": "confirmed", "note": "核实进入校园"},
            headers=bearer(team.officer),
        )
        await expect_json(resp)
        await run_work(client)
        [decide] = await tasks_of(
            client, team.county_admin, kind="decide_proposal", subject_id=str(team.world.subject_id)
        )
        assert decide["assignee_id"] == team.county_admin_id
        assert decide["status"] == "open"
        assert same_instant(
            decide["due_at"], iso_z(clock.now() + timedelta(seconds=POLICY.tasks.decide_proposal_s))
        )
        resp = await client.post(
            f"/api/v1/proposals/{decide['proposal_id']}/decide",
            json={"decision": "approved", "note": "同意"},
            headers=bearer(team.county_admin),
        )
        await expect_json(resp)
        await run_work(client)
        done = await task(client, team.county_admin, decide["id"])
        assert done["status"] == "done"
        assert done["done_by"] == team.county_admin_id
        assert done["outcome"] == "approved"


async def test_queues_an_officers_own_a_supervisors_station_and_what_was_handed_to_them(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers, exclusions=[SCHOOL_ZONE])
        alert = await zone_alert(client, team, clock)
        await released(client, alert["id"])
        [mine] = await tasks_of(client, team.officer, assignee="me")
        assert await tasks_of(client, team.supervisor, assignee="me") == []
        station = await tasks_of(client, team.supervisor, subject_id=str(team.world.subject_id))
        assert [t["id"] for t in station] == [mine["id"]]
        by_id = await tasks_of(client, team.supervisor, assignee=str(team.officer_id))
        assert [t["id"] for t in by_id] == [mine["id"]]
        assert await tasks_of(client, team.officer, status="done", assignee="me") == []
        assert await tasks_of(client, team.officer, kind="search", assignee="me") == []
        # Another station's supervisor sees none of it.
        other = await make_world(client, officers)
        _, neighbour = await officers.create("supervisor", other.station)
        assert await tasks_of(client, neighbour, subject_id=str(team.world.subject_id)) == []
        await expect_error(
            await client.get(f"/api/v1/tasks/{mine['id']}", headers=bearer(neighbour)), 404
        )


async def test_a_breach_reaches_officers_after_its_grace_and_only_then_is_a_task(
    settings: Settings, officers: Officers
) -> None:
    """The whole story: fixes outside the area → an alert → the subject messaged first →
    the grace runs out with the subject still outside → released → a verification."""
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers)
        start = clock.now() - timedelta(minutes=8)
        points = [NEAR_INSIDE, NEAR_INSIDE] + [NEAR_OUTSIDE] * 7
        await send(
            client,
            team.world,
            [fix(start + timedelta(minutes=n), p) for n, p in enumerate(points)],
        )
        [alert] = await alerts_of(client, team.world)
        assert alert["type"] == "left_activity_area"
        await run_work(client)
        # Within the grace: nobody is summoned yet.
        assert await tasks_of(client, team.officer, subject_id=str(team.world.subject_id)) == []
        grace = POLICY.self_resolution("left_activity_area")
        assert grace > 0
        clock.set(instant(alert["detected_at"]) + timedelta(seconds=grace + 1))
        await released(client, alert["id"])
        [opened] = await tasks_of(client, team.officer, assignee="me")
        assert opened["kind"] == "verify_alert"
        assert opened["alert_id"] == alert["id"]
        due = instant(alert["detected_at"]) + timedelta(seconds=STRICT.ack_sla_high_s)
        assert same_instant(opened["due_at"], iso_z(due))


async def test_a_search_ends_by_itself_when_contact_is_back(
    settings: Settings, officers: Officers
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with app_on(settings, clock) as client:
        team = await make_team(client, officers)
        await send(client, team.world, [fix(clock.now() - timedelta(minutes=1), BESIDE)])
        clock.advance(STRICT.lost_contact_after_s + 60)
        await client.app[SERVICES].handle(SweepLostContact(clock.now()))
        [alert] = await alerts_of(client, team.world, type="lost_contact")
        await released(client, alert["id"])
        [search] = await tasks_of(client, team.officer, assignee="me", kind="search")
        await send(client, team.world, [fix(clock.now() - timedelta(seconds=30), BESIDE)])
        await run_work(client)
        done = await task(client, team.officer, search["id"])
        assert done["status"] == "done"
        assert done["outcome"] == "contact_restored"
        assert [s["kind"] for s in done["steps"]] == ["done"]
