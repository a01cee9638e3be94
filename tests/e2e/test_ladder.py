"""The legal ladder through HTTP: confirmed alerts propose measures with their articles,
county administrators decide them, approved responses climb the ladder, the lost-contact
clock, the category split, and level changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.domain.events import StoredEvent
from correction_monitor.service.ladder import LADDER_CONSUMER, ProposeLenient
from correction_monitor.web.keys import POOL, SERVICES
from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import (
    OUTSIDE,
    County,
    World,
    alerts_of,
    expect_error,
    expect_json,
    make_county,
    make_world,
    recent,
    send,
    sql_row,
    track,
)

pytestmark = pytest.mark.e2e

REPRIMAND = "社区矫正法实施办法第三十四条"
WARNING = "社区矫正法实施办法第三十五条"
LEVEL_CHANGE = "社区矫正法实施办法第二十二条"
DAY = timedelta(days=1)
T0 = datetime(2026, 2, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Team:
    """A county (its admin makes the worlds) and a county administrator who decides."""

    county: County
    county_admin: str


async def make_team(officers: Officers) -> Team:
    county = await make_county(officers)
    _, county_admin = await officers.create("county_admin", county.code)
    return Team(county, county_admin)


async def station_officer(officers: Officers, world: World) -> str:
    _, token = await officers.create("officer", world.station)
    return token


async def run_ladder(client: TestClient[Any, Any]) -> None:
    """Advance the ladder's consumer over what is pending, as the scheduler's tick does."""
    services = client.app[SERVICES]
    (consumer,) = [c for c in services.consumers.consumers if c.name == LADDER_CONSUMER]
    await services.consumers.run(consumer)


async def breach(
    client: TestClient[Any, Any],
    world: World,
    alert_type: str = "left_activity_area",
    *,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> int:
    """An alert of ``world``'s subject, stored as evaluation or the sweep would store it."""
    started_at = started_at or datetime.now(UTC) - timedelta(hours=2)
    row = await sql_row(
        client,
        """
        INSERT INTO alerts (subject_id, org_unit_id, type, severity, episode_key, started_at,
            detected_at, ended_at, released_at)
        SELECT id, org_unit_id, $2, 'high', $3, $4, $4, $5, $4 FROM subjects WHERE id = $1
        RETURNING id
        """,
        world.subject_id,
        alert_type,
        unique("ep-"),
        started_at,
        ended_at,
    )
    alert_id: int = row["id"]
    return alert_id


async def confirm(
    client: TestClient[Any, Any],
    token: str,
    alert_id: int,
    *,
    gravity: str | None = None,
    disposition: str = "confirmed",
) -> None:
    """The officer resolves the alert (with ``gravity`` when given), then the ladder runs."""
    body: dict[str, Any] = {"disposition": disposition, "note": "电话核实"}
    if gravity is not None:
        body["gravity"] = gravity
    resp = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json=body, headers=bearer(token))
    await expect_json(resp)
    await run_ladder(client)


async def proposals(
    client: TestClient[Any, Any], token: str, subject_id: int, **filters: str
) -> list[Any]:
    resp = await client.get(
        "/api/v1/proposals",
        params={"subject_id": str(subject_id)} | filters,
        headers=bearer(token),
    )
    found: list[Any] = (await expect_json(resp))["proposals"]
    return found


async def proposal_for(client: TestClient[Any, Any], token: str, alert_id: int) -> Any:
    row = await sql_row(
        client, "SELECT id FROM proposals WHERE dedupe_key = $1", f"alert:{alert_id}"
    )
    assert row is not None, f"no proposal for alert {alert_id}"
    resp = await client.get(f"/api/v1/proposals/{row['id']}", headers=bearer(token))
    return await expect_json(resp)


async def decide(
    client: TestClient[Any, Any], token: str, proposal_id: int, decision: str, note: str = "同意"
) -> Any:
    resp = await client.post(
        f"/api/v1/proposals/{proposal_id}/decide",
        json={"decision": decision, "note": note},
        headers=bearer(token),
    )
    decided = await expect_json(resp)
    await run_ladder(client)
    return decided


CONTRACT_KEYS = {
    "id",
    "subject_id",
    "measure",
    "article",
    "grounds",
    "alert_ids",
    "status",
    "created_at",
    "decided_at",
    "decided_by",
}


