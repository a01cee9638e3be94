"""Alert reads are reads of location data (the evidence holds fixes and distances): the list,
one alert, the live feed and a subject's status each leave an audit entry (RULES.md §4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from correction_monitor.service import alerts as alert_service
from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import (
    NEAR_INSIDE,
    NEAR_OUTSIDE,
    World,
    alerts_of,
    expect_error,
    expect_json,
    make_county,
    make_world,
    recent,
    send,
    track,
)

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]

OUT_AND_BACK = [NEAR_INSIDE] * 2 + [NEAR_OUTSIDE] * 4 + [NEAR_INSIDE] * 4
STREAM = "/api/v1/alerts/stream"


@dataclass(frozen=True)
class Seeded:
    world: World  # a station whose subject left the county and came back: one alert
    neighbour: World  # another station of the same county, likewise
    alert_id: int
    neighbour_alert_id: int
    officer: str  # of the world's station
    officer_id: int
    county_admin: str
    county_admin_id: int
    admin: str  # role admin, whose own unit is the county
    admin_id: int
    auditor: str  # of the county
    other_auditor: str  # of another county


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def _officer_id(db: asyncpg.Connection, username: str) -> int:
    officer_id: int = await db.fetchval("SELECT id FROM officers WHERE username = $1", username)
    return officer_id


async def _only_alert(client: Client, world: World) -> int:
    listed = await alerts_of(client, world)
    assert len(listed) == 1, listed
    alert_id: int = listed[0]["id"]
    return alert_id


@pytest.fixture(scope="module")
async def seeded(client: Client, officers: Officers, db: asyncpg.Connection) -> Seeded:
    county = await make_county(officers)
    world = await make_world(client, officers, in_county=county)
    neighbour = await make_world(client, officers, in_county=county)
    fixes = track(recent(), OUT_AND_BACK)
    await send(client, world, fixes)
    await send(client, neighbour, fixes)
    officer_name, officer = await officers.create("officer", world.station)
    county_admin_name, county_admin = await officers.create("county_admin", county.code)
    _, auditor = await officers.create("auditor", county.code)
    _, other_auditor = await officers.create("auditor", unique("c"))
    admin_name = await db.fetchval(
        "SELECT o.username FROM officers o JOIN org_units u ON u.id = o.org_unit_id "
        "WHERE u.code = $1 AND o.role = 'admin'",
        county.code,
    )
    return Seeded(
        world=world,
        neighbour=neighbour,
        alert_id=await _only_alert(client, world),
        neighbour_alert_id=await _only_alert(client, neighbour),
        officer=officer,
        officer_id=await _officer_id(db, officer_name),
        county_admin=county_admin,
        county_admin_id=await _officer_id(db, county_admin_name),
        admin=county.admin_token,
        admin_id=await _officer_id(db, admin_name),
        auditor=auditor,
        other_auditor=other_auditor,
    )


async def entries_for(db: asyncpg.Connection, request_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT officer_id, action, subject_id, purpose, request_id, detail FROM audit_log "
        "WHERE request_id = $1 ORDER BY id",
        request_id,
    )
    return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]


async def audit_api(client: Client, token: str, **params: str) -> list[dict[str, Any]]:
    body = await expect_json(
        await client.get("/api/v1/audit", params={"limit": "1000"} | params, headers=bearer(token))
    )
    entries: list[dict[str, Any]] = body["entries"]
    return entries


async def test_listing_one_subjects_alerts_is_audited_about_that_subject(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    request_id = unique("req-")
    purpose = f"核查告警 {unique('')}"
    subject_id = seeded.world.subject_id
    body = await expect_json(
        await client.get(
            "/api/v1/alerts",
            params={"subject_id": str(subject_id), "status": "open", "purpose": purpose},
            headers=bearer(seeded.officer) | {"X-Request-ID": request_id},
        )
    )
    listed = [a["id"] for a in body["alerts"]]
    assert listed == [seeded.alert_id]
    assert body["alerts"][0]["evidence"], "the read returned location evidence"

    [entry] = await entries_for(db, request_id)
    assert entry["officer_id"] == seeded.officer_id
    assert entry["action"] == "alert.list"
    assert entry["subject_id"] == subject_id
    assert entry["purpose"] == purpose
    assert entry["detail"] == {
        "filters": {
            "subject_id": subject_id,
            "type": None,
            "status": "open",
            "limit": 500,
            "include_retracted": False,
        },
        "alerts": 1,
        "alert_ids": listed,
        "subjects": 1,
        "subject_ids": [subject_id],
    }

    # The county's auditor finds it under the subject; another county's auditor does not.
    found = await audit_api(client, seeded.auditor, subject_id=str(subject_id))
    assert [
        (e["action"], e["officer_id"], e["purpose"]) for e in found if e["request_id"] == request_id
    ] == [("alert.list", seeded.officer_id, purpose)]
    elsewhere = await audit_api(client, seeded.other_auditor)
    assert request_id not in {e["request_id"] for e in elsewhere}


async def test_an_unfiltered_list_of_one_stations_subject_names_that_subject(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    request_id = unique("req-")
    body = await expect_json(
        await client.get(
            "/api/v1/alerts", headers=bearer(seeded.officer) | {"X-Request-ID": request_id}
        )
    )
    assert {a["subject_id"] for a in body["alerts"]} == {seeded.world.subject_id}
    [entry] = await entries_for(db, request_id)
    assert entry["subject_id"] == seeded.world.subject_id
    assert entry["purpose"] is None
    assert entry["detail"]["filters"]["subject_id"] is None
    assert entry["detail"]["alert_ids"] == [a["id"] for a in body["alerts"]]


async def test_a_list_across_subjects_is_one_entry_naming_them(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    request_id = unique("req-")
    body = await expect_json(
        await client.get(
            "/api/v1/alerts",
            params={"type": "left_activity_area", "purpose": "每日巡查"},
            headers=bearer(seeded.county_admin) | {"X-Request-ID": request_id},
        )
    )
    listed = body["alerts"]
    subjects = list(dict.fromkeys(a["subject_id"] for a in listed))
    assert set(subjects) == {seeded.world.subject_id, seeded.neighbour.subject_id}

    [entry] = await entries_for(db, request_id)
    assert (entry["officer_id"], entry["action"]) == (seeded.county_admin_id, "alert.list")
    assert entry["subject_id"] is None
    assert entry["purpose"] == "每日巡查"
    assert entry["detail"]["filters"]["type"] == "left_activity_area"
    assert entry["detail"]["alerts"] == len(listed)
    assert entry["detail"]["alert_ids"] == [a["id"] for a in listed]
    assert entry["detail"]["subjects"] == 2
    assert entry["detail"]["subject_ids"] == subjects

    # About no single subject: the county's auditor sees it because a county officer wrote
    # it; it is not filed under either subject, and other counties never see it.
    assert request_id in {e["request_id"] for e in await audit_api(client, seeded.auditor)}
    under_subject = await audit_api(client, seeded.auditor, subject_id=str(subjects[0]))
    assert request_id not in {e["request_id"] for e in under_subject}
    elsewhere = await audit_api(client, seeded.other_auditor)
    assert request_id not in {e["request_id"] for e in elsewhere}


async def test_an_administrators_list_is_for_administrators_to_audit(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    """An administrator's list may span counties, so a county's auditor does not see it
    (it could name subjects of other counties), even when the administrator's own unit is
    that county; an administrator does."""
    request_id = unique("req-")
    resp = await client.get(
        "/api/v1/alerts", headers=bearer(seeded.admin) | {"X-Request-ID": request_id}
    )
    assert resp.status == 200
    [entry] = await entries_for(db, request_id)
    assert (entry["officer_id"], entry["action"]) == (seeded.admin_id, "alert.list")
    assert entry["subject_id"] is None  # at least this county's two subjects
    county_view = await audit_api(client, seeded.auditor)
    assert request_id not in {e["request_id"] for e in county_view}
    admin_view = await audit_api(client, seeded.admin)
    assert request_id in {e["request_id"] for e in admin_view}


async def test_listed_ids_are_capped_but_counted(
    client: Client,
    seeded: Seeded,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = await expect_json(
        await client.post(
            "/api/v1/subjects",
            json={
                "name": "多次告警",
                "org_unit": seeded.world.station,
                "supervision_level": "strict",
                "category": "parole",
                "term_start": "2026-01-01",
                "term_end": "2026-12-31",
            },
            headers=bearer(seeded.officer),
        ),
        201,
    )
    org_unit_id = await db.fetchval("SELECT org_unit_id FROM subjects WHERE id = $1", created["id"])
    many = alert_service.AUDIT_IDS_MAX + 5
    start = datetime(2026, 2, 1, tzinfo=UTC)
    await db.executemany(
        "INSERT INTO alerts (subject_id, org_unit_id, type, severity, episode_key, started_at, "
        "evidence) VALUES ($1, $2, 'left_activity_area', 'high', $3, $4, $5::jsonb)",
        [
            (
                created["id"],
                org_unit_id,
                f"e{i}",
                start + timedelta(minutes=i),
                json.dumps({"first_fix": {"lon": 116.405, "lat": 39.9}}),
            )
            for i in range(many)
        ],
    )
    request_id = unique("req-")
    body = await expect_json(
        await client.get(
            "/api/v1/alerts",
            params={"subject_id": str(created["id"]), "limit": "5000"},
            headers=bearer(seeded.officer) | {"X-Request-ID": request_id},
        )
    )
    listed = [a["id"] for a in body["alerts"]]
    assert len(listed) == many
    [entry] = await entries_for(db, request_id)
    assert entry["detail"]["alerts"] == many
    assert entry["detail"]["alert_ids"] == listed[: alert_service.AUDIT_IDS_MAX]
    assert entry["detail"]["subject_ids"] == [created["id"]]

    # Subject ids are capped alike (shown with a smaller cap than two counties' worth).
    monkeypatch.setattr(alert_service, "AUDIT_IDS_MAX", 1)
    request_id = unique("req-")
    resp = await client.get(
        "/api/v1/alerts", headers=bearer(seeded.county_admin) | {"X-Request-ID": request_id}
    )
    assert resp.status == 200
    [entry] = await entries_for(db, request_id)
    assert entry["detail"]["subjects"] >= 2
    assert len(entry["detail"]["subject_ids"]) == 1
    assert len(entry["detail"]["alert_ids"]) == 1


async def test_reading_one_alert_is_audited(
    client: Client, seeded: Seeded, db: asyncpg.Connection, officers: Officers
) -> None:
    request_id = unique("req-")
    path = f"/api/v1/alerts/{seeded.alert_id}"
    alert = await expect_json(
        await client.get(
            path,
            params={"purpose": "verify alert"},
            headers=bearer(seeded.officer) | {"X-Request-ID": request_id},
        )
    )
    assert alert["id"] == seeded.alert_id
    [entry] = await entries_for(db, request_id)
    assert entry["officer_id"] == seeded.officer_id
    assert entry["action"] == "alert.read"
    assert entry["subject_id"] == seeded.world.subject_id
    assert entry["purpose"] == "verify alert"
    assert entry["detail"] == {"alert_id": seeded.alert_id}
    found = await audit_api(client, seeded.auditor, subject_id=str(seeded.world.subject_id))
    assert request_id in {e["request_id"] for e in found}

    # Refused reads read nothing and leave nothing.
    _, outsider = await officers.create("officer", seeded.neighbour.station)
    for headers, status in ((bearer(outsider), 404), ({}, 401)):
        request_id = unique("req-")
        resp = await client.get(path, headers=headers | {"X-Request-ID": request_id})
        await expect_error(resp, status)
        assert await entries_for(db, request_id) == []


async def _stream(
    client: Client,
    token: str,
    request_id: str,
    headers: dict[str, str] | None = None,
    **params: str,
) -> ClientResponse:
    resp = await client.get(
        STREAM,
        params=params,
        headers=bearer(token) | {"X-Request-ID": request_id} | (headers or {}),
    )
    assert resp.status == 200, await resp.text()
    # Written once the stream has taken its starting point (and audited its opening).
    assert (await asyncio.wait_for(resp.content.readline(), 5.0)).startswith(b": connected")
    return resp


async def _events(resp: ClientResponse, count: int) -> list[str]:
    """The ids of the next ``count`` events of an SSE stream."""
    ids: list[str] = []
    while len(ids) < count:
        line = (await asyncio.wait_for(resp.content.readline(), 10.0)).decode()
        assert line, "the stream ended"
        if line.startswith("id: "):
            ids.append(line.removeprefix("id: ").strip())
    return ids


async def test_opening_the_stream_is_audited_once_with_where_it_resumes(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    first_event = await db.fetchval(
        "SELECT min(e.id) FROM events e JOIN alerts a ON a.id = e.alert_id WHERE a.subject_id = $1",
        seeded.world.subject_id,
    )
    resume_after = first_event - 1
    request_id = unique("req-")
    resp = await _stream(
        client,
        seeded.officer,
        request_id,
        headers={"Last-Event-ID": str(resume_after)},
        purpose="值班监看",
    )
    try:
        # The station's opened and ended events are replayed: two events, still one entry.
        ids = await _events(resp, 2)
        assert int(ids[0]) == first_event
    finally:
        resp.close()
    [entry] = await entries_for(db, request_id)
    assert entry["officer_id"] == seeded.officer_id
    assert entry["action"] == "alert.stream"
    assert entry["subject_id"] is None
    assert entry["purpose"] == "值班监看"
    assert entry["detail"] == {"start": "Last-Event-ID", "after_event_id": resume_after}
    assert request_id in {e["request_id"] for e in await audit_api(client, seeded.auditor)}

    since_id, now_id = unique("req-"), unique("req-")
    (await _stream(client, seeded.officer, since_id, since=str(resume_after))).close()
    (await _stream(client, seeded.officer, now_id)).close()
    [since] = await entries_for(db, since_id)
    assert since["detail"] == {"start": "since", "after_event_id": resume_after}
    assert since["purpose"] is None
    [now] = await entries_for(db, now_id)
    assert now["detail"]["start"] == "now"
    assert now["detail"]["after_event_id"] >= first_event + 1


async def test_a_refused_stream_leaves_no_entry(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    request_id = unique("req-")
    resp = await client.get(
        STREAM,
        headers=bearer(seeded.officer) | {"X-Request-ID": request_id, "Last-Event-ID": "x"},
    )
    await expect_error(resp, 400, "invalid_request")
    assert await entries_for(db, request_id) == []


async def test_status_entry_names_the_open_alerts_it_showed(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    request_id = unique("req-")
    body = await expect_json(
        await client.get(
            f"/api/v1/subjects/{seeded.world.subject_id}/status",
            headers=bearer(seeded.officer) | {"X-Request-ID": request_id},
        )
    )
    shown = [a["id"] for a in body["open_alerts"]]
    assert seeded.alert_id in shown
    [entry] = await entries_for(db, request_id)
    assert (entry["action"], entry["subject_id"]) == ("position.read", seeded.world.subject_id)
    assert entry["detail"] == {"open_alert_ids": shown}


async def test_acknowledging_again_is_audited_as_no_change(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    path = f"/api/v1/alerts/{seeded.neighbour_alert_id}/acknowledge"
    changes = []
    for _ in range(2):
        request_id = unique("req-")
        resp = await client.post(
            path, headers=bearer(seeded.county_admin) | {"X-Request-ID": request_id}
        )
        assert (await expect_json(resp))["status"] == "acknowledged"
        [entry] = await entries_for(db, request_id)
        assert (entry["action"], entry["subject_id"]) == (
            "alert.acknowledge",
            seeded.neighbour.subject_id,
        )
        changes.append(entry["detail"])
    assert changes == [
        {"alert_id": seeded.neighbour_alert_id, "changed": True},
        {"alert_id": seeded.neighbour_alert_id, "changed": False},
    ]


@pytest.mark.parametrize(
    "path", ["/api/v1/alerts", "/api/v1/alerts/1", STREAM, "/api/v1/subjects/1/status"]
)
async def test_a_purpose_with_nul_is_refused(client: Client, seeded: Seeded, path: str) -> None:
    await expect_error(
        await client.get(path, params={"purpose": "a\u0000b"}, headers=bearer(seeded.officer)),
        400,
        "invalid_text",
    )
