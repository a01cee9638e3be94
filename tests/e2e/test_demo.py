"""The newcomer's demo: its drawn county, idempotent seeding over HTTP, and simulated phones."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pypdf import PdfReader
from shapely.geometry import Point, shape

from correction_monitor import demo
from correction_monitor.domain.clock import ManualClock
from correction_monitor.policy import load_policy
from correction_monitor.service.tasks import SweepTaskEscalations
from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from correction_monitor.web.keys import SERVICES
from tests.conftest import REPO_ROOT, bearer, unique
from tests.e2e.procs import SERVE, free_port

pytestmark = pytest.mark.e2e

# Metres per degree near the demo county, to turn shapely's distances (degrees) into metres:
# the east-west factor is the smaller, so "farther than" checks use it and never overstate,
# and "nearer than" checks use the north-south one.
M_PER_DEG_LAT = 111_195.0
M_PER_DEG_LON = M_PER_DEG_LAT * 0.8813  # cos 28.2°


def _api(client: TestClient[Any, Any]) -> demo.DemoApi:
    return demo.DemoApi(client.session, str(client.make_url("/")))


def _plan(key: str) -> demo.PhonePlan:
    return next(p for p in demo.PHONES if p.key == key)


def _point(east_m: float, north_m: float) -> Point:
    return Point(*demo.offset_m(east_m, north_m))


def _county() -> Any:
    return shape(demo.county_boundary())


class SimClock:
    """A clock that only moves when the phones sleep: minutes of phones in a moment."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_drawn_county_is_valid_and_fits_the_stories() -> None:
    county = _county()
    assert county.is_valid
    assert len(demo.county_boundary()["coordinates"][0]) == demo.BOUNDARY_VERTICES + 1
    assert demo.county_boundary() == demo.county_boundary()  # deterministic
    area_km2 = county.area * M_PER_DEG_LAT * M_PER_DEG_LON / 1e6
    assert 400 < area_km2 < 1200  # a county, not a town or a province

    boundary = county.boundary
    for plan in demo.PHONES:
        home = _point(*plan.home_m)
        assert county.contains(home), plan.key
        # Everyone but the wanderer stays well inside (route sampled every 15 s, noise ≤ 20 m).
        if plan.key != "wanderer":
            for t in range(0, int(plan.route[-1][0]) + 1, 15):
                where = _point(*plan.position_m(t))
                assert boundary.distance(where) * M_PER_DEG_LON > 500, (plan.key, t)

    wanderer = _plan("wanderer")
    home = _point(*wanderer.home_m)
    assert boundary.distance(home) * M_PER_DEG_LON > 100  # a 30 m disc is wholly inside
    far = _point(*wanderer.position_m(400.0))
    assert not county.contains(far)
    assert boundary.distance(far) * M_PER_DEG_LON > 1000  # wholly outside, by far

    walker = _plan("walker")
    victim = _point(*demo.VICTIM_M)
    stay = _point(*walker.position_m(400.0))
    assert victim.distance(stay) * M_PER_DEG_LAT < demo.VICTIM_RADIUS_M - 60
    assert victim.distance(home) * M_PER_DEG_LON > demo.VICTIM_RADIUS_M
    assert _point(*walker.home_m).distance(victim) * M_PER_DEG_LON > 600