async def test_reprimands_approved_by_the_county_then_a_warning_citing_its_article(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, world)
    # A real breach: the subject's phone reports it outside the activity area.
    await send(client, world, track(recent(30), [OUTSIDE] * 6))
    (left,) = await alerts_of(client, world, type="left_activity_area")
    await confirm(client, officer, left["id"])

    proposal = await proposal_for(client, officer, left["id"])
    assert set(proposal) >= CONTRACT_KEYS
    assert proposal["measure"] == "reprimand"
    assert proposal["article"] == REPRIMAND
    assert proposal["status"] == "pending"
    assert proposal["alert_ids"] == [left["id"]]
    assert proposal["subject_id"] == world.subject_id
    assert (proposal["decided_at"], proposal["decided_by"]) == (None, None)
    assert any(f"alert {left['id']}" in g for g in proposal["grounds"])
    assert any(REPRIMAND in g for g in proposal["grounds"])
    listed = await proposals(client, officer, world.subject_id, status="pending")
    assert [p["id"] for p in listed] == [proposal["id"]]
    created = await sql_row(
        client,
        "SELECT data FROM events WHERE name = 'proposal.created'"
        " AND (data->>'proposal_id')::int = $1",
        proposal["id"],
    )
    assert created["data"]["measure"] == "reprimand"
    assert created["data"]["article"] == REPRIMAND

    # The station's officer may not decide it; the county administrator approves it.
    resp = await client.post(
        f"/api/v1/proposals/{proposal['id']}/decide",
        json={"decision": "approved"},
        headers=bearer(officer),
    )
    await expect_error(resp, 403, "forbidden")
    approved = await decide(client, team.county_admin, proposal["id"], "approved", "予以训诫")
    assert approved["status"] == "approved"
    assert approved["decided_by"] is not None
    assert approved["decided_at"] is not None
    assert approved["decision_note"] == "予以训诫"
    audit = await sql_row(
        client,
        "SELECT officer_id, detail FROM audit_log WHERE action = 'proposal.decide'"
        " AND (detail->>'proposal_id')::int = $1",
        proposal["id"],
    )
    assert audit["officer_id"] == approved["decided_by"]
    assert audit["detail"]["decision"] == "approved"
    assert audit["detail"]["note"] == "予以训诫"
    event = await sql_row(
        client,
        "SELECT data FROM events WHERE name = 'proposal.decided'"
        " AND (data->>'proposal_id')::int = $1",
        proposal["id"],
    )
    assert {k: event["data"][k] for k in ("proposal_id", "measure", "decision", "subject_id")} == {
        "proposal_id": proposal["id"],
        "measure": "reprimand",
        "decision": "approved",
        "subject_id": world.subject_id,
    }
    # Decided once only.
    resp = await client.post(
        f"/api/v1/proposals/{proposal['id']}/decide",
        json={"decision": "rejected"},
        headers=bearer(team.county_admin),
    )
    await expect_error(resp, 409, "not_pending")

    second = await breach(client, world)
    await confirm(client, officer, second)
    again = await proposal_for(client, officer, second)
    assert again["measure"] == "reprimand"
    assert again["basis"]["counters"]["reprimands"] == 1
    await decide(client, team.county_admin, again["id"], "approved")

    # Two approved reprimands and still not corrected: a warning.
    third = await breach(client, world, "curfew_violation")
    await confirm(client, officer, third)
    warning = await proposal_for(client, officer, third)
    assert warning["measure"] == "warning"
    assert warning["article"] == WARNING
    assert warning["basis"]["counters"]["reprimands"] == 2
    assert any(WARNING in g for g in warning["grounds"])
    assert any("训诫 2 次" in g for g in warning["grounds"])
    # The subject is strict already: no level change is proposed.
    assert [p["measure"] for p in await proposals(client, officer, world.subject_id)] == [
        "warning",
        "reprimand",
        "reprimand",
    ]


async def test_rejected_and_pending_proposals_do_not_count(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, world)
    ids = [await breach(client, world) for _ in range(4)]
    await confirm(client, officer, ids[0])
    await decide(
        client, team.county_admin, (await proposal_for(client, officer, ids[0]))["id"], "approved"
    )
    await confirm(client, officer, ids[1])
    rejected = await proposal_for(client, officer, ids[1])
    await decide(client, team.county_admin, rejected["id"], "rejected", "情节显著轻微")
    await confirm(client, officer, ids[2])
    pending = await proposal_for(client, officer, ids[2])
    assert pending["measure"] == "reprimand"
    assert pending["basis"]["counters"]["reprimands"] == 1
    await confirm(client, officer, ids[3])
    still = await proposal_for(client, officer, ids[3])
    assert still["measure"] == "reprimand"
    assert still["basis"]["counters"]["reprimands"] == 1


