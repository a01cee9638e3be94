"""Who may see and do what (RULES.md §4), and when a bearer token stops working, over HTTP.

The module builds two counties: county 1 with stations A and B, county 2 with station C, one
subject and one fence in each station, and officers of every role. Subjects outside a
caller's jurisdiction answer 404 (their existence is not revealed), and never appear in lists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import expect_error, expect_json

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]

SQUARE = [[116.30, 39.90], [116.31, 39.90], [116.31, 39.91], [116.30, 39.91], [116.30, 39.90]]


@dataclass(frozen=True)
class World:
    """Codes, ids and tokens of the two counties."""

    county1: str
    station_a: str
    station_b: str
    county2: str
    station_c: str
    subject: dict[str, int]  # station key "a" / "b" / "c" -> subject id
    fence: dict[str, int]  # station key -> geofence id
    token: dict[str, str]  # role key -> bearer token
    username: dict[str, str]  # role key -> username


@pytest.fixture(scope="module")
async def world(client: Client, officers: Officers) -> World:
    county1, county2 = unique("c"), unique("c")
    station_a, station_b, station_c = unique("sa"), unique("sb"), unique("sc")
    token: dict[str, str] = {}
    username: dict[str, str] = {}
    for key, role, org, parent in (
        ("admin", "admin", unique("hq"), None),
        ("county1", "county_admin", county1, None),
        ("county2", "county_admin", county2, None),
        ("auditor1", "auditor", county1, None),
        ("officer_a", "officer", station_a, county1),
        ("supervisor_a", "supervisor", station_a, county1),
        ("officer_b", "officer", station_b, county1),
        ("officer_c", "officer", station_c, county2),
    ):
        username[key], token[key] = await officers.create(role, org, parent=parent)

    admin = bearer(token["admin"])
    subject: dict[str, int] = {}
    fence: dict[str, int] = {}
    for key, station in (("a", station_a), ("b", station_b), ("c", station_c)):
        created = await expect_json(
            await client.post(
                "/api/v1/geofences",
                json={
                    "name": f"fence {key}",
                    "kind": "activity_area",
                    "org_unit": station,
                    "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
                },
                headers=admin,
            ),
            201,
        )
        fence[key] = created["id"]
        created = await expect_json(
            await client.post(
                "/api/v1/subjects",
                json={
                    "name": f"subject {key}",
                    "org_unit": station,
                    "supervision_level": "normal",
                    "category": "probation",
                    "term_start": "2026-01-01",
                    "term_end": "2026-12-31",
                    "activity_area_id": fence[key],
                    "exclusion_zone_ids": [],
                },
                headers=admin,
            ),
            201,
        )
        subject[key] = created["id"]
    return World(county1, station_a, station_b, county2, station_c, subject, fence, token, username)


async def listed_subject_ids(client: Client, token: str) -> set[int]:
    body = await expect_json(await client.get("/api/v1/subjects?limit=1000", headers=bearer(token)))
    return {s["id"] for s in body["subjects"]}


async def can_read_subject(client: Client, token: str, subject_id: int) -> bool:
    """Whether every per-subject read answers 200 (True) or every one answers 404 (False)."""
    reads = [
        f"/api/v1/subjects/{subject_id}",
        f"/api/v1/subjects/{subject_id}/track?purpose=access-test",
        f"/api/v1/subjects/{subject_id}/devices",
    ]
    statuses = set()
    for path in reads:
        resp = await client.get(path, headers=bearer(token))
        if resp.status == 404:
            await expect_error(resp, 404, "not_found")
        statuses.add(resp.status)
    assert len(statuses) == 1, (subject_id, statuses)
    status = statuses.pop()
    assert status in (200, 404)
    return status == 200


# What each caller must see of the three subjects.
VISIBILITY = [
    ("officer_a", {"a"}),
    ("supervisor_a", {"a"}),
    ("officer_b", {"b"}),
    ("officer_c", {"c"}),
    ("county1", {"a", "b"}),
    ("county2", {"c"}),
    ("auditor1", {"a", "b"}),
    ("admin", {"a", "b", "c"}),
]


@pytest.mark.parametrize(("who", "visible"), VISIBILITY)
async def test_subjects_visible_only_within_jurisdiction(
    client: Client, world: World, who: str, visible: set[str]
) -> None:
    token = world.token[who]
    listed = await listed_subject_ids(client, token)
    for key, subject_id in world.subject.items():
        assert (subject_id in listed) == (key in visible), (who, key)
        assert await can_read_subject(client, token, subject_id) == (key in visible), (who, key)


@pytest.mark.parametrize(("who", "visible"), VISIBILITY)
async def test_geofences_visible_only_within_jurisdiction(
    client: Client, world: World, who: str, visible: set[str]
) -> None:
    token = bearer(world.token[who])
    body = await expect_json(await client.get("/api/v1/geofences", headers=token))
    listed = {f["id"] for f in body["geofences"]}
    for key, fence_id in world.fence.items():
        assert (fence_id in listed) == (key in visible), (who, key)
        resp = await client.get(f"/api/v1/geofences/{fence_id}", headers=token)
        assert resp.status == (200 if key in visible else 404), (who, key)


async def test_org_units_listed_within_jurisdiction(client: Client, world: World) -> None:
    def codes(body: Any) -> set[str]:
        return {u["code"] for u in body["org_units"]}

    ours = {world.county1, world.station_a, world.station_b, world.county2, world.station_c}
    seen = codes(
        await expect_json(
            await client.get("/api/v1/org-units", headers=bearer(world.token["officer_a"]))
        )
    )
    assert seen & ours == {world.station_a}
    seen = codes(
        await expect_json(
            await client.get("/api/v1/org-units", headers=bearer(world.token["county1"]))
        )
    )
    assert seen & ours == {world.county1, world.station_a, world.station_b}
    seen = codes(
        await expect_json(
            await client.get("/api/v1/org-units", headers=bearer(world.token["admin"]))
        )
    )
    assert seen >= ours


@pytest.mark.parametrize("who", ["officer_a", "supervisor_a"])
async def test_station_staff_cannot_act_on_another_station(
    client: Client, world: World, who: str
) -> None:
    token = bearer(world.token[who])
    other = world.subject["b"]
    await expect_error(
        await client.post(f"/api/v1/subjects/{other}/devices", json={}, headers=token),
        404,
        "not_found",
    )
    # Enrol a device on the visible subject via the admin, then try to revoke it as a
    # neighbour: still a 404, and the device keeps working.
    device = await expect_json(
        await client.post(
            f"/api/v1/subjects/{other}/devices", json={}, headers=bearer(world.token["admin"])
        ),
        201,
    )
    await expect_error(
        await client.delete(
            f"/api/v1/subjects/{other}/devices/{device['device_id']}", headers=token
        ),
        404,
        "not_found",
    )
    listed = await expect_json(
        await client.get(f"/api/v1/subjects/{other}/devices", headers=bearer(world.token["admin"]))
    )
    assert [
        d["revoked_at"] for d in listed["devices"] if d["device_id"] == device["device_id"]
    ] == [None]
    # Creating a subject in another station is refused outright.
    await expect_error(
        await client.post(
            "/api/v1/subjects",
            json={
                "name": "x",
                "org_unit": world.station_b,
                "supervision_level": "normal",
                "category": "probation",
                "term_start": "2026-01-01",
                "term_end": "2026-12-31",
            },
            headers=token,
        ),
        403,
        "forbidden",
    )


async def test_officer_creates_subject_in_own_station_with_own_fence(
    client: Client, world: World, database_url: str
) -> None:
    base = {
        "name": "王五",
        "org_unit": world.station_a,
        "supervision_level": "lenient",
        "category": "control",
        "term_start": "2026-03-01",
        "term_end": "2026-09-01",
    }
    token = bearer(world.token["officer_a"])
    # A fence of another station does not exist as far as this officer can tell.
    error = await expect_error(
        await client.post(
            "/api/v1/subjects", json=base | {"activity_area_id": world.fence["b"]}, headers=token
        ),
        400,
        "unknown_geofence",
    )
    assert str(world.fence["b"]) in error["message"]

    conn = await asyncpg.connect(database_url)
    try:
        ids = {
            r["username"]: r["id"]
            for r in await conn.fetch(
                "SELECT id, username FROM officers WHERE username = ANY($1::text[])",
                [world.username[k] for k in ("officer_a", "supervisor_a", "officer_c")],
            )
        }
    finally:
        await conn.close()
    # A responsible supervisor outside the jurisdiction is as unknown as a missing one.
    await expect_error(
        await client.post(
            "/api/v1/subjects",
            json=base | {"responsible_supervisor_id": ids[world.username["officer_c"]]},
            headers=token,
        ),
        400,
        "unknown_officer",
    )
    created = await expect_json(
        await client.post(
            "/api/v1/subjects",
            json=base
            | {
                "activity_area_id": world.fence["a"],
                "responsible_supervisor_id": ids[world.username["supervisor_a"]],
            },
            headers=token,
        ),
        201,
    )
    # Without a responsible officer named, the creating officer is responsible.
    assert created["responsible_officer_id"] == ids[world.username["officer_a"]]
    assert created["responsible_supervisor_id"] == ids[world.username["supervisor_a"]]
    assert created["id"] in await listed_subject_ids(client, world.token["officer_a"])
    assert created["id"] not in await listed_subject_ids(client, world.token["officer_b"])


async def test_county_admin_configures_only_own_county(client: Client, world: World) -> None:
    fence = {
        "name": "x",
        "kind": "exclusion",
        "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
    }
    token = bearer(world.token["county1"])
    await expect_json(
        await client.post(
            "/api/v1/geofences", json=fence | {"org_unit": world.station_b}, headers=token
        ),
        201,
    )
    await expect_error(
        await client.post(
            "/api/v1/geofences", json=fence | {"org_unit": world.station_c}, headers=token
        ),
        403,
        "forbidden",
    )


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("auditor1", 200),
        ("admin", 200),
        ("officer_a", 403),
        ("supervisor_a", 403),
        ("county1", 403),
    ],
)
async def test_audit_log_readers(client: Client, world: World, who: str, status: int) -> None:
    resp = await client.get("/api/v1/audit", headers=bearer(world.token[who]))
    if status == 200:
        assert isinstance((await expect_json(resp))["entries"], list)
    else:
        await expect_error(resp, status, "forbidden")


async def test_auditor_reads_audit_entries_of_own_county_only(client: Client, world: World) -> None:
    admin = bearer(world.token["admin"])
    purpose = unique("purpose-")
    for subject_id in world.subject.values():
        resp = await client.get(
            f"/api/v1/subjects/{subject_id}/track", params={"purpose": purpose}, headers=admin
        )
        assert resp.status == 200, await resp.text()

    def about(body: Any) -> set[int]:
        return {e["subject_id"] for e in body["entries"] if e["purpose"] == purpose}

    everything = await expect_json(await client.get("/api/v1/audit?limit=1000", headers=admin))
    assert about(everything) == set(world.subject.values())
    county = await expect_json(
        await client.get("/api/v1/audit?limit=1000", headers=bearer(world.token["auditor1"]))
    )
    assert about(county) == {world.subject["a"], world.subject["b"]}
    # Asking by subject outside the county finds nothing rather than failing.
    outside = await expect_json(
        await client.get(
            f"/api/v1/audit?subject_id={world.subject['c']}",
            headers=bearer(world.token["auditor1"]),
        )
    )
    assert outside["entries"] == []


async def test_auditor_is_read_only(client: Client, world: World) -> None:
    token = bearer(world.token["auditor1"])
    subject_id = world.subject["a"]
    await expect_json(await client.get(f"/api/v1/subjects/{subject_id}", headers=token))
    await expect_error(
        await client.post(f"/api/v1/subjects/{subject_id}/devices", json={}, headers=token),
        403,
        "forbidden",
    )
    await expect_error(
        await client.post(
            "/api/v1/geofences",
            json={
                "name": "x",
                "kind": "exclusion",
                "org_unit": world.station_a,
                "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
            },
            headers=token,
        ),
        403,
        "forbidden",
    )


# --- token expiry and revocation -------------------------------------------------------------


def digest(token: str) -> bytes:
    """What the database keeps of a bearer token (SHA-256 of its text)."""
    return hashlib.sha256(token.encode()).digest()


async def test_expired_token_is_refused(
    client: Client, officers: Officers, database_url: str
) -> None:
    _, token = await officers.create("officer", unique("s"))
    assert (await client.get("/api/v1/subjects", headers=bearer(token))).status == 200
    conn = await asyncpg.connect(database_url)
    try:
        changed = await conn.execute(
            "UPDATE officer_tokens SET expires_at = now() - interval '1 second' "
            "WHERE token_hash = $1",
            digest(token),
        )
        assert changed == "UPDATE 1"
    finally:
        await conn.close()
    resp = await client.get("/api/v1/subjects", headers=bearer(token))
    await expect_error(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-token",
        "Bearer " + "A" * 43,
        "Bearer ",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "bearer",
        "",
        "Bearer " + "x" * 5000,
    ],
)
async def test_garbage_authorization_is_refused(client: Client, authorization: str) -> None:
    resp = await client.get("/api/v1/subjects", headers={"Authorization": authorization})
    await expect_error(resp, 401, "unauthorized")


async def test_another_officers_token_digest_is_not_a_token(
    client: Client, officers: Officers
) -> None:
    # The database keeps digests; presenting the digest itself must not authenticate.
    _, token = await officers.create("officer", unique("s"))
    resp = await client.get("/api/v1/subjects", headers=bearer(digest(token).hex()))
    await expect_error(resp, 401, "unauthorized")


async def test_deactivated_officer_is_refused(
    client: Client, officers: Officers, database_url: str
) -> None:
    username, token = await officers.create("officer", unique("s"), password="still-valid-1")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE officers SET active = false WHERE username = $1", username)
    finally:
        await conn.close()
    # The token issued before deactivation dies with it, and no new one is issued.
    await expect_error(
        await client.get("/api/v1/subjects", headers=bearer(token)), 401, "unauthorized"
    )
    await expect_error(
        await client.post(
            "/api/v1/auth/token", json={"username": username, "password": "still-valid-1"}
        ),
        401,
        "invalid_credentials",
    )