async def test_seeding_is_idempotent_and_keeps_tokens_private(
    client: TestClient[Any, Any], database_url: str, tmp_path: Path
) -> None:
    api = _api(client)
    first = await demo.seed(api, database_url, tmp_path)
    assert first.created, "a fresh database needs the demo records"
    assert len(first.subjects) == len(demo.PHONES)

    again = await demo.seed(api, database_url, tmp_path)
    assert again.created == ()
    assert again.area_id == first.area_id
    assert dict(again.zone_ids) == dict(first.zone_ids)
    assert [(s.subject_id, s.device_id, s.token) for s in again.subjects] == [
        (s.subject_id, s.device_id, s.token) for s in first.subjects
    ]
    devices_file = tmp_path / demo.DEVICES_FILE
    assert stat.S_IMODE(devices_file.stat().st_mode) == 0o600

    for login in demo.LOGINS:
        assert await api.login(login.username, login.password), login.username
    h = bearer(first.admin_token)
    resp = await client.get("/api/v1/subjects", params={"limit": "1000"}, headers=h)
    names = [(s["name"], s["org_unit"]) for s in (await resp.json())["subjects"]]
    for plan in demo.PHONES:
        assert names.count((plan.name, plan.station)) == 1
    resp = await client.get("/api/v1/geofences", headers=h)
    fences = [f["name"] for f in (await resp.json())["geofences"]]
    for name in (demo.ACTIVITY_AREA, demo.SCHOOL_ZONE, demo.VICTIM_ZONE):
        assert fences.count(name) == 1
    resp = await client.get(f"/api/v1/geofences/{first.area_id}", headers=h)
    assert (await resp.json())["adcodes"] == [demo.COUNTY_ADCODE]

    # A lost tokens file (another data dir) retires the old phones and enrols new ones.
    other = tmp_path / "elsewhere"
    moved = await demo.seed(api, database_url, other)
    assert len(moved.created) == len(demo.PHONES)
    assert {s.token for s in moved.subjects}.isdisjoint(s.token for s in first.subjects)
    resp = await client.get(f"/api/v1/subjects/{first.subjects[0].subject_id}/devices", headers=h)
    active = [d for d in (await resp.json())["devices"] if d["revoked_at"] is None]
    assert [d["device_id"] for d in active] == [moved.subjects[0].device_id]


async def test_simulated_phones_are_accepted_and_misbehave_as_told(
    client: TestClient[Any, Any], database_url: str, tmp_path: Path
) -> None:
    api = _api(client)
    world = await demo.seed(api, database_url, tmp_path)
    by_key = {s.plan.key: s for s in world.subjects}
    h = bearer(world.admin_token)
    names = {s.subject_id: s.plan.name for s in world.subjects}
    feed = io.StringIO()
    follower = asyncio.create_task(
        demo.follow_alerts(api, demo.LOGINS[0], names, feed, interval_s=0.1)
    )

    # 26 ticks of 15 s = 6.5 simulated minutes, ending well before the server's now.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    clock = SimClock(start)
    stats = await demo.run_phones(
        api, world.subjects, tick_s=15.0, ticks=26, clock=clock, sleep=clock.sleep
    )
    assert stats.ticks == 26
    assert stats.failed_requests == 0
    assert stats.rejected == 0
    assert stats.duplicates == 0
    assert stats.accepted == stats.sent
    assert stats.by_phone["wanderer"] == 26
    assert stats.by_phone["silent"] == 8  # ticks at 0..105 s, then silence
    assert stats.by_phone["lenient-1"] == 2  # ticks 0 and 20

    async def alerts_of(key: str) -> list[Any]:
        params = {"subject_id": str(by_key[key].subject_id)}
        resp = await client.get("/api/v1/alerts", params=params, headers=h)
        assert resp.status == 200
        # Lost-contact alerts depend on the server clock (and other tests sweep with a clock
        # set far ahead); this test is about what the phones' positions cause.
        found: list[Any] = [a for a in (await resp.json())["alerts"] if a["type"] != "lost_contact"]
        return found

    left = await alerts_of("wanderer")
    assert [a["type"] for a in left] == ["left_activity_area"]
    assert left[0]["evidence"]["fence_id"] == world.area_id
    assert left[0]["status"] == "open"
    entered = await alerts_of("walker")
    assert [a["type"] for a in entered] == ["entered_exclusion_zone"]
    assert entered[0]["evidence"]["fence_id"] == world.zone_ids[demo.VICTIM_ZONE]
    for key in ("silent", "curfew", "spiker", "errands", "lenient-1", "lenient-2"):
        assert await alerts_of(key) == [], key

    resp = await client.get(
        f"/api/v1/subjects/{by_key['spiker'].subject_id}/track",
        params={
            "from": start.isoformat(),
            "to": (clock.now + timedelta(minutes=1)).isoformat(),
            "purpose": "demo test",
        },
        headers=h,
    )
    flags = [f["properties"]["flags"] for f in (await resp.json())["features"]]
    assert len(flags) == 26
    assert sum("spike" in f for f in flags) == 1  # tick 10, decided by tick 11

    # Resending what the phones already sent counts only duplicates.
    replay = demo.fixes_for_tick(by_key["wanderer"].plan, 0, 0.0, start)
    resp = await client.post(
        "/api/v1/fixes", json={"fixes": replay}, headers=bearer(by_key["wanderer"].token)
    )
    assert await resp.json() == {"accepted": 0, "duplicates": 1, "rejected": []}

    try:
        for _ in range(50):
            # Other tests' alerts share the database: wait for this test's own subjects.
            printed = feed.getvalue()
            if "entered_exclusion_zone 王某" in printed and "left_activity_area 张某" in printed:
                break
            await asyncio.sleep(0.1)
        printed = feed.getvalue()
        assert "[alert open] #" in printed
        assert "left_activity_area 张某" in printed
        assert "entered_exclusion_zone 王某" in printed, printed
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


