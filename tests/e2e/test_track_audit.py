"""A subject's track over HTTP, and the audit row every read of it leaves (RULES.md §4).

Fixes are seeded straight into the partitioned ``fixes`` table, so the read path is tested
on its own, whatever the ingest pipeline does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer, unique
from tests.e2e.helpers import expect_error, expect_json

pytestmark = pytest.mark.e2e

Client = TestClient[Any, Any]

SQUARE = [[116.30, 39.90], [116.31, 39.90], [116.31, 39.91], [116.30, 39.91], [116.30, 39.90]]

# The read window of most tests: [23:30, 00:30) UTC, across a UTC day boundary.
FROM = datetime(2026, 3, 14, 23, 30, tzinfo=UTC)
TO = datetime(2026, 3, 15, 0, 30, tzinfo=UTC)

SENT_GCJ02, NO_ACCURACY, MOCK = 16, 64, 2


def epoch_ms(ts: datetime) -> str:
    return str(int(ts.timestamp() * 1000))


@dataclass(frozen=True)
class Seeded:
    subject_id: int
    other_subject_id: int
    device_id: int
    admin: str
    admin_officer_id: int
    auditor: str
    outsider: str
    # (ts, lon_e7, lat_e7, accuracy_m, flags) of the subject's fixes inside [FROM, TO), by time.
    inside: list[tuple[datetime, int, int, int, int]]


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def seeded(client: Client, officers: Officers, db: asyncpg.Connection) -> Seeded:
    county, station = unique("c"), unique("s")
    admin_name, admin = await officers.create("admin", unique("hq"))
    _, auditor = await officers.create("auditor", county)
    _, outsider = await officers.create("officer", unique("s"), parent=county)
    await officers.create("officer", station, parent=county)

    subject_ids = []
    for name in ("track subject", "neighbour"):
        created = await expect_json(
            await client.post(
                "/api/v1/subjects",
                json={
                    "name": name,
                    "org_unit": station,
                    "supervision_level": "strict",
                    "category": "parole",
                    "term_start": "2026-01-01",
                    "term_end": "2026-12-31",
                },
                headers=bearer(admin),
            ),
            201,
        )
        subject_ids.append(created["id"])
    subject_id, other_id = subject_ids
    device = await expect_json(
        await client.post(f"/api/v1/subjects/{subject_id}/devices", json={}, headers=bearer(admin)),
        201,
    )
    device_id = device["device_id"]

    minute = timedelta(minutes=1)
    inside = [
        (FROM, 1163000000, 399000000, 5, 0),  # exactly at `from`: included
        (FROM + 20 * minute, 1163000123, 399000456, 12, MOCK),
        (datetime(2026, 3, 15, 0, 5, tzinfo=UTC), 1163010000, 399010000, 30, 0),
        (TO - timedelta(milliseconds=1), 1163020000, 399020000, 8, SENT_GCJ02 | NO_ACCURACY),
    ]
    outside = [
        (FROM - timedelta(milliseconds=1), 1162000000, 398000000, 5, 0),
        (TO, 1164000000, 400000000, 5, 0),  # exactly at `to`: excluded
        (TO + timedelta(hours=5), 1164000000, 400000000, 5, 0),
    ]
    for day in (date(2026, 3, 14), date(2026, 3, 15)):
        await db.execute("SELECT cm_ensure_fix_partition($1)", day)
    rows = [
        (ts, subject_id, device_id, lon, lat, i, acc, flags)
        for i, (ts, lon, lat, acc, flags) in enumerate(inside + outside)
    ]
    # Another subject's fix inside the window must never show up.
    rows.append((FROM + 2 * minute, other_id, device_id, 1165000000, 401000000, 99, 5, 0))
    # Stored out of time order on purpose: the read orders them.
    rows.reverse()
    await db.executemany(
        "INSERT INTO fixes (ts, subject_id, device_id, lon_e7, lat_e7, client_key, accuracy_m, "
        "flags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        rows,
    )
    admin_officer_id = await db.fetchval("SELECT id FROM officers WHERE username = $1", admin_name)
    return Seeded(
        subject_id, other_id, device_id, admin, admin_officer_id, auditor, outsider, inside
    )


async def test_track_is_time_ordered_wgs84_geojson_within_the_window(
    client: Client, seeded: Seeded
) -> None:
    body = await expect_json(
        await client.get(
            f"/api/v1/subjects/{seeded.subject_id}/track",
            # Beijing-time ISO for `from` and epoch milliseconds for `to`: the same instants.
            params={"from": "2026-03-15T07:30:00+08:00", "to": epoch_ms(TO), "purpose": "test"},
            headers=bearer(seeded.admin),
        )
    )
    assert body["type"] == "FeatureCollection"
    assert body["properties"]["crs"] == "wgs84"
    assert body["properties"]["subject_id"] == seeded.subject_id
    assert body["properties"]["from"] == "2026-03-14T23:30:00Z"
    assert body["properties"]["to"] == "2026-03-15T00:30:00Z"
    assert body["properties"]["truncated"] is False
    features = body["features"]
    assert len(features) == len(seeded.inside)
    for got, (ts, lon_e7, lat_e7, accuracy, flags) in zip(features, seeded.inside, strict=True):
        assert got["type"] == "Feature"
        assert got["geometry"]["type"] == "Point"
        lon, lat = got["geometry"]["coordinates"]
        assert lon == pytest.approx(lon_e7 / 1e7, abs=1e-9)
        assert lat == pytest.approx(lat_e7 / 1e7, abs=1e-9)
        props = got["properties"]
        assert datetime.fromisoformat(props["ts"].replace("Z", "+00:00")) == ts
        assert props["accuracy_m"] == accuracy
        assert props["device_id"] == seeded.device_id
        expected_flags = {
            name
            for bit, name in (
                (MOCK, "mock"),
                (SENT_GCJ02, "sent_gcj02"),
                (NO_ACCURACY, "no_accuracy"),
            )
            if flags & bit
        }
        assert set(props["flags"]) == expected_flags
    stamps = [f["properties"]["ts"] for f in features]
    assert stamps == sorted(stamps)


async def test_track_defaults_to_the_day_before_to(client: Client, seeded: Seeded) -> None:
    to = FROM + timedelta(minutes=21)
    body = await expect_json(
        await client.get(
            f"/api/v1/subjects/{seeded.subject_id}/track",
            params={"to": to.isoformat()},
            headers=bearer(seeded.admin),
        )
    )
    assert body["properties"]["from"] == "2026-03-13T23:51:00Z"
    stamps = [f["properties"]["ts"] for f in body["features"]]
    # The fix just before `from` of the other tests lies inside this default window.
    assert stamps == [
        "2026-03-14T23:29:59.999000Z",
        "2026-03-14T23:30:00Z",
        "2026-03-14T23:50:00Z",
    ]


async def test_empty_track_is_an_empty_collection(client: Client, seeded: Seeded) -> None:
    body = await expect_json(
        await client.get(
            f"/api/v1/subjects/{seeded.subject_id}/track",
            params={"from": "2025-01-01T00:00:00Z", "to": "2025-01-02T00:00:00Z"},
            headers=bearer(seeded.admin),
        )
    )
    assert body["type"] == "FeatureCollection"
    assert body["features"] == []


async def test_every_read_is_audited_with_officer_purpose_and_request_id(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    path = f"/api/v1/subjects/{seeded.subject_id}/track"
    window = {"from": FROM.isoformat(), "to": TO.isoformat()}
    purpose = f"核查告警 alert {unique('')}"
    sent_id = unique("req-")
    resp = await client.get(
        path,
        params=window | {"purpose": purpose},
        headers=bearer(seeded.admin) | {"X-Request-ID": sent_id},
    )
    assert resp.status == 200
    assert resp.headers["X-Request-ID"] == sent_id
    # A second read, without purpose or request id of its own: a row of its own too.
    resp = await client.get(path, params=window, headers=bearer(seeded.admin))
    assert resp.status == 200
    generated_id = resp.headers["X-Request-ID"]
    assert generated_id
    assert generated_id != sent_id

    rows = await db.fetch(
        "SELECT officer_id, action, subject_id, purpose, request_id, detail FROM audit_log "
        "WHERE request_id = ANY($1::text[]) ORDER BY id",
        [sent_id, generated_id],
    )
    assert [(r["request_id"], r["purpose"]) for r in rows] == [
        (sent_id, purpose),
        (generated_id, None),
    ]
    for row in rows:
        assert row["officer_id"] == seeded.admin_officer_id
        assert row["action"] == "track.read"
        assert row["subject_id"] == seeded.subject_id
        detail = json.loads(row["detail"])
        assert detail["fixes"] == len(seeded.inside)
        assert detail["from"] == "2026-03-14T23:30:00Z"
        assert detail["to"] == "2026-03-15T00:30:00Z"

    # The auditor sees the same rows, newest first, through the API.
    body = await expect_json(
        await client.get(
            "/api/v1/audit",
            params={"subject_id": str(seeded.subject_id), "limit": "1000"},
            headers=bearer(seeded.auditor),
        )
    )
    entries = [e for e in body["entries"] if e["request_id"] in (sent_id, generated_id)]
    assert [e["request_id"] for e in entries] == [generated_id, sent_id]
    newest, oldest = entries
    assert oldest["purpose"] == purpose
    assert newest["purpose"] is None
    for entry in entries:
        assert entry["officer_id"] == seeded.admin_officer_id
        assert entry["action"] == "track.read"
        assert entry["subject_id"] == seeded.subject_id
        assert datetime.fromisoformat(entry["at"]).tzinfo is not None
    ids = [e["id"] for e in body["entries"]]
    assert ids == sorted(ids, reverse=True)


async def test_refused_reads_leave_no_read_record(
    client: Client, seeded: Seeded, db: asyncpg.Connection
) -> None:
    path = f"/api/v1/subjects/{seeded.subject_id}/track"
    cases = [
        (bearer(seeded.outsider), {}, 404),  # another station's officer
        (bearer(seeded.admin), {"from": "2026-03-14T23:30:00"}, 400),  # no offset
    ]
    for headers, params, status in cases:
        request_id = unique("req-")
        resp = await client.get(path, params=params, headers=headers | {"X-Request-ID": request_id})
        await expect_error(resp, status)
        count = await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE request_id = $1", request_id
        )
        assert count == 0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2026-03-14T25:30:00"}, "invalid_time"),
        ({"from": "yesterday"}, "invalid_time"),
        ({"to": "2026-13-01T00:00:00Z"}, "invalid_time"),
        ({"from": "2026-03-15T00:00:00Z", "to": "2026-03-15T00:00:00Z"}, "invalid_time"),
        ({"from": "2026-03-15T00:00:00Z", "to": "2026-03-14T00:00:00Z"}, "invalid_time"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "span_too_long"),
        ({"to": "99999999999999999999"}, "invalid_time"),
        ({"from": "-99999999999999999", "to": "0"}, "invalid_time"),
        ({"to": "1e3"}, "invalid_time"),
        ({"purpose": "a\u0000b"}, "invalid_text"),
    ],
)
async def test_bad_track_query(
    client: Client, seeded: Seeded, params: dict[str, str], code: str
) -> None:
    await expect_error(
        await client.get(
            f"/api/v1/subjects/{seeded.subject_id}/track",
            params=params,
            headers=bearer(seeded.admin),
        ),
        400,
        code,
    )


async def test_track_near_the_ends_of_time(client: Client, seeded: Seeded) -> None:
    """Instants datetime can hold but the default window would step outside of."""
    path = f"/api/v1/subjects/{seeded.subject_id}/track"
    for to in ("0001-01-01T06:00:00Z", "9999-12-31T23:59:59Z", "-62135596800000"):
        resp = await client.get(path, params={"to": to}, headers=bearer(seeded.admin))
        assert resp.status < 500, await resp.text()
        if resp.status == 200:
            assert (await resp.json())["features"] == []
        else:
            await expect_error(resp, 400, "invalid_time")


async def test_track_of_unknown_subject(client: Client, seeded: Seeded) -> None:
    for subject_id in ("2000000000", "99999999999", "abc"):
        await expect_error(
            await client.get(f"/api/v1/subjects/{subject_id}/track", headers=bearer(seeded.admin)),
            404,
            "not_found",
        )


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("limit=-1", 400),
        ("limit=0", 400),
        ("limit=abc", 400),
        ("subject_id=abc", 400),
        ("subject_id=99999999999", 200),
        ("subject_id=-4", 200),
        ("limit=99999999999999999999", 200),
    ],
)
async def test_audit_query_input(client: Client, seeded: Seeded, query: str, status: int) -> None:
    resp = await client.get(f"/api/v1/audit?{query}", headers=bearer(seeded.auditor))
    if status == 200:
        body = await expect_json(resp)
        if "subject_id" in query:
            assert body["entries"] == []
    else:
        await expect_error(resp, status, "invalid_request")
