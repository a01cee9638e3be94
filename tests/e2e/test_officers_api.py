"""Officer accounts over HTTP: who may create whom where, and who sees which officers."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import County, expect_error, expect_json, make_county, sql_row

pytestmark = pytest.mark.e2e

PASSWORD = "station-pass-9"


async def _station(client: TestClient[Any, Any], county: County) -> str:
    code = unique("s")
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": code, "name": "城关司法所", "parent_code": county.code},
        headers=bearer(county.admin_token),
    )
    await expect_json(resp, 201)
    return code


async def _create(
    client: TestClient[Any, Any], token: str, org_unit: str, role: str = "officer", **more: Any
) -> Any:
    body = {"username": unique("o"), "password": PASSWORD, "role": role, "org_unit": org_unit}
    return await client.post("/api/v1/officers", json=body | more, headers=bearer(token))


async def _login(client: TestClient[Any, Any], username: str, password: str = PASSWORD) -> str:
    resp = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": password}
    )
    token: str = (await expect_json(resp))["access_token"]
    return token


async def _county_admin(client: TestClient[Any, Any], county: County) -> str:
    resp = await _create(client, county.admin_token, county.code, role="county_admin")
    return await _login(client, (await expect_json(resp, 201))["username"])


async def test_a_county_admin_creates_an_officer_who_can_log_in(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    station = await _station(client, county)
    admin_of_county = await _county_admin(client, county)
    resp = await _create(client, admin_of_county, station, name="王警官", phone="+86 138 0000 0001")
    made = await expect_json(resp, 201)
    assert set(made) == {"id", "username", "role", "org_unit", "name", "phone", "active"}
    assert (made["role"], made["org_unit"], made["name"], made["phone"], made["active"]) == (
        "officer",
        station,
        "王警官",
        "+86 138 0000 0001",
        True,
    )
    token = await _login(client, made["username"])
    listed = await expect_json(await client.get("/api/v1/officers", headers=bearer(token)))
    assert [o["id"] for o in listed["officers"]] == [made["id"]]
    stored = await sql_row(
        client, "SELECT display_name, phone FROM officers WHERE id = $1", made["id"]
    )
    assert (stored["display_name"], stored["phone"]) == ("王警官", "+86 138 0000 0001")
    entry = await sql_row(
        client,
        "SELECT officer_id, action, detail FROM audit_log WHERE action = 'officer.create' "
        "AND (detail->>'officer_id')::int = $1",
        made["id"],
    )
    assert entry["detail"]["org_unit"] == station
    assert entry["officer_id"] is not None
    event = await sql_row(
        client,
        "SELECT name, data FROM events WHERE name = 'officer.created' "
        "AND (data->>'officer_id')::int = $1",
        made["id"],
    )
    assert event["data"]["role"] == "officer"


async def test_what_a_county_admin_may_not_create(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    station = await _station(client, county)
    elsewhere = await make_county(officers)
    admin_of_county = await _county_admin(client, county)
    await expect_error(
        await _create(client, admin_of_county, station, role="admin"), 403, "forbidden"
    )
    await expect_error(await _create(client, admin_of_county, elsewhere.code), 404, "not_found")
    await expect_error(await _create(client, admin_of_county, unique("none")), 404, "not_found")
    await expect_error(
        await _create(client, admin_of_county, station, password="short"), 400, "weak_password"
    )
    await expect_error(await _create(client, admin_of_county, station, role="warden"), 400)
    await expect_error(await _create(client, admin_of_county, station, phone="call me"), 400)
    await expect_error(await _create(client, admin_of_county, station, badge="7"), 400)
    made = await expect_json(await _create(client, admin_of_county, station), 201)
    resp = await client.post(
        "/api/v1/officers",
        json={
            "username": made["username"],
            "password": PASSWORD,
            "role": "officer",
            "org_unit": station,
        },
        headers=bearer(admin_of_county),
    )
    await expect_error(resp, 409, "officer_exists")
    # An administrator creates anywhere, administrators too.
    resp = await _create(client, county.admin_token, elsewhere.code, role="admin")
    assert (await expect_json(resp, 201))["role"] == "admin"


@pytest.mark.parametrize("role", ["officer", "supervisor", "auditor"])
async def test_other_roles_may_not_create_officers(
    client: TestClient[Any, Any], officers: Officers, role: str
) -> None:
    county = await make_county(officers)
    station = await _station(client, county)
    made = await expect_json(await _create(client, county.admin_token, station, role=role), 201)
    token = await _login(client, made["username"])
    await expect_error(await _create(client, token, station), 403, "forbidden")


async def test_officers_are_listed_within_the_callers_jurisdiction(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    station_a = await _station(client, county)
    station_b = await _station(client, county)
    elsewhere = await make_county(officers)
    admin_of_county = await _county_admin(client, county)
    a = await expect_json(await _create(client, admin_of_county, station_a), 201)
    b = await expect_json(await _create(client, admin_of_county, station_b), 201)
    other = await expect_json(await _create(client, elsewhere.admin_token, elsewhere.code), 201)

    listed = await expect_json(
        await client.get("/api/v1/officers", headers=bearer(admin_of_county))
    )
    ids = {o["id"] for o in listed["officers"]}
    assert {a["id"], b["id"]} <= ids
    assert other["id"] not in ids
    assert all(o["org_unit"] in {county.code, station_a, station_b} for o in listed["officers"])

    resp = await client.get(
        "/api/v1/officers", params={"org_unit": station_a}, headers=bearer(admin_of_county)
    )
    assert [o["id"] for o in (await expect_json(resp))["officers"]] == [a["id"]]
    resp = await client.get(
        "/api/v1/officers", params={"org_unit": elsewhere.code}, headers=bearer(admin_of_county)
    )
    await expect_error(resp, 404, "not_found")

    token_a = await _login(client, a["username"])
    listed = await expect_json(await client.get("/api/v1/officers", headers=bearer(token_a)))
    assert [o["id"] for o in listed["officers"]] == [a["id"]]
    assert "password_hash" not in listed["officers"][0]
    await expect_error(await client.get("/api/v1/officers"), 401)