def test_phone_plan_routes_repeat_and_silence_holds() -> None:
    wanderer = _plan("wanderer")
    period = wanderer.route[-1][0]
    assert wanderer.position_m(100.0) == wanderer.position_m(100.0 + period)
    assert wanderer.position_m(0.0) == wanderer.home_m
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    silent = _plan("silent")
    assert demo.fixes_for_tick(silent, 7, 105.0, now)
    assert demo.fixes_for_tick(silent, 8, 120.0, now) == []
    lenient = _plan("lenient-1")
    assert [t for t in range(41) if demo.fixes_for_tick(lenient, t, t * 15.0, now)] == [0, 20, 40]
    fix = demo.fixes_for_tick(replace(wanderer, key="x"), 3, 45.0, now)[0]
    assert 5.0 <= fix["accuracy_m"] <= 30.0
    assert fix == demo.fixes_for_tick(replace(wanderer, key="x"), 3, 45.0, now)[0]


class _Output:
    """Everything a child process prints, gathered as it comes (the pipe never fills)."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.text = ""
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._gather(stream))

    async def _gather(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.text += line.decode(errors="replace")
            self.arrived.set()

    async def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        async def seen() -> None:
            while text not in self.text:
                assert not self.task.done(), f"the process ended:\n{self.text[-3000:]}"
                self.arrived.clear()
                await self.arrived.wait()

        try:
            await asyncio.wait_for(seen(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"{text!r} never printed:\n{self.text[-3000:]}") from None


async def test_the_demo_serves_through_the_ingest_front_as_serve_does(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """``correction-monitor demo`` answers phones' native uploads at the ingest front, as
    ``serve`` does: the front's answers carry no ``Server`` header, aiohttp's do. Stopping it
    ends an open live feed at once rather than waiting for it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")} | {
        "CM_DATABASE_URL": database_url,
        "CM_REDIS_URL": redis_url,
        "CM_REDIS_PREFIX": f"{redis_prefix}demo:",
        "CM_RUN_SCHEDULER": "false",
        "CM_DATA_DIR": str(tmp_path / "data"),
        "CM_HTTP_HOST": "127.0.0.1",
        "CM_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        str(SERVE),
        "demo",
        "--no-phones",
        "--port",
        str(port),
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    output = _Output(proc.stdout)
    try:
        await output.wait_for("is being served at")
        # Tonight is planned for both stations before the banner, which prints each sheet.
        for station, _ in demo.STATIONS:
            await output.wait_for(f"/sheet -o patrol-{station}.pdf")
        devices_file = tmp_path / "data" / demo.DEVICES_FILE
        devices = json.loads(await asyncio.to_thread(devices_file.read_text))["subjects"]
        token = devices["wanderer"]["token"]
        fix = demo.fixes_for_tick(_plan("wanderer"), 0, 0.0, datetime.now(UTC))
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=30)) as s:
            async with s.post("/api/v1/fixes", json={"fixes": fix}, headers=bearer(token)) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["accepted"] == 1
                assert "Server" not in r.headers, "aiohttp answered, not the ingest front"
            async with s.get("/healthz") as r:
                assert r.status == 200
                assert "aiohttp" in r.headers["Server"]

            admin = demo.LOGINS[0]
            answer = await s.post(
                "/api/v1/auth/token", json={"username": admin.username, "password": admin.password}
            )
            feed = await s.get(
                "/api/v1/alerts/stream", headers=bearer((await answer.json())["access_token"])
            )
            assert feed.status == 200
            assert (await feed.content.readline()).startswith(b": connected")
            proc.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(feed.content.read(), 10)
            feed.close()
        assert b": end shutdown" in rest
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await output.task
        assert "demo: stopping" in output.text
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        output.task.cancel()


