"""Leave (外出) end to end through HTTP: the subject's app applies and reports, officers decide
with the approval level's authority, and evaluation counts a running leave's destination as
inside the activity area, raising leave_overdue for a stay past its end and grace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.domain.clock import ManualClock
from correction_monitor.ingest.profiles import RECHECK_S, ProfileCache
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import POLICY, POOL
from tests.conftest import FrontTestServer, Officers, bearer, shared_data, unique
from tests.e2e.helpers import (
    INSIDE,
    County,
    World,
    expect_error,
    expect_json,
    make_county,
    make_world,
    send,
    sql_row,
)

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]
CST = timezone(timedelta(hours=8))
TIANJIN_FILE = ("boundaries", "datav_GeoMapData_CN", "province", "120000.json")
# WGS-84, in central Tianjin (和平区/南开区), ~115 km from the test county near Beijing.
IN_TIANJIN = (117.18, 39.12)
# A drawn destination around central Tianjin (WGS-84), for tests that need no shared data.
TIANJIN_SQUARE = {
    "type": "Polygon",
    "coordinates": [[[117.1, 39.05], [117.3, 39.05], [117.3, 39.2], [117.1, 39.2], [117.1, 39.05]]],
}
ELSEWHERE = (116.30, 39.50)  # neither the county nor Tianjin
EPISODES = ("left_activity_area", "leave_overdue")


@asynccontextmanager
async def app_at(settings: Settings, moment: datetime) -> AsyncIterator[tuple[Client, ManualClock]]:
    """The app on a clock the test moves."""
    clock = ManualClock(moment)
    async with TestClient(FrontTestServer(init_app(settings, clock=clock))) as client:
        yield client, clock


def fixes_at(
    start: datetime, n: int, where: tuple[float, float], step_s: float = 60.0
) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{(start + timedelta(seconds=step_s * i)).timestamp():.0f}",
            "ts": (start + timedelta(seconds=step_s * i)).isoformat(),
            "lon": where[0],
            "lat": where[1],
            "accuracy_m": 10.0,
        }
        for i in range(n)
    ]


async def send_at(
    client: Client, clock: ManualClock, world: World, fixes: list[dict[str, Any]]
) -> None:
    """Send fixes with the clock just past the newest of them (phones send what they have)."""
    newest = max(datetime.fromisoformat(f["ts"]) for f in fixes)
    if clock.now() < newest:
        clock.set(newest + timedelta(seconds=5))
    body = await send(client, world, fixes)
    assert body["accepted"] == len(fixes), body


async def apply(client: Client, world: World, **body: Any) -> Any:
    payload = {"destination": {"geometry": TIANJIN_SQUARE}, "reason": "family"} | body
    resp = await client.post("/api/v1/me/leave", json=payload, headers=bearer(world.device_token))
    return await expect_json(resp, 201)


async def decide(client: Client, token: str, leave_id: int, verb: str, **body: Any) -> Any:
    return await client.post(f"/api/v1/leave/{leave_id}/{verb}", json=body, headers=bearer(token))


async def episodes(client: Client, world: World) -> list[tuple[str, str, str | None]]:
    resp = await client.get(
        "/api/v1/alerts",
        params={"subject_id": str(world.subject_id)},
        headers=bearer(world.admin_token),
    )
    alerts = (await expect_json(resp))["alerts"]
    return sorted(
        (a["type"], a["started_at"], a["ended_at"]) for a in alerts if a["type"] in EPISODES
    )


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def station_officer(officers: Officers, world: World) -> str:
    _, token = await officers.create("officer", world.station, parent=world.county)
    return token


async def county_admin(officers: Officers, world: World) -> str:
    _, token = await officers.create("county_admin", world.county)
    return token


# -- evaluation with a leave ---------------------------------------------------------------


async def test_a_leave_to_tianjin_is_inside_and_a_stay_past_it_is_leave_overdue(
    settings: Settings, officers: Officers
) -> None:
    tianjin = shared_data(*TIANJIN_FILE)
    async with app_at(settings, datetime(2026, 6, 1, 9, 0, tzinfo=CST)) as (client, clock):
        world = await make_world(client, officers)
        resp = await client.post(
            "/api/v1/boundaries/import?crs=gcj02&repair=true",
            data=tianjin.read_bytes(),
            headers=bearer(world.admin_token) | {"Content-Type": "application/json"},
        )
        await expect_json(resp, 201)
        leave = await apply(
            client,
            world,
            destination={"adcodes": ["120000"]},  # Tianjin: all its imported districts
            start="2026-06-02",
            end="2026-06-04",
            note="visiting my mother in hospital",
        )
        assert leave["status"] == "pending"
        assert leave["days"] == 3
        assert leave["approval_level"] == "station"
        assert leave["start"] == "2026-06-02T00:00:00+08:00"
        assert leave["end"] == "2026-06-04T23:59:59.999999+08:00"
        assert leave["decided_by"] is None
        assert leave["decided_at"] is None
        # At home before the leave: the subject's profile is compiled without it.
        await send_at(
            client, clock, world, fixes_at(datetime(2026, 6, 1, 20, 0, tzinfo=CST), 5, INSIDE)
        )
        officer = await station_officer(officers, world)
        approved = await expect_json(
            await decide(client, officer, leave["id"], "approve", note="hospital letter seen")
        )
        assert approved["status"] == "approved"
        assert approved["decided_by"] is not None
        assert approved["decided_at"] == z(clock.now())

        # In Tianjin during the leave: inside, at once (the approval dropped the profile).
        await send_at(
            client, clock, world, fixes_at(datetime(2026, 6, 3, 10, 0, tzinfo=CST), 10, IN_TIANJIN)
        )
        assert await episodes(client, world) == []
        # Still there just after its end, within the grace: nothing yet.
        await send_at(
            client, clock, world, fixes_at(datetime(2026, 6, 5, 0, 10, tzinfo=CST), 10, IN_TIANJIN)
        )
        assert await episodes(client, world) == []
        # Past the end plus the grace: leave_overdue, not left_activity_area.
        grace = client.app[POLICY].level("strict").leave_overdue_grace_s
        late = datetime(2026, 6, 5, tzinfo=CST) + timedelta(seconds=grace + 300)
        await send_at(client, clock, world, fixes_at(late, 5, IN_TIANJIN))
        assert await episodes(client, world) == [("leave_overdue", z(late), None)]
        # Home again: the episode ends.
        home = late + timedelta(hours=2)
        await send_at(client, clock, world, fixes_at(home, 5, INSIDE))
        assert await episodes(client, world) == [("leave_overdue", z(late), z(home))]
        row = await sql_row(
            client,
            "SELECT evidence FROM alerts WHERE subject_id = $1 AND type = 'leave_overdue'",
            world.subject_id,
        )
        assert row["evidence"]["leave"]["leave_id"] == leave["id"]
        # The decision is audited and announced.
        audit = await sql_row(
            client,
            "SELECT officer_id, detail FROM audit_log WHERE action = 'leave.approve' "
            "AND subject_id = $1",
            world.subject_id,
        )
        assert audit["officer_id"] == approved["decided_by"]
        assert audit["detail"]["note"] == "hospital letter seen"
        names = await sql_row(
            client,
            "SELECT array_agg(name ORDER BY id) AS names FROM events "
            "WHERE subject_id = $1 AND name LIKE 'leave.%'",
            world.subject_id,
        )
        assert names["names"] == ["leave.applied", "leave.approved"]


async def test_the_same_places_without_a_leave_are_a_departure(
    settings: Settings, officers: Officers
) -> None:
    async with app_at(settings, datetime(2026, 6, 1, 9, 0, tzinfo=CST)) as (client, clock):
        world = await make_world(client, officers)
        leave = await apply(client, world, start="2026-06-02", end="2026-06-04")
        officer = await station_officer(officers, world)
        await expect_json(await decide(client, officer, leave["id"], "reject", note="no reason"))
        start = datetime(2026, 6, 3, 10, 0, tzinfo=CST)
        await send_at(client, clock, world, fixes_at(start, 5, IN_TIANJIN))
        assert await episodes(client, world) == [("left_activity_area", z(start), None)]


# Phases of one day with a leave from 10:00 to 14:00 (instants, not dates).
DAY = datetime(2026, 6, 2, tzinfo=CST)


def phases() -> list[list[dict[str, Any]]]:
    return [
        fixes_at(DAY.replace(hour=8), 5, INSIDE),
        # Arrives 10 minutes before the leave starts: a departure, ended by the start.
        fixes_at(DAY.replace(hour=9, minute=50), 16, IN_TIANJIN),
        fixes_at(DAY.replace(hour=12), 10, IN_TIANJIN),
        # Across the end, then within the grace.
        fixes_at(DAY.replace(hour=13, minute=55), 20, IN_TIANJIN),
        # Past the end plus the grace.
        fixes_at(DAY.replace(hour=15, minute=5), 10, IN_TIANJIN),
        fixes_at(DAY.replace(hour=16), 10, INSIDE),
    ]


async def test_late_fixes_replayed_across_the_leaves_edges_give_the_same_alerts(
    settings: Settings, officers: Officers
) -> None:
    async with app_at(settings, DAY.replace(hour=7)) as (client, clock):
        county = await make_county(officers)
        worlds = [await make_world(client, officers, in_county=county) for _ in range(2)]
        admin = county.admin_token
        for world in worlds:
            leave = await apply(
                client, world, start="2026-06-02T10:00:00+08:00", end="2026-06-02T14:00:00+08:00"
            )
            assert leave["days"] == 1
            await expect_json(await decide(client, admin, leave["id"], "approve"))
        clock.set(DAY.replace(hour=17))
        parts = phases()
        for part in parts:
            await send(client, worlds[0], part)
        for i in (4, 2, 5, 0, 3, 1):  # every part but the first after a later one
            await send(client, worlds[1], parts[i])
        expected = [
            ("leave_overdue", z(DAY.replace(hour=15, minute=5)), z(DAY.replace(hour=16))),
            ("left_activity_area", z(DAY.replace(hour=9, minute=50)), z(DAY.replace(hour=10))),
        ]
        assert await episodes(client, worlds[0]) == expected
        assert await episodes(client, worlds[1]) == expected


async def test_an_approval_reaches_other_processes_within_seconds(
    client: Client, officers: Officers, settings: Settings
) -> None:
    world = await make_world(client, officers)
    leave = await apply(client, world, start="2026-06-02", end="2026-06-03")
    other = ProfileCache(client.app[POLICY])  # another process's cache
    async with client.app[POOL].acquire() as conn:
        before = await other.get_many(conn, [world.subject_id])
        assert before[world.subject_id].leaves == ()
        await expect_json(await decide(client, world.admin_token, leave["id"], "approve"))
        await asyncio.sleep(RECHECK_S + 0.2)
        after = await other.get_many(conn, [world.subject_id])
    assert [a.leave_id for a in after[world.subject_id].leaves] == [leave["id"]]


# -- approval levels and authority -----------------------------------------------------------


async def test_ten_days_need_the_county(client: Client, officers: Officers) -> None:
    world = await make_world(client, officers)
    leave = await apply(client, world, start="2026-07-01", end="2026-07-10", reason="medical")
    assert leave["days"] == 10
    assert leave["approval_level"] == "county"
    officer = await station_officer(officers, world)
    error = await expect_error(
        await decide(client, officer, leave["id"], "approve"), 403, "approval_authority"
    )
    assert error["approval_level"] == "county"
    assert (await sql_row(client, "SELECT status FROM leaves WHERE id = $1", leave["id"]))[
        "status"
    ] == "pending"
    approved = await expect_json(
        await decide(client, await county_admin(officers, world), leave["id"], "approve")
    )
    assert approved["status"] == "approved"
    # Decided once: a second decision is a conflict.
    await expect_error(await decide(client, officer, leave["id"], "reject", note="x"), 409)


async def test_forty_days_need_the_upper_level(client: Client, officers: Officers) -> None:
    world = await make_world(client, officers)
    leave = await apply(client, world, start="2026-07-01", end="2026-08-09", reason="work")
    assert leave["days"] == 40
    assert leave["approval_level"] == "upper"
    await expect_error(
        await decide(client, await county_admin(officers, world), leave["id"], "approve"),
        403,
        "approval_authority",
    )
    _, admin = await officers.create("admin", unique("p"))
    approved = await expect_json(await decide(client, admin, leave["id"], "approve"))
    assert approved["status"] == "approved"
    assert approved["approval_level"] == "upper"


async def test_cumulative_days_within_sixty_need_the_upper_level(
    client: Client, officers: Officers
) -> None:
    world = await make_world(client, officers)
    chief = await county_admin(officers, world)
    officer = await station_officer(officers, world)
    first = await apply(client, world, start="2026-05-01", end="2026-05-25")
    assert first["approval_level"] == "county"
    # A week applied for before the 25 days are approved: the station's, at first ...
    week = await apply(client, world, start="2026-06-10", end="2026-06-16")
    assert week["approval_level"] == "station"
    await expect_json(await decide(client, chief, first["id"], "approve"))
    # ... but with them approved, 32 days within 60: the level is worked out again.
    await expect_error(
        await decide(client, officer, week["id"], "approve"), 403, "approval_authority"
    )
    await expect_error(
        await decide(client, chief, week["id"], "approve"), 403, "approval_authority"
    )
    again = await apply(client, world, start="2026-06-10", end="2026-06-16")
    assert again["approval_level"] == "upper"
    approved = await expect_json(await decide(client, world.admin_token, week["id"], "approve"))
    assert approved["approval_level"] == "upper"
    # Far enough apart the days do not add up.
    later = await apply(client, world, start="2026-09-01", end="2026-09-07")
    assert later["approval_level"] == "station"


async def test_commuting_is_the_countys_for_up_to_half_a_year(
    client: Client, officers: Officers
) -> None:
    world = await make_world(client, officers)
    leave = await apply(client, world, start="2026-07-01", end="2026-12-30", commuting=True)
    assert leave["approval_level"] == "county"
    assert leave["commuting"] is True
    too_long = {"start": "2026-07-01", "end": "2027-03-01", "commuting": True}
    error = await expect_error(
        await client.post(
            "/api/v1/me/leave",
            json={"destination": {"geometry": TIANJIN_SQUARE}, "reason": "work"} | too_long,
            headers=bearer(world.device_token),
        ),
        400,
    )
    assert error["field"] == "end"


# -- the app's side: validation, listing, cancelling, reports ---------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"destination": {"adcodes": ["999999"]}}, "destination"),
        (
            {"destination": {"geometry": {"type": "Point", "coordinates": [117.2, 39.1]}}},
            "destination",
        ),
        ({"destination": {}}, "destination"),
        ({"start": "2026-07-10", "end": "2026-07-01"}, "end"),
        ({"start": "2026-07-01T10:00:00+08:00", "end": "2026-07-01T09:00:00+08:00"}, "end"),
        ({"reason": "holiday"}, "reason"),
        ({"start": "2026-07-01", "end": "2027-07-01"}, "end"),
        ({"start": "someday"}, "start"),
        ({"end": "2026-07-01T10:00:00"}, "end"),
    ],
)
async def test_a_bad_application_is_refused_naming_the_field(
    client: Client, officers: Officers, change: dict[str, Any], field: str
) -> None:
    world = await make_world(client, officers)
    body = {
        "destination": {"geometry": TIANJIN_SQUARE},
        "reason": "family",
        "start": "2026-07-01",
        "end": "2026-07-03",
    } | change
    resp = await client.post("/api/v1/me/leave", json=body, headers=bearer(world.device_token))
    error = await expect_error(resp, 400)
    assert error["field"] == field, error
    assert field in error["message"]
    mine = await expect_json(
        await client.get("/api/v1/me/leave", headers=bearer(world.device_token))
    )
    assert mine == {"leave": []}


async def test_the_subject_lists_and_cancels_its_own_pending_leave(
    client: Client, officers: Officers
) -> None:
    world = await make_world(client, officers)
    other = await make_world(client, officers)
    leave = await apply(
        client,
        world,
        destination={"geometry": TIANJIN_SQUARE, "crs": "gcj02"},
        start="2026-07-01",
        end="2026-07-02",
    )
    mine = (
        await expect_json(await client.get("/api/v1/me/leave", headers=bearer(world.device_token)))
    )["leave"]
    assert [(x["id"], x["status"], x["reason"]) for x in mine] == [
        (leave["id"], "pending", "family")
    ]
    assert mine[0]["destination"] == {"geometry": TIANJIN_SQUARE, "crs": "gcj02"}
    fence = await sql_row(
        client,
        "SELECT g.kind, g.source_crs FROM leaves l "
        "JOIN geofences g ON g.id = l.destination_fence_id WHERE l.id = $1",
        leave["id"],
    )
    assert (fence["kind"], fence["source_crs"]) == ("leave_destination", "gcj02")
    # Another subject's app cannot touch it.
    cancel = f"/api/v1/me/leave/{leave['id']}/cancel"
    await expect_error(await client.post(cancel, headers=bearer(other.device_token)), 404)
    cancelled = await expect_json(await client.post(cancel, headers=bearer(world.device_token)))
    assert cancelled["status"] == "cancelled"
    await expect_error(await client.post(cancel, headers=bearer(world.device_token)), 409)
    await expect_error(
        await decide(client, world.admin_token, leave["id"], "approve"), 409, "not_pending"
    )
    await expect_error(await client.get("/api/v1/me/leave"), 401)


async def test_reports_are_kept_with_where_they_lie(client: Client, officers: Officers) -> None:
    world = await make_world(client, officers)
    other = await make_world(client, officers)
    leave = await apply(client, world, start="2026-07-01", end="2026-07-03")
    url = f"/api/v1/me/leave/{leave['id']}/reports"
    there = {
        "kind": "arrival",
        "ts": "2026-07-01T11:00:00+08:00",
        "lat": IN_TIANJIN[1],
        "lon": IN_TIANJIN[0],
    }
    # Only an approved leave takes reports.
    await expect_error(
        await client.post(url, json=there, headers=bearer(world.device_token)), 409, "not_approved"
    )
    await expect_json(await decide(client, world.admin_token, leave["id"], "approve"))
    arrived = await expect_json(
        await client.post(url, json=there | {"accuracy_m": 20}, headers=bearer(world.device_token)),
        201,
    )
    assert (arrived["kind"], arrived["inside"], arrived["flagged"]) == ("arrival", True, False)
    # An arrival reported elsewhere is kept and flagged, never refused.
    elsewhere = there | {"lat": ELSEWHERE[1], "lon": ELSEWHERE[0], "ts": 1782900000000}
    flagged = await expect_json(
        await client.post(url, json=elsewhere, headers=bearer(world.device_token)), 201
    )
    assert (flagged["inside"], flagged["flagged"]) == (False, True)
    back = there | {"kind": "return", "ts": "2026-07-03T20:00:00+08:00"}
    back |= {"lat": INSIDE[1], "lon": INSIDE[0]}
    returned = await expect_json(
        await client.post(url, json=back, headers=bearer(world.device_token)), 201
    )
    assert (returned["inside"], returned["flagged"]) == (False, False)
    await expect_error(
        await client.post(url, json=there | {"kind": "lunch"}, headers=bearer(world.device_token)),
        400,
    )
    await expect_error(await client.post(url, json=there, headers=bearer(other.device_token)), 404)
    # Officers read them with the leave; the read is audited.
    read = await expect_json(
        await client.get(
            f"/api/v1/leave/{leave['id']}",
            params={"purpose": "verify arrival"},
            headers=bearer(world.admin_token),
        )
    )
    assert [r["kind"] for r in read["reports"]] == ["arrival", "arrival", "return"]
    assert [r["flagged"] for r in read["reports"]] == [False, True, False]
    audit = await sql_row(
        client,
        "SELECT purpose FROM audit_log WHERE action = 'leave.read' AND subject_id = $1",
        world.subject_id,
    )
    assert audit["purpose"] == "verify arrival"


# -- officers: listing, jurisdiction, rejection ------------------------------------------------


async def test_officers_see_and_decide_only_their_jurisdictions_leave(
    client: Client, officers: Officers
) -> None:
    county: County = await make_county(officers)
    world = await make_world(client, officers, in_county=county)
    leave = await apply(client, world, start="2026-07-01", end="2026-07-02")
    chief = await county_admin(officers, world)
    listed = await expect_json(
        await client.get(
            "/api/v1/leave",
            params={"status": "pending", "subject_id": str(world.subject_id)},
            headers=bearer(chief),
        )
    )
    assert [x["id"] for x in listed["leave"]] == [leave["id"]]
    # Another county's officers neither see nor decide it.
    stranger_world = await make_world(client, officers)
    stranger = await county_admin(officers, stranger_world)
    listed = await expect_json(await client.get("/api/v1/leave", headers=bearer(stranger)))
    assert leave["id"] not in [x["id"] for x in listed["leave"]]
    await expect_error(await decide(client, stranger, leave["id"], "approve"), 404)
    await expect_error(await decide(client, stranger, leave["id"], "reject", note="no"), 404)
    await expect_error(
        await client.get(f"/api/v1/leave/{leave['id']}", headers=bearer(stranger)), 404
    )
    await expect_error(await client.get("/api/v1/leave?status=maybe", headers=bearer(chief)), 400)
    # An auditor reads but does not decide.
    _, auditor = await officers.create("auditor", county.code)
    await expect_json(await client.get("/api/v1/leave", headers=bearer(auditor)))
    await expect_error(await decide(client, auditor, leave["id"], "approve"), 403, "forbidden")
    # A rejection says why.
    await expect_error(await decide(client, chief, leave["id"], "reject"), 400)
    await expect_error(await decide(client, chief, leave["id"], "reject", note="  "), 400)
    rejected = await expect_json(
        await decide(client, chief, leave["id"], "reject", note="no document")
    )
    assert rejected["status"] == "rejected"
    assert rejected["decision_note"] == "no document"
    audit = await sql_row(
        client,
        "SELECT detail FROM audit_log WHERE action = 'leave.reject' AND subject_id = $1",
        world.subject_id,
    )
    assert audit["detail"]["note"] == "no document"
    event = await sql_row(
        client,
        "SELECT data FROM events WHERE name = 'leave.rejected' AND subject_id = $1",
        world.subject_id,
    )
    assert event["data"]["leave_id"] == leave["id"]
    mine = (
        await expect_json(await client.get("/api/v1/me/leave", headers=bearer(world.device_token)))
    )["leave"]
    assert [(x["status"], x["decided_by"] is not None) for x in mine] == [("rejected", True)]
