"""PATCH /api/v1/subjects/{id}: a subject's level and responsible officers, changed by whom
the rules allow, within their jurisdiction, audited and announced."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.ingest.profiles import RECHECK_S, ProfileCache
from correction_monitor.web.keys import POLICY, POOL
from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import (
    INSIDE,
    OUTSIDE,
    World,
    alerts_of,
    expect_error,
    expect_json,
    iso_z,
    make_county,
    make_world,
    recent,
    same_instant,
    send,
    sql_row,
    track,
)

pytestmark = pytest.mark.e2e

PASSWORD = "station-pass-9"


@dataclass
class Staff:
    """A world's subject and officers of each kind: ids and tokens."""

    world: World
    ids: dict[str, int]
    tokens: dict[str, str]


async def _officer(
    client: TestClient[Any, Any], admin_token: str, org_unit: str, role: str
) -> tuple[int, str]:
    username = unique("p")
    resp = await client.post(
        "/api/v1/officers",
        json={"username": username, "password": PASSWORD, "role": role, "org_unit": org_unit},
        headers=bearer(admin_token),
    )
    made = await expect_json(resp, 201)
    resp = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": PASSWORD}
    )
    return made["id"], (await expect_json(resp))["access_token"]


async def _staff(client: TestClient[Any, Any], officers: Officers) -> Staff:
    world = await make_world(client, officers, level="strict")
    other_station = unique("s")
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": other_station, "name": "另一司法所", "parent_code": world.county},
        headers=bearer(world.admin_token),
    )
    await expect_json(resp, 201)
    ids, tokens = {}, {}
    for name, unit, role in [
        ("officer", world.station, "officer"),
        ("officer2", world.station, "officer"),
        ("supervisor", world.station, "supervisor"),
        ("auditor", world.station, "auditor"),
        ("county_admin", world.county, "county_admin"),
        ("other_officer", other_station, "officer"),
        ("other_supervisor", other_station, "supervisor"),
        ("inactive", world.station, "officer"),
    ]:
        ids[name], tokens[name] = await _officer(client, world.admin_token, unit, role)
    await sql_row(
        client, "UPDATE officers SET active = false WHERE id = $1 RETURNING id", ids["inactive"]
    )
    return Staff(world, ids, tokens)


@pytest.fixture(scope="module")
async def staff(client: TestClient[Any, Any], officers: Officers) -> Staff:
    """One world for the tests that change nothing."""
    return await _staff(client, officers)


async def _patch(
    client: TestClient[Any, Any], staff: Staff, who: str, body: Any, subject_id: int | None = None
) -> Any:
    return await client.patch(
        f"/api/v1/subjects/{subject_id or staff.world.subject_id}",
        json=body,
        headers=bearer(staff.tokens[who]),
    )


async def test_a_supervisor_changes_the_level_audited_and_announced(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    staff = await _staff(client, officers)
    subject_id = staff.world.subject_id
    resp = await _patch(
        client, staff, "supervisor", {"supervision_level": "normal", "reason": "六个月表现良好"}
    )
    changed = await expect_json(resp)
    assert changed["supervision_level"] == "normal"
    resp = await client.get(
        f"/api/v1/subjects/{subject_id}", headers=bearer(staff.world.admin_token)
    )
    assert await expect_json(resp) == changed
    entry = await sql_row(
        client,
        "SELECT officer_id, detail FROM audit_log WHERE action = 'subject.change' "
        "AND subject_id = $1 ORDER BY id DESC LIMIT 1",
        subject_id,
    )
    assert entry["officer_id"] == staff.ids["supervisor"]
    assert entry["detail"] == {
        "changes": {"supervision_level": {"from": "strict", "to": "normal"}},
        "reason": "六个月表现良好",
    }
    event = await sql_row(
        client,
        "SELECT org_unit_id, data FROM events WHERE name = 'subject.changed' "
        "AND subject_id = $1 ORDER BY id DESC LIMIT 1",
        subject_id,
    )
    assert event["data"]["changes"] == {"supervision_level": {"from": "strict", "to": "normal"}}
    assert event["data"]["changed_by"] == staff.ids["supervisor"]
    # The same value again changes nothing and records nothing.
    resp = await _patch(client, staff, "supervisor", {"supervision_level": "normal"})
    assert (await expect_json(resp))["supervision_level"] == "normal"
    count = await sql_row(
        client,
        "SELECT count(*) AS n FROM events WHERE name = 'subject.changed' AND subject_id = $1",
        subject_id,
    )
    assert count["n"] == 1


async def test_reassigning_and_clearing_the_responsible_officers(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    staff = await _staff(client, officers)
    resp = await _patch(
        client,
        staff,
        "county_admin",
        {
            "responsible_officer_id": staff.ids["officer2"],
            "responsible_supervisor_id": staff.ids["county_admin"],
            "reason": "包保调整",
        },
    )
    changed = await expect_json(resp)
    assert (changed["responsible_officer_id"], changed["responsible_supervisor_id"]) == (
        staff.ids["officer2"],
        staff.ids["county_admin"],
    )
    entry = await sql_row(
        client,
        "SELECT detail FROM audit_log WHERE action = 'subject.change' AND subject_id = $1 "
        "ORDER BY id DESC LIMIT 1",
        staff.world.subject_id,
    )
    assert entry["detail"]["changes"]["responsible_officer_id"]["to"] == staff.ids["officer2"]
    assert entry["detail"]["changes"]["responsible_supervisor_id"] == {
        "from": None,
        "to": staff.ids["county_admin"],
    }
    # A supervisor of the station may be the responsible officer; null clears.
    resp = await _patch(
        client,
        staff,
        "supervisor",
        {"responsible_officer_id": staff.ids["supervisor"], "responsible_supervisor_id": None},
    )
    changed = await expect_json(resp)
    assert (changed["responsible_officer_id"], changed["responsible_supervisor_id"]) == (
        staff.ids["supervisor"],
        None,
    )
    assert changed["supervision_level"] == "strict"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"responsible_officer_id": "other_officer"}, "officer_outside_station"),
        ({"responsible_officer_id": "county_admin"}, "wrong_officer_role"),
        ({"responsible_officer_id": "inactive"}, "inactive_officer"),
        ({"responsible_officer_id": 2_000_000_000}, "unknown_officer"),
        ({"responsible_supervisor_id": "officer"}, "wrong_officer_role"),
        ({"responsible_supervisor_id": "other_supervisor"}, "officer_outside_station"),
    ],
)
async def test_who_may_be_made_responsible(
    client: TestClient[Any, Any], staff: Staff, body: dict[str, Any], code: str
) -> None:
    named = {k: staff.ids[v] if isinstance(v, str) else v for k, v in body.items()}
    await expect_error(await _patch(client, staff, "county_admin", named), 400, code)