async def test_simulated_apps_answer_challenges_as_their_plans_say(
    client: TestClient[Any, Any], database_url: str, tmp_path: Path
) -> None:
    api = _api(client)
    world = await demo.seed(api, database_url, tmp_path)
    by_key = {s.plan.key: s for s in world.subjects}
    h = bearer(world.admin_token)
    issued: dict[str, int] = {}
    for phone in world.subjects:
        resp = await client.post(
            f"/api/v1/subjects/{phone.subject_id}/challenges",
            json={"answer_within_s": demo.CHALLENGE_ANSWER_S},
            headers=h,
        )
        assert resp.status == 201, await resp.text()
        issued[phone.plan.key] = (await resp.json())["id"]

    out = io.StringIO()
    now = datetime.now(UTC)
    answered = {
        key: await demo.answer_checkins(api, by_key[key], 30.0, now, out)
        for key in ("wanderer", "curfew", "errands")
    }
    # The silent phone stopped 120 s into the run: it answers nothing afterwards.
    answered["silent"] = await demo.answer_checkins(api, by_key["silent"], 600.0, now, out)
    assert answered == {"wanderer": 1, "curfew": 1, "errands": 0, "silent": 0}

    async def challenge_of(key: str) -> dict[str, Any]:
        resp = await client.get(f"/api/v1/subjects/{by_key[key].subject_id}/checkins", headers=h)
        assert resp.status == 200
        found: dict[str, Any] = next(
            c for c in (await resp.json())["checkins"] if c["id"] == issued[key]
        )
        return found

    assert (await challenge_of("wanderer"))["status"] == "passed"
    low = await challenge_of("curfew")
    assert low["status"] == "needs_review"
    assert low["reasons"] == ["face_score_low"]
    assert (await challenge_of("errands"))["status"] == "open"
    printed = out.getvalue()
    assert "张某 passed" in printed
    assert "陈某 needs_review (face_score_low)" in printed


async def test_seeded_subjects_have_their_stations_officer_and_supervisor(
    client: TestClient[Any, Any], database_url: str, tmp_path: Path
) -> None:
    api = _api(client)
    world = await demo.seed(api, database_url, tmp_path)
    h = bearer(world.admin_token)
    resp = await client.get("/api/v1/officers", headers=h)
    ids = {o["username"]: o["id"] for o in (await resp.json())["officers"]}
    for seeded in world.subjects:
        resp = await client.get(f"/api/v1/subjects/{seeded.subject_id}", headers=h)
        subject = await resp.json()
        officer, supervisor = demo._STATION_STAFF[seeded.plan.station]
        assert subject["responsible_officer_id"] == ids[officer], seeded.plan.key
        assert subject["responsible_supervisor_id"] == ids[supervisor], seeded.plan.key