async def test_dispositions_other_than_confirmed_propose_nothing(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, world)
    for disposition in ("false_alarm", "justified"):
        await confirm(client, officer, await breach(client, world), disposition=disposition)
    assert await proposals(client, officer, world.subject_id) == []


@pytest.mark.parametrize(
    ("category", "measure", "article"),
    [
        ("probation", "revocation", "社区矫正法实施办法第四十六条"),
        ("parole", "revocation", "社区矫正法实施办法第四十七条"),
        ("medical_parole", "revocation", "社区矫正法实施办法第四十九条"),
        (
            "control",
            "public_security_penalty",
            "社区矫正法实施办法第三十六条；社区矫正法第五十九条",
        ),
    ],
)
async def test_exclusion_zone_breaches_by_gravity_and_category(
    client: TestClient[Any, Any],
    officers: Officers,
    category: str,
    measure: str,
    article: str,
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    await sql_row(
        client, "UPDATE subjects SET category = $2 WHERE id = $1", world.subject_id, category
    )
    officer = await station_officer(officers, world)
    minor = await breach(client, world, "entered_exclusion_zone")
    await confirm(client, officer, minor)
    warning = await proposal_for(client, officer, minor)
    assert (warning["measure"], warning["article"]) == ("warning", WARNING)
    assert any("禁止令" in g for g in warning["grounds"])
    serious = await breach(client, world, "entered_exclusion_zone")
    await confirm(client, officer, serious, gravity="serious")
    top = await proposal_for(client, officer, serious)
    assert (top["measure"], top["article"]) == (measure, article)
    assert top["basis"]["category"] == category
    assert top["basis"]["gravity"] == "serious"


async def test_a_serious_breach_is_a_warning(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, world)
    alert_id = await breach(client, world, "leave_overdue")
    await confirm(client, officer, alert_id, gravity="serious")
    proposal = await proposal_for(client, officer, alert_id)
    assert (proposal["measure"], proposal["article"]) == ("warning", WARNING)


async def test_two_approved_warnings_then_revocation(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, world)
    for _ in range(2):
        alert_id = await breach(client, world)
        await confirm(client, officer, alert_id, gravity="serious")
        warning = await proposal_for(client, officer, alert_id)
        assert warning["measure"] == "warning"
        await decide(client, team.county_admin, warning["id"], "approved")
    alert_id = await breach(client, world)
    await confirm(client, officer, alert_id)
    revocation = await proposal_for(client, officer, alert_id)
    assert (revocation["measure"], revocation["article"]) == (
        "revocation",
        "社区矫正法实施办法第四十六条",
    )
    assert revocation["basis"]["counters"]["warnings"] == 2


async def test_the_lost_contact_clock_over_confirmed_episodes(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, world)

    async def lost(start: datetime, length: timedelta, disposition: str = "confirmed") -> Any:
        alert_id = await breach(
            client, world, "lost_contact", started_at=start, ended_at=start + length
        )
        await confirm(client, officer, alert_id, disposition=disposition)
        if disposition != "confirmed":
            return None
        return await proposal_for(client, officer, alert_id)

    # Before the term (2026-01-01, Asia/Shanghai): counted for itself, not on this term's
    # clock afterwards.
    before = await lost(datetime(2025, 12, 1, tzinfo=UTC), 20 * DAY)
    assert before["measure"] == "warning"
    assert before["basis"]["lost_contact"]["clock_s"] == 20 * 86400
    first = await lost(T0, 6 * DAY)
    assert first["measure"] == "reprimand"
    assert first["article"] == REPRIMAND
    assert first["basis"]["lost_contact"]["clock_s"] == 6 * 86400
    # A false alarm adds nothing.
    await lost(T0 + 10 * DAY, 3 * DAY, "false_alarm")
    # Exactly 10 days: still a reprimand.
    exactly = await lost(T0 + 20 * DAY, 4 * DAY)
    assert exactly["measure"] == "reprimand"
    assert exactly["basis"]["lost_contact"]["clock_s"] == 10 * 86400
    # 10 days and one second: a warning.
    beyond = await lost(T0 + 30 * DAY, timedelta(seconds=1))
    assert (beyond["measure"], beyond["article"]) == ("warning", WARNING)
    assert beyond["basis"]["lost_contact"]["clock_s"] == 10 * 86400 + 1
    assert len(beyond["basis"]["lost_contact"]["alert_ids"]) == 3
    # To exactly a month: still a warning; beyond it, revocation.
    month = await lost(T0 + 40 * DAY, 20 * DAY - timedelta(seconds=1))
    assert month["measure"] == "warning"
    assert month["basis"]["lost_contact"]["clock_s"] == 30 * 86400
    revoke = await lost(T0 + 70 * DAY, timedelta(seconds=1))
    assert (revoke["measure"], revoke["article"]) == ("revocation", "社区矫正法实施办法第四十六条")
    assert any("撤销缓刑" in g for g in revoke["grounds"])


async def test_a_strict_level_proposed_after_an_approved_reprimand_applies_on_approval(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="normal", in_county=team.county)
    officer = await station_officer(officers, world)
    alert_id = await breach(client, world)
    await confirm(client, officer, alert_id)
    reprimand = await proposal_for(client, officer, alert_id)
    # Pending, rejected: no level change.
    assert [p["measure"] for p in await proposals(client, officer, world.subject_id)] == [
        "reprimand"
    ]
    await decide(client, team.county_admin, reprimand["id"], "approved")
    (change,) = await proposals(client, officer, world.subject_id, status="pending")
    assert change["measure"] == "level_change"
    assert change["proposed_level"] == "strict"
    assert change["article"] == LEVEL_CHANGE
    assert change["alert_ids"] == [alert_id]
    assert change["basis"]["after_proposal_id"] == reprimand["id"]
    # Running the ladder again proposes nothing more.
    await run_ladder(client)
    assert len(await proposals(client, officer, world.subject_id, status="pending")) == 1

    resp = await client.post(
        f"/api/v1/proposals/{change['id']}/decide",
        json={"decision": "approved"},
        headers=bearer(officer),
    )
    await expect_error(resp, 403, "forbidden")
    await decide(client, team.county_admin, change["id"], "approved")
    resp = await client.get(
        f"/api/v1/subjects/{world.subject_id}", headers=bearer(team.county_admin)
    )
    assert (await expect_json(resp))["supervision_level"] == "strict"
    audit = await sql_row(
        client,
        "SELECT detail FROM audit_log WHERE action = 'subject.change' AND subject_id = $1",
        world.subject_id,
    )
    assert audit["detail"]["changes"]["supervision_level"] == {"from": "normal", "to": "strict"}
    assert audit["detail"]["proposal_id"] == change["id"]
    changed = await sql_row(
        client,
        "SELECT data FROM events WHERE name = 'subject.changed' AND subject_id = $1",
        world.subject_id,
    )
    assert changed["data"]["changes"]["supervision_level"]["to"] == "strict"
    # An approved level change is no response the ladder climbs on.
    alert_id = await breach(client, world)
    await confirm(client, officer, alert_id)
    assert (await proposal_for(client, officer, alert_id))["basis"]["counters"] == {
        "reprimands": 1,
        "warnings": 0,
        "public_security_penalties": 0,
    }


async def test_lenient_proposed_after_clean_months_at_normal_once_per_clean_span(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    clean = await make_world(client, officers, level="normal", in_county=team.county)
    breached = await make_world(client, officers, level="normal", in_county=team.county)
    strict = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, breached)
    for world in (clean, breached, strict):
        await sql_row(
            client,
            "UPDATE subjects SET created_at = now() - interval '300 days' WHERE id = $1",
            world.subject_id,
        )
    # A breach confirmed 100 days ago: not clean long enough.
    start = datetime.now(UTC) - timedelta(days=100)
    alert_id = await breach(client, breached, started_at=start, ended_at=start + timedelta(hours=1))
    await confirm(client, officer, alert_id)
    services = client.app[SERVICES]
    now = datetime.now(UTC)
    await services.handle(ProposeLenient(now))
    (lenient,) = await proposals(client, team.county_admin, clean.subject_id)
    assert lenient["measure"] == "level_change"
    assert lenient["proposed_level"] == "lenient"
    assert lenient["article"] == LEVEL_CHANGE
    assert lenient["alert_ids"] == []
    assert lenient["basis"]["clean_days"] >= 183
    assert [p["measure"] for p in await proposals(client, officer, breached.subject_id)] == [
        "reprimand"
    ]
    assert await proposals(client, team.county_admin, strict.subject_id) == []
    # The next day's run proposes nothing again; nor after a rejection.
    await services.handle(ProposeLenient(now + DAY))
    await decide(client, team.county_admin, lenient["id"], "rejected", "再观察")
    await services.handle(ProposeLenient(now + 2 * DAY))
    assert len(await proposals(client, team.county_admin, clean.subject_id)) == 1
    audit = await sql_row(
        client,
        "SELECT officer_id FROM audit_log WHERE action = 'proposal.create' AND subject_id = $1",
        clean.subject_id,
    )
    assert audit["officer_id"] is None


async def test_reads_and_decisions_in_the_callers_jurisdiction_only(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    other = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, world)
    alert_id = await breach(client, world)
    await confirm(client, officer, alert_id)
    proposal = await proposal_for(client, officer, alert_id)
    assert await proposals(client, other.county_admin, world.subject_id) == []
    resp = await client.get(
        f"/api/v1/proposals/{proposal['id']}", headers=bearer(other.county_admin)
    )
    await expect_error(resp, 404, "not_found")
    resp = await client.post(
        f"/api/v1/proposals/{proposal['id']}/decide",
        json={"decision": "approved"},
        headers=bearer(other.county_admin),
    )
    await expect_error(resp, 404, "not_found")
    for body in ({"decision": "maybe"}, {}, {"decision": "pending"}):
        resp = await client.post(
            f"/api/v1/proposals/{proposal['id']}/decide",
            json=body,
            headers=bearer(team.county_admin),
        )
        await expect_error(resp, 400)
    resp = await client.get("/api/v1/proposals", params={"status": "open"}, headers=bearer(officer))
    await expect_error(resp, 400)
    resp = await client.get("/api/v1/proposals/999999999", headers=bearer(officer))
    await expect_error(resp, 404)
    resp = await client.get("/api/v1/proposals")
    await expect_error(resp, 401)
    # An administrator decides anywhere.
    _, admin = await officers.create("admin", unique("c"))
    decided = await decide(client, admin, proposal["id"], "approved")
    assert decided["status"] == "approved"
    pool = client.app[POOL]
    assert await pool.fetchval("SELECT status FROM proposals WHERE id = $1", proposal["id"]) == (
        "approved"
    )


async def test_an_event_handled_twice_proposes_once(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    team = await make_team(officers)
    world = await make_world(client, officers, level="strict", in_county=team.county)
    officer = await station_officer(officers, world)
    alert_id = await breach(client, world)
    await confirm(client, officer, alert_id)
    row = await sql_row(
        client,
        "SELECT * FROM events WHERE name = 'alert.resolved' AND alert_id = $1",
        alert_id,
    )
    event = StoredEvent(
        row["id"],
        row["name"],
        row["occurred_at"],
        row["org_unit_id"],
        row["subject_id"],
        row["alert_id"],
        row["data"],
    )
    services = client.app[SERVICES]
    (consumer,) = [c for c in services.consumers.consumers if c.name == LADDER_CONSUMER]
    uow = services.uow()
    async with uow:
        await consumer.handle(event, uow)
    assert len(await proposals(client, officer, world.subject_id)) == 1
    created = await sql_row(
        client,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'proposal.create' AND subject_id = $1",
        world.subject_id,
    )
    assert created["n"] == 1


async def test_events_naming_nothing_the_ladder_knows_are_passed_over(
    client: TestClient[Any, Any],
) -> None:
    services = client.app[SERVICES]
    (consumer,) = [c for c in services.consumers.consumers if c.name == LADDER_CONSUMER]
    now = datetime.now(UTC)
    for event in (
        StoredEvent(1, "proposal.decided", now, None, None, None, {"proposal_id": 2**40}),
        StoredEvent(
            1,
            "proposal.decided",
            now,
            None,
            None,
            None,
            {"proposal_id": "x", "decision": "approved", "measure": "reprimand"},
        ),
        StoredEvent(
            1,
            "proposal.decided",
            now,
            None,
            None,
            None,
            {"proposal_id": 2**40, "decision": "approved", "measure": "warning"},
        ),
        StoredEvent(1, "alert.resolved", now, None, None, 2**40, {"disposition": "confirmed"}),
    ):
        uow = services.uow()
        async with uow:
            await consumer.handle(event, uow)
