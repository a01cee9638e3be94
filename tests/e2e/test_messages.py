"""Messages to the subject's app: officers send notices (casework roles, jurisdiction,
audited), the app lists its own and marks them read, and officers see when they were read."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer
from tests.e2e.helpers import County, expect_error, expect_json, make_county, make_world, sql_row

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
async def county(officers: Officers) -> County:
    return await make_county(officers)


async def test_a_notice_is_read_and_officers_see_the_receipt(
    client: Client, officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    _, officer = await officers.create("officer", world.station)
    resp = await client.post(
        f"/api/v1/subjects/{world.subject_id}/messages",
        json={"text": "请于明日上午到司法所报到。"},
        headers=bearer(officer),
    )
    sent = await expect_json(resp, 201)
    assert sent["kind"] == "notice"
    assert sent["text"] == "请于明日上午到司法所报到。"
    assert sent["read_at"] is None
    assert sent["subject_id"] == world.subject_id
    assert isinstance(sent["sent_by"], int)
    audit = await sql_row(
        client,
        "SELECT officer_id, detail FROM audit_log WHERE action = 'message.send'"
        " AND subject_id = $1",
        world.subject_id,
    )
    assert audit["officer_id"] == sent["sent_by"]
    assert audit["detail"]["message_id"] == sent["id"]
    event = await sql_row(
        client,
        "SELECT data FROM events WHERE name = 'message.sent' AND subject_id = $1",
        world.subject_id,
    )
    assert event["data"]["message_id"] == sent["id"]

    device = bearer(world.device_token)
    listed = await expect_json(await client.get("/api/v1/me/messages", headers=device))
    assert [m["id"] for m in listed["messages"]] == [sent["id"]]
    message = listed["messages"][0]
    assert set(message) >= {"id", "kind", "text", "created_at", "read_at"}
    assert message["read_at"] is None

    read = await expect_json(
        await client.post(f"/api/v1/me/messages/{sent['id']}/read", headers=device)
    )
    assert read["id"] == sent["id"]
    assert read["read_at"] is not None
    # Reading again keeps the first receipt.
    again = await expect_json(
        await client.post(f"/api/v1/me/messages/{sent['id']}/read", headers=device)
    )
    assert again["read_at"] == read["read_at"]

    seen = await expect_json(
        await client.get(f"/api/v1/subjects/{world.subject_id}/messages", headers=bearer(officer))
    )
    assert [(m["id"], m["read_at"]) for m in seen["messages"]] == [(sent["id"], read["read_at"])]

    # ``since`` lists only what came after.
    second = await expect_json(
        await client.post(
            f"/api/v1/subjects/{world.subject_id}/messages",
            json={"text": "  second  "},
            headers=bearer(officer),
        ),
        201,
    )
    assert second["text"] == "second"
    after = await expect_json(
        await client.get("/api/v1/me/messages", params={"since": str(sent["id"])}, headers=device)
    )
    assert [m["id"] for m in after["messages"]] == [second["id"]]


async def test_a_subject_sees_and_reads_only_its_own(
    client: Client, officers: Officers, county: County
) -> None:
    mine = await make_world(client, officers, in_county=county)
    theirs = await make_world(client, officers, in_county=county)
    resp = await client.post(
        f"/api/v1/subjects/{theirs.subject_id}/messages",
        json={"text": "只给他"},
        headers=bearer(county.admin_token),
    )
    theirs_id = (await expect_json(resp, 201))["id"]
    listed = await expect_json(
        await client.get("/api/v1/me/messages", headers=bearer(mine.device_token))
    )
    assert listed["messages"] == []
    await expect_error(
        await client.post(
            f"/api/v1/me/messages/{theirs_id}/read", headers=bearer(mine.device_token)
        ),
        404,
        "not_found",
    )
    row = await sql_row(client, "SELECT read_at FROM subject_messages WHERE id = $1", theirs_id)
    assert row["read_at"] is None
    for bad in ("999999999", "0", "abc", "99999999999999999999"):
        await expect_error(
            await client.post(f"/api/v1/me/messages/{bad}/read", headers=bearer(mine.device_token)),
            404,
        )
    for since in ("-1", "x", "1.5"):
        await expect_error(
            await client.get(
                "/api/v1/me/messages",
                params={"since": since},
                headers=bearer(mine.device_token),
            ),
            400,
            "invalid_request",
        )
    await expect_error(await client.get("/api/v1/me/messages"), 401)
    await expect_error(await client.post(f"/api/v1/me/messages/{theirs_id}/read"), 401)


async def test_officers_send_within_their_jurisdiction_and_role(
    client: Client, officers: Officers, county: County
) -> None:
    world = await make_world(client, officers, in_county=county)
    elsewhere = await make_world(client, officers)  # another county
    _, neighbour = await officers.create("officer", elsewhere.station)
    _, auditor = await officers.create("auditor", county.code)
    path = f"/api/v1/subjects/{world.subject_id}/messages"
    await expect_error(await client.post(path, json={"text": "hi"}, headers=bearer(neighbour)), 404)
    await expect_error(await client.get(path, headers=bearer(neighbour)), 404)
    await expect_error(
        await client.post(path, json={"text": "hi"}, headers=bearer(auditor)), 403, "forbidden"
    )
    # An auditor reads what the subject was told.
    assert (await expect_json(await client.get(path, headers=bearer(auditor))))["messages"] == []
    admin = bearer(county.admin_token)
    for body in ({}, {"text": ""}, {"text": "   "}, {"text": 5}, {"text": "x" * 2001}):
        await expect_error(await client.post(path, json=body, headers=admin), 400)
    await expect_error(
        await client.post(path, data=b"not json", headers=admin), 400, "invalid_json"
    )
    await expect_error(
        await client.post(
            "/api/v1/subjects/999999999/messages", json={"text": "hi"}, headers=admin
        ),
        404,
    )
    await expect_error(await client.post(path, json={"text": "hi"}), 401)