def test_the_demo_policy_overlay_shortens_only_what_the_demo_needs(
    settings: Settings, tmp_path: Path
) -> None:
    shipped = load_policy()
    served, path = demo.demo_policy(settings.model_copy(update={"data_dir": tmp_path}))
    assert path == tmp_path / demo.DEMO_POLICY_FILE
    assert served.policy_file == path
    policy = load_policy(path)
    assert policy.level("strict").ack_sla_high_s == 120
    assert policy.tasks.escalation_sla_s == (180, 300)
    assert policy.self_resolution("left_activity_area") == 60
    # Everything else is the shipped policy.
    assert policy.level("strict").confirm_s == shipped.level("strict").confirm_s
    assert policy.level("normal") == shipped.level("normal")
    assert policy.self_resolution("curfew_violation") == shipped.self_resolution("curfew_violation")
    assert policy.ladder == shipped.ladder
    assert "for the demo only" in demo._demo_policy_line(path)

    # An operator's own policy file is left alone.
    own = tmp_path / "province.toml"
    kept, none = demo.demo_policy(settings.model_copy(update={"policy_file": own}))
    assert none is None
    assert kept.policy_file == own


async def test_an_escalated_breach_confirmed_by_the_acting_officer_is_a_pending_reprimand(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """On a manual clock with the demo policy: the wanderer leaves the county, the alert
    reaches 东关司法所's officer as a task, escalates to the supervisor unacknowledged, the
    demo's simulated officer confirms it as minor, and a pending 训诫 with its PDF follows."""
    served, _ = demo.demo_policy(settings.model_copy(update={"data_dir": tmp_path}))
    # An alert's detected_at is stamped by the database's own clock: start the run three
    # minutes back, so that the simulated clock meets the real one when the breach is
    # confirmed (about three minutes in), as in a live demo.
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3))
    async with TestClient[Any, Any](TestServer(init_app(served, clock=clock))) as client:
        api = _api(client)
        # A wanderer of this test's own, so other tests' fixes of 张某 change nothing here.
        plan = replace(_plan("wanderer"), key=unique("wanderer"), name=unique("张某"))
        world = await demo.seed(api, database_url, tmp_path, phones=[plan])
        [wanderer] = world.subjects
        names = {wanderer.subject_id: plan.name}
        out = io.StringIO()
        admin = demo.LOGINS[0]
        base = str(client.make_url("/")).rstrip("/")
        tasks = demo.TaskWatch(api, admin, names, out)
        proposals = demo.ProposalWatch(api, admin, names, out, base)
        officer = demo.ActingOfficer(
            api,
            demo.login_of(demo.ACTING_OFFICER),
            names,
            out,
            since=clock.now(),
            act_after_s=30,
            clock=clock.now,
        )
        services = client.app[SERVICES]
        acted_at: list[datetime] = []

        async def tick(seconds: float) -> None:
            """The scheduler's work between two phone ticks, then the demo's pollers."""
            clock.advance(seconds)
            for _ in range(2):
                await services.timers.fire_due()
                await services.consumers.run_all()
            await services.handle(SweepTaskEscalations(clock.now()))
            await services.consumers.run_all()
            await tasks.poll()
            await proposals.poll()
            if not acted_at and await officer.poll():
                acted_at.append(clock.now())
                for _ in range(3):
                    await services.consumers.run_all()

        # 30 ticks of 15 s: out of the county by ~1 min, detected ~3 min, released a minute
        # later, due two minutes after detection, escalated, confirmed 30 s after that.
        stats = await demo.run_phones(
            api, [wanderer], tick_s=15.0, ticks=30, clock=clock.now, sleep=tick
        )
        assert stats.accepted == 30
        await tick(0)

        printed = out.getvalue()
        lines = printed.splitlines()
        created = [line for line in lines if line.startswith("[task created]")]
        assert created[0].startswith("[task created] #"), printed
        assert f"verify_alert {plan.name} → dongguan-officer due " in created[0], printed
        task_id = int(created[0].split()[2].lstrip("#"))
        escalated = [line for line in lines if line.startswith("[task escalated]")]
        assert escalated == [
            next(
                line
                for line in lines
                if line.startswith(
                    f"[task escalated] #{task_id} verify_alert {plan.name}"
                    " → level 1 dongguan-head due "
                )
            )
        ], printed
        assert any(
            line.startswith(f"[task done] #{task_id} verify_alert {plan.name} by dongguan-officer")
            for line in lines
        ), printed
        acting = [line for line in lines if line.startswith("[demo officer, simulated]")]
        assert len(acting) == 1
        assert "dongguan-officer" in acting[0]
        assert "left_activity_area" in acting[0]
        assert "minor" in acting[0]
        # In order: created, escalated, then the simulated officer's act.
        assert lines.index(created[0]) < lines.index(escalated[0]) < lines.index(acting[0])

        h = bearer(world.admin_token)
        resp = await client.get(
            "/api/v1/proposals", params={"subject_id": str(wanderer.subject_id)}, headers=h
        )
        [proposal] = (await resp.json())["proposals"]
        assert proposal["measure"] == "reprimand"
        assert proposal["status"] == "pending"
        assert proposal["article"] == "社区矫正法实施办法第三十四条"
        pid = proposal["id"]
        assert (
            f"[proposal] #{pid} 训诫 (reprimand) {plan.name} — 社区矫正法实施办法第三十四条 — PDF: "
            f'curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/proposals/{pid}/document '
            f"-o proposal-{pid}.pdf"
        ) in lines
        assert any(
            line.startswith(f"[proposal] #{pid} is pending") and f"/proposals/{pid}/decide" in line
            for line in lines
        ), printed
        assert any(
            line.startswith("[task created]") and f"decide_proposal {plan.name} → county " in line
            for line in lines
        ), printed
        assert "[proposal approved]" not in printed  # nobody decided anything

        resp = await client.get(f"/api/v1/proposals/{pid}/document", headers=h)
        assert resp.status == 200
        assert resp.content_type == "application/pdf"
        assert (await resp.read()).startswith(b"%PDF")

        # The officer acts once; a later poll changes nothing.
        assert await officer.poll()
        assert out.getvalue().count("[demo officer, simulated]") == 1