async def test_who_may_change_what(
    client: TestClient[Any, Any], officers: Officers, staff: Staff
) -> None:
    for who in ("officer", "auditor"):
        await expect_error(
            await _patch(client, staff, who, {"supervision_level": "normal"}), 403, "forbidden"
        )
        await expect_error(
            await _patch(client, staff, who, {"responsible_officer_id": staff.ids["officer2"]}),
            403,
            "forbidden",
        )
    # A supervisor of another station does not see the subject.
    await expect_error(
        await _patch(client, staff, "other_supervisor", {"supervision_level": "normal"}),
        404,
        "not_found",
    )
    # Nor does the administrator of another county.
    elsewhere = await make_county(officers)
    _, outsider = await _officer(client, elsewhere.admin_token, elsewhere.code, "county_admin")
    resp = await client.patch(
        f"/api/v1/subjects/{staff.world.subject_id}",
        json={"supervision_level": "normal"},
        headers=bearer(outsider),
    )
    await expect_error(resp, 404, "not_found")
    await expect_error(
        await _patch(client, staff, "supervisor", {"supervision_level": "lenient"}, 2_000_000_000),
        404,
        "not_found",
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": "only a reason"},
        {"supervision_level": None},
        {"supervision_level": "relaxed"},
        {"supervision_level": "normal", "category": "parole"},
        {"responsible_officer_id": "seven"},
        {"responsible_officer_id": 0},
        [1, 2],
    ],
)
async def test_bad_changes_are_400(client: TestClient[Any, Any], staff: Staff, body: Any) -> None:
    await expect_error(await _patch(client, staff, "supervisor", body), 400)
    resp = await client.get(
        f"/api/v1/subjects/{staff.world.subject_id}", headers=bearer(staff.tokens["supervisor"])
    )
    assert (await expect_json(resp))["supervision_level"] == "strict"


async def test_a_new_level_governs_the_next_fixes_of_the_process(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    """Strict confirms a breach after 2 minutes, normal after 5: the subject's profile is
    loaded as strict by a first fix, the level changed, and 3 minutes outside open nothing
    until 5 minutes have passed."""
    staff = await _staff(client, officers)
    world = staff.world
    start = recent(60)
    await send(client, world, track(start, [INSIDE]))
    resp = await _patch(client, staff, "supervisor", {"supervision_level": "normal"})
    assert (await expect_json(resp))["supervision_level"] == "normal"
    outside = start + timedelta(minutes=1)
    await send(client, world, track(outside, [OUTSIDE] * 4))  # 3 minutes outside
    assert await alerts_of(client, world, type="left_activity_area") == []
    await send(client, world, track(outside + timedelta(minutes=4), [OUTSIDE] * 3))
    [alert] = await alerts_of(client, world, type="left_activity_area")
    assert same_instant(alert["started_at"], iso_z(outside))


async def test_a_new_level_reaches_other_processes_within_seconds(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    staff = await _staff(client, officers)
    subject_id = staff.world.subject_id
    other = ProfileCache(client.app[POLICY])  # another process's cache
    async with client.app[POOL].acquire() as conn:
        before = await other.get_many(conn, [subject_id])
        assert before[subject_id].level == "strict"
        resp = await _patch(client, staff, "supervisor", {"supervision_level": "normal"})
        await expect_json(resp)
        await asyncio.sleep(RECHECK_S + 0.2)
        after = await other.get_many(conn, [subject_id])
    assert after[subject_id].level == "normal"
