"""Check-ins through HTTP on a moved clock: windows per level and time zone, draws an auditor
re-derives, every answer outcome of the contract, reviews, per-subject schedules,
on-demand challenges, integrity signals and jurisdiction."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from correction_monitor.domain.checkins import DrawInputs, draw_times
from correction_monitor.domain.clock import ManualClock
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.checkins import LayOutCheckins
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import CLOCK, SERVICES
from geofences.crs import wgs84_to_gcj02
from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import (
    INSIDE,
    OUTSIDE,
    World,
    alerts_of,
    expect_error,
    expect_json,
    make_county,
    make_world,
    send,
    sql_row,
)

pytestmark = pytest.mark.e2e

# Monday 7 December 2026, 08:00 in Beijing.
MONDAY_8AM_BEIJING = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
PHOTO = "ab" * 32


@contextlib.asynccontextmanager
async def clocked(settings: Settings, start: datetime) -> AsyncIterator[tuple[Any, ManualClock]]:
    clock = ManualClock(start)
    app = init_app(settings, clock=clock)
    async with TestClient[Any, Any](TestServer(app)) as client:
        yield client, clock


async def my_checkins(client: Any, world: World, **params: str) -> list[dict[str, Any]]:
    resp = await client.get(
        "/api/v1/me/checkins", params=params, headers=bearer(world.device_token)
    )
    body = await expect_json(resp)
    checkins: list[dict[str, Any]] = body["checkins"]
    return checkins


async def officer_checkins(
    client: Any, world: World, token: str | None = None, **params: str
) -> list[dict[str, Any]]:
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}/checkins",
        params=params,
        headers=bearer(token or world.admin_token),
    )
    body = await expect_json(resp)
    checkins: list[dict[str, Any]] = body["checkins"]
    return checkins


async def challenge(client: Any, world: World, within_s: int = 1800) -> dict[str, Any]:
    # A subject has one challenge opening at any one instant: let the clock tick.
    client.app[CLOCK].advance(1)
    resp = await client.post(
        f"/api/v1/subjects/{world.subject_id}/challenges",
        json={"answer_within_s": within_s},
        headers=bearer(world.admin_token),
    )
    body: dict[str, Any] = await expect_json(resp, 201)
    return body


async def answer(client: Any, world: World, checkin_id: int, **fields: Any) -> Any:
    body = {
        "ts": iso(client.app[CLOCK].now()),
        "lat": INSIDE[1],
        "lon": INSIDE[0],
        "accuracy_m": 10,
        "face": {"score": 0.95, "liveness": True, "vendor": "test"},
    } | fields
    body = {k: v for k, v in body.items() if v is not None}
    return await client.post(
        f"/api/v1/me/checkins/{checkin_id}", json=body, headers=bearer(world.device_token)
    )


def scheduled(checkins: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["opens_at"], c["closes_at"]) for c in checkins if c["kind"] == "scheduled"]


async def test_a_strict_subject_has_two_windows_a_day_and_a_re_derivable_daily_challenge(
    settings: Settings, officers: Officers
) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING) as (client, clock):
        world = await make_world(client, officers, level="strict")
        mine = await my_checkins(client, world)
        assert scheduled(mine) == [
            ("2026-12-07T01:00:00Z", "2026-12-07T04:00:00Z"),
            ("2026-12-07T11:00:00Z", "2026-12-07T14:00:00Z"),
            ("2026-12-08T01:00:00Z", "2026-12-08T04:00:00Z"),
            ("2026-12-08T11:00:00Z", "2026-12-08T14:00:00Z"),
        ]
        assert {c["status"] for c in mine} == {"pending"}
        assert all(c["answered_at"] is None and c["reasons"] == [] for c in mine)
        # Drawn challenges are not told to the app before they open...
        assert [c for c in mine if c["kind"] == "challenge"] == []
        # ...but officers see them: one a day, in waking hours (08:00–21:00 Beijing).
        theirs = await officer_checkins(client, world)
        drawn = [c for c in theirs if c["kind"] == "challenge"]
        assert len(drawn) >= 2
        for c in drawn:
            opens = datetime.fromisoformat(c["opens_at"].replace("Z", "+00:00"))
            local_hour = (opens.hour + 8) % 24
            assert 8 <= local_hour < 21, c
            assert c["draw_id"] is not None
        # The auditor's re-derivation from the stored draws.
        _, auditor = await officers.create("auditor", world.county)
        resp = await client.get(
            f"/api/v1/subjects/{world.subject_id}/checkin-draws", headers=bearer(auditor)
        )
        draws = (await expect_json(resp))["draws"]
        assert {d["period"] for d in draws} == {"day"}
        assert all(d["algorithm"] == "mt19937-uniform-v1" for d in draws)
        for d in draws:
            again = draw_times(d["seed"], DrawInputs.from_json(d["inputs"]))
            assert [iso(t) for t in again] == d["times"]
        every = await officer_checkins(client, world, to="2026-12-12T00:00:00Z")
        assert sorted(t for d in draws for t in d["times"]) == sorted(
            c["opens_at"] for c in every if c["kind"] == "challenge"
        )
        audit = await sql_row(
            client,
            "SELECT count(*) AS n FROM audit_log WHERE subject_id = $1 AND action = $2",
            world.subject_id,
            "checkin.draws.read",
        )
        assert audit["n"] == 1
        # At 09:30 the morning window is open.
        clock.set(MONDAY_8AM_BEIJING + timedelta(minutes=90))
        mine = await my_checkins(client, world)
        assert [c["status"] for c in mine if c["kind"] == "scheduled"][:2] == ["open", "pending"]
        # A drawn challenge, once open, shows in the app and is announced by a message.
        first = min(drawn, key=lambda c: c["opens_at"])
        clock.set(datetime.fromisoformat(first["opens_at"].replace("Z", "+00:00")))
        await client.app[SERVICES].timers.fire_due()
        mine = await my_checkins(client, world)
        assert first["id"] in [c["id"] for c in mine if c["status"] == "open"]
        message = await sql_row(
            client,
            "SELECT kind, data FROM subject_messages WHERE subject_id = $1 AND dedupe_key = $2",
            world.subject_id,
            f"challenge:{first['id']}",
        )
        assert message is not None
        assert message["kind"] == "challenge"


async def test_an_urumqi_station_lays_windows_out_in_its_own_time(
    settings: Settings, officers: Officers
) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING) as (client, _):
        world = await make_world(client, officers, level="normal", station_timezone="Asia/Urumqi")
        mine = await my_checkins(client, world)
        # 19:00–22:00 in Urumqi is 13:00–16:00 UTC (UTC+6, no daylight saving).
        assert scheduled(mine) == [
            ("2026-12-07T13:00:00Z", "2026-12-07T16:00:00Z"),
            ("2026-12-08T13:00:00Z", "2026-12-08T16:00:00Z"),
        ]


async def test_each_answer_outcome_of_the_contract(settings: Settings, officers: Officers) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING + timedelta(minutes=90)) as (client, clock):
        world = await make_world(client, officers, level="strict")

        async def outcome(within_s: int = 1800, **fields: Any) -> dict[str, Any]:
            c = await challenge(client, world, within_s)
            body: dict[str, Any] = await expect_json(await answer(client, world, c["id"], **fields))
            return body

        passed = await outcome()
        assert (passed["status"], passed["reasons"]) == ("passed", [])
        assert passed["answered_at"] == iso(clock.now())
        assert (await outcome(face=None))["status"] == "passed"
        lon, lat = (float(v) for v in wgs84_to_gcj02(*INSIDE))
        assert (await outcome(lat=lat, lon=lon, crs="gcj02"))["status"] == "passed"
        mock = await outcome(mock=True)
        assert (mock["status"], mock["reasons"]) == ("failed", ["mock_location"])
        outside = await outcome(lat=OUTSIDE[1], lon=OUTSIDE[0])
        assert (outside["status"], outside["reasons"]) == ("failed", ["outside_area"])
        # A disc reaching back over the boundary is not wholly outside.
        near = await outcome(lat=39.9, lon=116.405, accuracy_m=2000)
        assert near["status"] == "passed"
        low = await outcome(face={"score": 0.5, "liveness": True})
        assert (low["status"], low["reasons"]) == ("needs_review", ["face_score_low"])
        dead = await outcome(face={"score": 0.9, "liveness": False})
        assert (dead["status"], dead["reasons"]) == ("needs_review", ["liveness_failed"])
        photo = await outcome(face=None, photo_sha256=PHOTO.upper())
        assert (photo["status"], photo["reasons"]) == ("needs_review", ["photo_only"])
        replayed = await outcome(photo_sha256=PHOTO)
        assert (replayed["status"], replayed["reasons"]) == ("failed", ["replayed_media"])
        many = await outcome(
            mock=True, lat=OUTSIDE[1], lon=OUTSIDE[0], face=None, photo_sha256=PHOTO
        )
        assert many["reasons"] == ["mock_location", "outside_area", "replayed_media", "photo_only"]
        # Late: after closes_at by the server's clock.
        c = await challenge(client, world, 60)
        clock.advance(61)
        late = await expect_json(await answer(client, world, c["id"]))
        assert (late["status"], late["reasons"]) == ("failed", ["late"])
        # The replayed photo is a device-integrity signal.
        integrity = await alerts_of(client, world, type="device_integrity")
        assert [a["evidence"]["rule"] for a in integrity] == ["replayed_media"]
        assert integrity[0]["evidence"]["count"] == 2
        stored = await sql_row(
            client,
            "SELECT answer, photo_sha256, device_id FROM checkins WHERE id = $1",
            photo["id"],
        )
        assert stored["photo_sha256"] == PHOTO
        assert stored["device_id"] == world.device_id
        assert stored["answer"]["face"] is None


async def test_answering_twice_early_or_someone_elses_is_refused(
    settings: Settings, officers: Officers
) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING + timedelta(minutes=90)) as (client, clock):
        county = await make_county(officers)
        world = await make_world(client, officers, in_county=county)
        other = await make_world(client, officers, in_county=county)
        mine = await my_checkins(client, world)
        morning, evening = [c for c in mine if c["kind"] == "scheduled"][:2]
        assert morning["status"] == "open"
        await expect_error(await answer(client, world, evening["id"]), 409, "not_open")
        await expect_error(await answer(client, other, morning["id"]), 404)
        await expect_error(await answer(client, world, 2**31 - 1), 404)
        resp = await answer(client, world, morning["id"], photo_sha256="xyz")
        error = await expect_error(resp, 400, "invalid_request")
        assert "photo_sha256" in error["message"]
        error = await expect_error(await answer(client, world, morning["id"], lat=91), 400)
        assert "lat" in error["message"]
        error = await expect_error(await answer(client, world, morning["id"], ts="soon"), 400)
        assert "ts" in error["message"]
        first = await expect_json(await answer(client, world, morning["id"]))
        assert first["status"] == "passed"
        await expect_error(await answer(client, world, morning["id"]), 409, "already_answered")
        # A window the deadline sweep closed as missed may still be answered: failed, late.
        clock.set(datetime(2026, 12, 7, 14, 0, 30, tzinfo=UTC))
        await sql_row(
            client,
            "UPDATE checkins SET status = 'missed' WHERE id = $1 RETURNING id",
            evening["id"],
        )
        late = await expect_json(await answer(client, world, evening["id"]))
        assert (late["status"], late["reasons"]) == ("failed", ["late"])


async def test_an_officer_reviews_a_check_in_that_needs_review(
    settings: Settings, officers: Officers
) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING + timedelta(minutes=90)) as (client, _):
        world = await make_world(client, officers)
        c = await challenge(client, world)
        await expect_json(await answer(client, world, c["id"], face=None, photo_sha256=PHOTO))
        _, auditor = await officers.create("auditor", world.county)
        resp = await client.post(
            f"/api/v1/checkins/{c['id']}/review",
            json={"decision": "passed"},
            headers=bearer(auditor),
        )
        await expect_error(resp, 403)
        resp = await client.post(
            f"/api/v1/checkins/{c['id']}/review",
            json={"decision": "maybe"},
            headers=bearer(world.admin_token),
        )
        assert "decision" in (await expect_error(resp, 400))["message"]
        resp = await client.post(
            f"/api/v1/checkins/{c['id']}/review",
            json={"decision": "passed", "note": "视频通话核实本人"},
            headers=bearer(world.admin_token),
        )
        reviewed = await expect_json(resp)
        assert reviewed["status"] == "passed"
        assert reviewed["reasons"] == ["photo_only"]
        assert reviewed["review_note"] == "视频通话核实本人"
        resp = await client.post(
            f"/api/v1/checkins/{c['id']}/review",
            json={"decision": "failed"},
            headers=bearer(world.admin_token),
        )
        await expect_error(resp, 409)
        audit = await sql_row(
            client,
            "SELECT officer_id, detail FROM audit_log WHERE action = 'checkin.review' "
            "AND subject_id = $1",
            world.subject_id,
        )
        assert audit["detail"]["decision"] == "passed"
        event = await sql_row(
            client,
            "SELECT data FROM events WHERE name = 'checkin.reviewed' AND subject_id = $1",
            world.subject_id,
        )
        assert event["data"]["checkin_id"] == c["id"]


async def test_a_subjects_own_schedule_replaces_the_levels_from_now_on(
    settings: Settings, officers: Officers
) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING + timedelta(minutes=90)) as (client, _):
        world = await make_world(client, officers, level="strict")
        before = scheduled(await my_checkins(client, world))
        assert before[:2] == [
            ("2026-12-07T01:00:00Z", "2026-12-07T04:00:00Z"),
            ("2026-12-07T11:00:00Z", "2026-12-07T14:00:00Z"),
        ]
        url = f"/api/v1/subjects/{world.subject_id}/checkin-schedule"
        h = bearer(world.admin_token)
        for bad, field in (
            ({"windows": [{"days": [0], "start": "14:00", "end": "15:00"}]}, "days"),
            ({"windows": [{"days": [1], "start": "25:00", "end": "15:00"}]}, "start"),
            ({"windows": [{"days": [1], "start": "14:00"}]}, "end"),
            ({"windows": "daily"}, "windows"),
        ):
            error = await expect_error(await client.put(url, json=bad, headers=h), 400)
            assert field in error["message"], error
        own = {"windows": [{"days": [1, 2, 3, 4, 5, 6, 7], "start": "14:00", "end": "15:00"}]}
        resp = await client.put(url, json=own, headers=h)
        assert (await expect_json(resp))["windows"] == own["windows"]
        after = scheduled(await my_checkins(client, world))
        # The open morning window stays; the evening one (not yet open) is replaced.
        assert after == [
            ("2026-12-07T01:00:00Z", "2026-12-07T04:00:00Z"),
            ("2026-12-07T06:00:00Z", "2026-12-07T07:00:00Z"),
            ("2026-12-08T06:00:00Z", "2026-12-08T07:00:00Z"),
        ]
        resp = await client.delete(url, headers=h)
        assert resp.status == 204
        assert scheduled(await my_checkins(client, world)) == before
        audit = await sql_row(
            client,
            "SELECT count(*) AS n FROM audit_log WHERE subject_id = $1 "
            "AND action IN ('checkin_schedule.set', 'checkin_schedule.clear')",
            world.subject_id,
        )
        assert audit["n"] == 2


async def test_an_on_demand_challenge_opens_now_with_a_message(
    settings: Settings, officers: Officers
) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING) as (client, clock):
        world = await make_world(client, officers, level="lenient")
        for bad in ({"answer_within_s": 59}, {"answer_within_s": 86401}, {}):
            resp = await client.post(
                f"/api/v1/subjects/{world.subject_id}/challenges",
                json=bad,
                headers=bearer(world.admin_token),
            )
            assert "answer_within_s" in (await expect_error(resp, 400))["message"]
        c = await challenge(client, world, 600)
        assert c["kind"] == "challenge"
        assert c["status"] == "open"
        assert c["opens_at"] == iso(clock.now())
        assert c["closes_at"] == iso(clock.now() + timedelta(seconds=600))
        mine = await my_checkins(client, world)
        assert c["id"] in [m["id"] for m in mine]
        message = await sql_row(
            client,
            "SELECT kind, data FROM subject_messages WHERE subject_id = $1 AND dedupe_key = $2",
            world.subject_id,
            f"challenge:{c['id']}",
        )
        assert message["kind"] == "challenge"
        assert message["data"]["checkin_id"] == c["id"]


async def test_jurisdiction_and_roles(settings: Settings, officers: Officers) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING) as (client, _):
        world = await make_world(client, officers)
        _, stranger = await officers.create("county_admin", unique("c"))
        _, auditor = await officers.create("auditor", world.county)
        sid = world.subject_id
        for method, path, body in (
            ("GET", f"/api/v1/subjects/{sid}/checkins", None),
            ("GET", f"/api/v1/subjects/{sid}/checkin-draws", None),
            ("POST", f"/api/v1/subjects/{sid}/challenges", {"answer_within_s": 600}),
            ("PUT", f"/api/v1/subjects/{sid}/checkin-schedule", {"windows": []}),
            ("DELETE", f"/api/v1/subjects/{sid}/checkin-schedule", None),
        ):
            resp = await client.request(method, path, json=body, headers=bearer(stranger))
            await expect_error(resp, 404)
        assert await officer_checkins(client, world, auditor)
        resp = await client.post(
            f"/api/v1/subjects/{sid}/challenges",
            json={"answer_within_s": 600},
            headers=bearer(auditor),
        )
        await expect_error(resp, 403)
        c = await challenge(client, world)
        resp = await client.post(
            f"/api/v1/checkins/{c['id']}/review",
            json={"decision": "passed"},
            headers=bearer(stranger),
        )
        await expect_error(resp, 404)
        resp = await client.get("/api/v1/me/checkins", headers=bearer("not-a-token"))
        await expect_error(resp, 401)


async def test_a_failed_check_in_while_the_phone_lies_still_is_an_integrity_signal(
    settings: Settings, officers: Officers
) -> None:
    now = MONDAY_8AM_BEIJING + timedelta(hours=5)
    async with clocked(settings, now) as (client, _):
        world = await make_world(client, officers, level="strict")
        start = now - timedelta(hours=4) + timedelta(minutes=5)
        fixes = [
            {
                "id": f"s{i}",
                "ts": iso(start + timedelta(minutes=10 * i)),
                "lat": INSIDE[1],
                "lon": INSIDE[0],
                "accuracy_m": 10,
            }
            for i in range(24)
        ]
        await send(client, world, fixes)
        ok = await challenge(client, world)
        assert (await expect_json(await answer(client, world, ok["id"])))["status"] == "passed"
        assert await alerts_of(client, world, type="device_integrity") == []
        c = await challenge(client, world)
        body = await expect_json(
            await answer(client, world, c["id"], face={"score": 0.3, "liveness": True})
        )
        assert body["status"] == "needs_review"
        assert "lat" not in body
        (alert,) = await alerts_of(client, world, type="device_integrity")
        evidence = alert["evidence"]
        assert evidence["rule"] == "stationary_checkin"
        assert evidence["first"][0]["checkin_id"] == c["id"]
        assert evidence["first"][0]["fixes"] == 24


async def test_an_answer_inside_an_approved_leave_destination_is_not_outside(
    settings: Settings, officers: Officers
) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING + timedelta(minutes=90)) as (client, _):
        world = await make_world(client, officers, level="normal")
        lon, lat = OUTSIDE
        destination = {
            "type": "Polygon",
            "coordinates": [
                [
                    [lon - 0.05, lat - 0.05],
                    [lon + 0.05, lat - 0.05],
                    [lon + 0.05, lat + 0.05],
                    [lon - 0.05, lat + 0.05],
                    [lon - 0.05, lat - 0.05],
                ]
            ],
        }
        resp = await client.post(
            "/api/v1/me/leave",
            json={
                "destination": {"geometry": destination},
                "reason": "medical",
                "start": "2026-12-07",
                "end": "2026-12-08",
            },
            headers=bearer(world.device_token),
        )
        leave = await expect_json(resp, 201)
        resp = await client.post(
            f"/api/v1/leave/{leave['id']}/approve", json={}, headers=bearer(world.admin_token)
        )
        await expect_json(resp)
        c = await challenge(client, world)
        body = await expect_json(await answer(client, world, c["id"], lat=lat, lon=lon))
        assert (body["status"], body["reasons"]) == ("passed", [])
        # The leave's days have no scheduled window (policy skip_on_leave).
        await client.app[SERVICES].consumers.run_all()
        windows = scheduled(await my_checkins(client, world))
        assert windows == []


async def test_the_layout_job_lays_out_new_subjects_and_a_level_change_relays_them(
    settings: Settings, officers: Officers
) -> None:
    async with clocked(settings, MONDAY_8AM_BEIJING + timedelta(minutes=90)) as (client, clock):
        world = await make_world(client, officers, level="strict")
        services = client.app[SERVICES]
        assert await services.handle(LayOutCheckins(clock.now())) >= 1
        laid = await sql_row(
            client,
            "SELECT laid_until FROM checkin_layouts WHERE subject_id = $1",
            world.subject_id,
        )
        assert laid["laid_until"] == clock.now() + timedelta(days=2)
        rows = await sql_row(
            client,
            "SELECT count(*) FILTER (WHERE kind = 'scheduled') AS windows, "
            "count(*) FILTER (WHERE kind = 'challenge') AS challenges "
            "FROM checkins WHERE subject_id = $1 AND status = 'pending'",
            world.subject_id,
        )
        assert rows["windows"] == 5  # the open morning window, then four within two days
        assert rows["challenges"] >= 2
        # Laid out already: the next run leaves this subject alone.
        await services.handle(LayOutCheckins(clock.now()))
        again = await sql_row(
            client, "SELECT count(*) AS n FROM checkins WHERE subject_id = $1", world.subject_id
        )
        assert again["n"] == rows["windows"] + rows["challenges"]
        # Down to 普管: windows not yet open follow the new level (19:00 only), the daily
        # draws' challenges not yet open give way to a weekly draw.
        resp = await client.patch(
            f"/api/v1/subjects/{world.subject_id}",
            json={"supervision_level": "normal", "reason": "six clean months"},
            headers=bearer(world.admin_token),
        )
        await expect_json(resp)
        await services.consumers.run_all()
        theirs = await officer_checkins(client, world)
        assert scheduled(theirs) == [
            ("2026-12-07T01:00:00Z", "2026-12-07T04:00:00Z"),
            ("2026-12-07T11:00:00Z", "2026-12-07T14:00:00Z"),
            ("2026-12-08T11:00:00Z", "2026-12-08T14:00:00Z"),
        ]
        periods = await sql_row(
            client,
            "SELECT array_agg(DISTINCT period ORDER BY period) AS p FROM checkin_draws "
            "WHERE subject_id = $1",
            world.subject_id,
        )
        assert periods["p"] == ["day", "week"]
        future_daily = await sql_row(
            client,
            "SELECT count(*) AS n FROM checkins c JOIN checkin_draws d ON d.id = c.draw_id "
            "WHERE c.subject_id = $1 AND d.period = 'day' AND c.status = 'pending' "
            "AND c.opens_at > $2",
            world.subject_id,
            clock.now(),
        )
        assert future_daily["n"] == 0