def test_task_times_are_the_countys_with_the_date_when_not_today() -> None:
    today = datetime(2026, 3, 2, tzinfo=UTC).date()
    assert demo._local_time("2026-03-02T07:00:00Z", today) == "15:00:00"
    assert demo._local_time("2026-03-02T17:00:00Z", today) == "2026-03-03 01:00:00"
    assert demo._local_time(None, today) == "-"


def _teams_of(station: str) -> list[str]:
    return [name for code, name, _ in demo.PATROL_TEAMS if code == station]


async def test_seeding_creates_each_patrol_team_once_at_its_station(
    client: TestClient[Any, Any], database_url: str, tmp_path: Path
) -> None:
    api = _api(client)
    first = await demo.seed(api, database_url, tmp_path)
    again = await demo.seed(api, database_url, tmp_path)
    assert not [c for c in again.created if c.startswith("patrol team")]
    assert dict(again.patrol_teams) == dict(first.patrol_teams)
    assert set(first.patrol_teams) == {name for _, name, _ in demo.PATROL_TEAMS}
    county = _county()
    for station, _ in demo.STATIONS:
        assert 1 <= len(_teams_of(station)) <= 2
        resp = await client.get(
            "/api/v1/patrol-teams", params={"org_unit": station}, headers=bearer(first.admin_token)
        )
        assert resp.status == 200, await resp.text()
        teams = [t for t in (await resp.json())["teams"] if t["org_unit"] == station]
        assert sorted(t["name"] for t in teams) == sorted(_teams_of(station))
        for team in teams:
            assert team["id"] == first.patrol_teams[team["name"]]
            assert team["window"] == {"start": "20:00", "end": "00:00"}
            assert county.contains(Point(team["start"]["lon"], team["start"]["lat"]))
            station_at = _point(*demo.STATION_M[station])
            assert Point(team["start"]["lon"], team["start"]["lat"]).distance(station_at) < 1e-6


