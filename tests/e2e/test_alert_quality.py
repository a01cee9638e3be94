"""The alert-quality report over a small constructed set of alerts: exact counts, the
false-alarm rate, percentiles of the times to acknowledge and resolve, SLA misses, the
period, stations, jurisdiction, and the same figures as Prometheus gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.service.reports import PublishAlertQualityMetrics
from correction_monitor.web.keys import POOL, SERVICES
from tests.conftest import Officers, bearer
from tests.e2e.helpers import expect_error, expect_json, iso_z, make_county, make_world

pytestmark = pytest.mark.e2e

REPORT = "/api/v1/reports/alert-quality"
ROW_KEYS = [
    "type",
    "raised",
    "self_resolved",
    "confirmed",
    "justified",
    "false_alarm",
    "false_alarm_rate",
    "ack_p50_s",
    "ack_p90_s",
    "resolve_p50_s",
    "resolve_p90_s",
    "sla_missed",
]


async def add_alert(
    client: TestClient[Any, Any],
    subject_id: int,
    type_: str,
    detected_at: datetime,
    *,
    ack_s: float | None = None,
    resolve_s: float | None = None,
    disposition: str | None = None,
    self_resolved: bool = False,
    escalation_level: int | None = None,
) -> int:
    """An alert of the subject stored as the lifecycle would leave it; with
    ``escalation_level``, its verify task at that level."""
    async with client.app[POOL].acquire() as conn:
        org_unit_id = await conn.fetchval(
            "SELECT org_unit_id FROM subjects WHERE id = $1", subject_id
        )
        alert_id: int = await conn.fetchval(
            """
            INSERT INTO alerts (subject_id, org_unit_id, type, severity, episode_key, started_at,
                                detected_at, status, acknowledged_at, resolved_at, disposition,
                                self_resolved)
            VALUES ($1, $2, $3, 'high', $4, $5, $5, $6, $7, $8, $9, $10)
            RETURNING id
            """,
            subject_id,
            org_unit_id,
            type_,
            f"test:{detected_at.timestamp()}:{ack_s}:{resolve_s}",
            detected_at,
            "resolved" if resolve_s is not None else "acknowledged" if ack_s else "open",
            detected_at + timedelta(seconds=ack_s) if ack_s is not None else None,
            detected_at + timedelta(seconds=resolve_s) if resolve_s is not None else None,
            disposition,
            self_resolved,
        )
        if escalation_level is not None:
            await conn.execute(
                """
                INSERT INTO tasks (kind, subject_id, org_unit_id, alert_id, escalation_level,
                                   created_at, dedupe_key)
                VALUES ('verify_alert', $1, $2, $3, $4, $5, $6)
                """,
                subject_id,
                org_unit_id,
                alert_id,
                escalation_level,
                detected_at,
                f"test-verify:{alert_id}",
            )
    return alert_id


def row_of(rows: list[dict[str, Any]], type_: str, org_unit: str | None = None) -> dict[str, Any]:
    [row] = [r for r in rows if r["type"] == type_ and r.get("org_unit") == org_unit]
    return row


async def test_the_report_counts_and_times_a_constructed_set_exactly(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = await make_county(officers)
    north = await make_world(client, officers, in_county=county)
    south = await make_world(client, officers, in_county=county)
    elsewhere = await make_world(client, officers)
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    left = "left_activity_area"
    await add_alert(client, north.subject_id, left, day, ack_s=60, resolve_s=300,
                    disposition="false_alarm", escalation_level=0)  # fmt: skip
    await add_alert(client, north.subject_id, left, day + timedelta(minutes=1), ack_s=120,
                    resolve_s=600, disposition="false_alarm", escalation_level=1)  # fmt: skip
    await add_alert(client, north.subject_id, left, day + timedelta(minutes=2), ack_s=180,
                    resolve_s=900, disposition="confirmed")  # fmt: skip
    await add_alert(client, north.subject_id, left, day + timedelta(minutes=3), ack_s=600,
                    escalation_level=2)  # fmt: skip
    await add_alert(client, north.subject_id, left, day + timedelta(minutes=4), self_resolved=True)
    await add_alert(client, south.subject_id, "missed_checkin", day + timedelta(minutes=5))
    # Another county's alert never counts in this county's report.
    await add_alert(client, elsewhere.subject_id, left, day, ack_s=1, resolve_s=2,
                    disposition="justified")  # fmt: skip

    _, county_admin = await officers.create("county_admin", county.code)
    h = bearer(county_admin)
    body = await expect_json(await client.get(REPORT, headers=h))
    rows = body["rows"]
    assert {r["type"] for r in rows} >= {left, "missed_checkin", "lost_contact"}
    assert all(list(r)[: len(ROW_KEYS)] == ROW_KEYS for r in rows)
    assert {k: row_of(rows, left)[k] for k in ROW_KEYS} == {
        "type": left,
        "raised": 5,
        "self_resolved": 1,
        "confirmed": 1,
        "justified": 0,
        "false_alarm": 2,
        "false_alarm_rate": 0.6667,
        # percentile_cont over 60, 120, 180, 600 s and over 300, 600, 900 s.
        "ack_p50_s": 150.0,
        "ack_p90_s": 474.0,
        "resolve_p50_s": 600.0,
        "resolve_p90_s": 840.0,
        "sla_missed": 2,
    }
    missed = row_of(rows, "missed_checkin")
    assert (missed["raised"], missed["false_alarm_rate"], missed["ack_p50_s"]) == (1, None, None)
    assert row_of(rows, "lost_contact")["raised"] == 0

    # By station: one row per station and type that raised anything.
    by_station = (await expect_json(await client.get(REPORT, params={"by": "station"}, headers=h)))[
        "rows"
    ]
    assert {(r["org_unit"], r["type"], r["raised"]) for r in by_station} == {
        (north.station, left, 5),
        (south.station, "missed_checkin", 1),
    }
    # Narrowed to a station, and to a period.
    south_rows = (
        await expect_json(await client.get(REPORT, params={"org_unit": south.station}, headers=h))
    )["rows"]
    assert (row_of(south_rows, left)["raised"], row_of(south_rows, "missed_checkin")["raised"]) == (
        0,
        1,
    )
    period = {"from": iso_z(day + timedelta(minutes=2)), "to": iso_z(day + timedelta(minutes=4))}
    in_period = (await expect_json(await client.get(REPORT, params=period, headers=h)))["rows"]
    assert row_of(in_period, left)["raised"] == 2
    assert row_of(in_period, left)["false_alarm_rate"] == 0.0

    # Jurisdiction: another county is not found; a station officer sees only the station.
    _, outsider = await officers.create("county_admin", elsewhere.county)
    await expect_error(
        await client.get(REPORT, params={"org_unit": county.code}, headers=bearer(outsider)), 404
    )
    _, officer = await officers.create("officer", south.station)
    mine = (await expect_json(await client.get(REPORT, headers=bearer(officer))))["rows"]
    assert (row_of(mine, left)["raised"], row_of(mine, "missed_checkin")["raised"]) == (0, 1)
    # Bad input is 400.
    for params in (
        {"from": "yesterday"},
        {"by": "weekday"},
        {"from": period["to"], "to": period["from"]},
    ):
        await expect_error(await client.get(REPORT, params=params, headers=h), 400)
    await expect_error(await client.get(REPORT), 401)

    # The same figures as gauges on /metrics.
    await client.app[SERVICES].handle(PublishAlertQualityMetrics(datetime.now(UTC)))
    text = await (await client.get("/metrics")).text()
    labels = f'org_unit="{north.station}",type="{left}"'
    assert f"cm_alert_quality_raised{{{labels}}} 5.0" in text
    assert f"cm_alert_quality_false_alarm_rate{{{labels}}} 0.6667" in text
    assert f"cm_alert_quality_ack_p90_seconds{{{labels}}} 474.0" in text
    assert f"cm_alert_quality_sla_missed{{{labels}}} 2.0" in text
    assert 'cm_alert_quality_raised{org_unit="all",type="lost_contact"}' in text