async def test_the_demo_plans_tonight_per_station_with_a_route_map_on_the_sheet(
    client: TestClient[Any, Any], database_url: str, tmp_path: Path
) -> None:
    api = _api(client)
    world = await demo.seed(api, database_url, tmp_path)
    h = bearer(world.admin_token)
    plans = await demo.plan_tonight(api, world.admin_token, world.patrol_teams)
    assert [p.station for p in plans] == [code for code, _ in demo.STATIONS]
    tonight = demo.county_today()
    strict = {s.subject_id for s in world.subjects if s.plan.level == "strict"}
    planned: set[int] = set()
    for plan in plans:
        assert plan.plan_id is not None, plan.problem
        assert (plan.night, plan.status) == (tonight, "draft")
        assert sorted(team for team, _ in plan.stops) == sorted(_teams_of(plan.station))
        resp = await client.get(f"/api/v1/patrol-plans/{plan.plan_id}", headers=h)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["date"] == tonight.isoformat()
        assert sum(n for _, n in plan.stops) == sum(len(r["stops"]) for r in body["routes"])
        planned |= {stop["subject_id"] for r in body["routes"] for stop in r["stops"]}

        resp = await client.get(f"/api/v1/patrol-plans/{plan.plan_id}/sheet", headers=h)
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/pdf"
        reader = PdfReader(io.BytesIO(await resp.read()))
        first = reader.pages[0].extract_text()
        # The first page opens with the route map: its title, the legend's teams with their
        # stops, the north mark and the scale bar.
        assert "路线图" in first
        assert first.index("路线图") < first.index("司法所")
        assert "北" in first
        assert "公里" in first or "米" in first
        for team, stops in plan.stops:
            assert team in first, team
            assert f"{stops} 人" in first
        text = "".join(page.extract_text() for page in reader.pages)
        assert text.count("夜间巡查走访单") == len(plan.stops)
        # Each station has a strict subject due tonight: the reason is printed in words.
        assert "本期最后一晚（必访）" in "".join(text.split())
        assert "last_night_of_window" not in "".join(text.split())
    # The strict subjects began their terms 14 days ago: tonight is the last night of their
    # window, so each is planned.
    assert strict <= planned

    # Planning again replaces the drafts; a published plan is kept.
    first_ids = {p.station: p.plan_id for p in plans}
    chengguan = first_ids["xx-chengguan"]
    resp = await client.post(f"/api/v1/patrol-plans/{chengguan}/publish", headers=h)
    assert resp.status == 200, await resp.text()
    again = {
        p.station: p for p in await demo.plan_tonight(api, world.admin_token, world.patrol_teams)
    }
    assert (again["xx-chengguan"].plan_id, again["xx-chengguan"].status) == (chengguan, "published")
    assert again["xx-chengguan"].stops == next(p.stops for p in plans if p.plan_id == chengguan)
    assert again["xx-dongguan"].plan_id not in (None, first_ids["xx-dongguan"])
    assert again["xx-dongguan"].status == "draft"
    resp = await client.get(f"/api/v1/patrol-plans/{first_ids['xx-dongguan']}", headers=h)
    assert resp.status == 404


def test_the_banner_shows_tonights_stops_and_where_to_fetch_each_export() -> None:
    night = datetime(2026, 12, 6, tzinfo=UTC).date()
    plans = (
        demo.TonightPlan(
            "xx-chengguan",
            "城关司法所",
            night,
            41,
            "draft",
            (("城关巡查一组", 3), ("城关巡查二组", 1)),
            0,
        ),
        demo.TonightPlan("xx-dongguan", "东关司法所", night, None, "none", problem="no_teams: x"),
    )
    lines = demo._patrol_lines("http://127.0.0.1:8096", plans)
    text = "\n".join(lines)
    assert (
        "城关司法所 plan #41 (draft): 城关巡查一组 3 stops, 城关巡查二组 1 stop; 0 unassigned"
        in text
    )
    url = "http://127.0.0.1:8096/api/v1/patrol-plans/41"
    for suffix in ("", ".geojson", ".csv"):
        assert f'    curl -s -H "Authorization: Bearer $TOKEN" {url}{suffix}' in lines
    assert (
        f'    curl -H "Authorization: Bearer $TOKEN" {url}/sheet -o patrol-xx-chengguan.pdf'
        in lines
    )
    assert "  东关司法所: not planned (no_teams: x)" in lines
    assert demo._patrol_lines("http://x", ()) == []
