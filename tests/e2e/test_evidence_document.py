"""GET /api/v1/proposals/{id}/document over HTTP: the evidence PDF of a proposal made from
a real breach (fixes sent by the phone, the alert resolved by an officer), its Chinese as
extractable text in an embedded font, jurisdiction, the audit of the export, and a missing
font answered 503 ``font_missing``."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from tests.conftest import FrontTestServer, Officers, bearer, unique
from tests.e2e.helpers import (
    INSIDE,
    OUTSIDE,
    World,
    expect_error,
    expect_json,
    make_world,
    send,
    sql_row,
    track,
)
from tests.unit.test_evidence import embedded_fonts

pytestmark = pytest.mark.e2e

ARTICLE = "社区矫正法实施办法第三十五条"
GROUND = "经核实确认违规：越出活动区域（越界），情节较重。"


@dataclass(frozen=True)
class Case:
    world: World
    proposal_id: int
    alert_id: int
    fixes: int


async def _breach(client: TestClient[Any, Any], world: World) -> tuple[int, int]:
    """Ten minutes inside, twenty outside, ten back inside, a fix a minute; the alert's id
    and the number of fixes sent."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=90)
    points = [INSIDE] * 10 + [OUTSIDE] * 20 + [INSIDE] * 10
    await send(client, world, track(start, points, step_s=60))
    row = await sql_row(
        client,
        "SELECT id FROM alerts WHERE subject_id = $1 AND type = 'left_activity_area'",
        world.subject_id,
    )
    assert row is not None
    return int(row["id"]), len(points)


async def _proposal(client: TestClient[Any, Any], world: World, alert_id: int) -> int:
    """A decided warning on that alert, stored as the ladder stores one."""
    row = await sql_row(
        client,
        """
        INSERT INTO proposals (subject_id, org_unit_id, measure, article, grounds, alert_ids,
                               status, created_at, decided_at, decided_by, decision_note,
                               dedupe_key)
        SELECT s.id, s.org_unit_id, 'warning', $2, $3::jsonb, ARRAY[$4::bigint], 'approved',
               now() - interval '20 minutes', now() - interval '5 minutes',
               (SELECT o.id FROM officers o JOIN org_units u ON u.id = o.org_unit_id
                WHERE u.code = $5 ORDER BY o.id LIMIT 1),
               '同意给予警告', $6
        FROM subjects s WHERE s.id = $1
        RETURNING id
        """,
        world.subject_id,
        ARTICLE,
        [GROUND],
        alert_id,
        world.county,
        f"evidence-test:{uuid.uuid4().hex}",
    )
    return int(row["id"])


@pytest.fixture(scope="module")
async def case(client: TestClient[Any, Any], officers: Officers) -> Case:
    world = await make_world(client, officers, level="strict")
    alert_id, fixes = await _breach(client, world)
    await expect_json(
        await client.post(
            f"/api/v1/alerts/{alert_id}/resolve",
            json={"disposition": "confirmed", "note": "电话核实，对象承认擅自离开县境"},
            headers=bearer(world.admin_token),
        )
    )
    return Case(world, await _proposal(client, world, alert_id), alert_id, fixes)


def _text(pdf: bytes) -> str:
    """The PDF's text with line breaks and spaces taken out (a table cell wraps lines)."""
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return "".join(text.split())


async def test_the_document_is_a_pdf_with_the_chinese_extractable(
    client: TestClient[Any, Any], case: Case
) -> None:
    resp = await client.get(
        f"/api/v1/proposals/{case.proposal_id}/document", headers=bearer(case.world.admin_token)
    )
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/pdf"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("inline;")
    assert f'filename="proposal-{case.proposal_id}-evidence.pdf"' in disposition
    pdf = await resp.read()
    text = _text(pdf)
    assert "张三" in text
    assert ARTICLE in text
    assert "社区矫正警告建议书" in text
    assert "城关司法所" in text
    assert "越出活动区域" in text
    assert "电话核实，对象承认擅自离开县境" in text
    assert "同意给予警告" in text
    assert GROUND in text
    assert f"定位点{case.fixes}个" in text
    fonts = embedded_fonts(pdf)
    assert fonts
    assert all("+NotoSansSC" in name for name in fonts)


async def test_the_export_and_its_location_history_are_audited(
    client: TestClient[Any, Any], case: Case
) -> None:
    resp = await client.get(
        f"/api/v1/proposals/{case.proposal_id}/document?purpose=警告决定前审阅",
        headers=bearer(case.world.admin_token),
    )
    assert resp.status == 200, await resp.text()
    request_id = resp.headers["X-Request-ID"]
    row = await sql_row(
        client,
        "SELECT purpose, detail FROM audit_log WHERE action = 'proposal.export'"
        " AND request_id = $1",
        request_id,
    )
    assert row["purpose"] == "警告决定前审阅"
    assert row["detail"]["proposal_id"] == case.proposal_id
    row = await sql_row(
        client,
        "SELECT purpose, subject_id, detail FROM audit_log WHERE action = 'track.export'"
        " AND request_id = $1",
        request_id,
    )
    assert row["purpose"] == "proposal evidence"
    assert row["subject_id"] == case.world.subject_id
    assert row["detail"]["fixes"] == case.fixes


async def test_outside_the_jurisdiction_it_does_not_exist(
    client: TestClient[Any, Any], officers: Officers, case: Case
) -> None:
    # A county administrator of another county (make_county's officer is an admin, who
    # sees everything).
    other_county = unique("c")
    _, other = await officers.create("county_admin", other_county)
    url = f"/api/v1/proposals/{case.proposal_id}/document"
    await expect_error(await client.get(url, headers=bearer(other)), 404)
    unknown = "/api/v1/proposals/2147483000/document"
    await expect_error(await client.get(unknown, headers=bearer(case.world.admin_token)), 404)
    await expect_error(await client.get(url), 401)
    refused = await sql_row(
        client,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'proposal.export'"
        " AND officer_id = (SELECT o.id FROM officers o JOIN org_units u ON u.id = o.org_unit_id"
        " WHERE u.code = $1 LIMIT 1)",
        other_county,
    )
    assert refused["n"] == 0


async def test_an_auditor_of_the_county_may_read_it(
    client: TestClient[Any, Any], officers: Officers, case: Case
) -> None:
    _, auditor = await officers.create("auditor", case.world.county)
    resp = await client.get(
        f"/api/v1/proposals/{case.proposal_id}/document", headers=bearer(auditor)
    )
    assert resp.status == 200, await resp.text()
    assert "张三" in _text(await resp.read())


@pytest.fixture
async def fontless(settings: Settings, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    missing = tmp_path / "no-such-font.ttf"
    app = init_app(settings.model_copy(update={"pdf_font": missing}))
    async with TestClient(FrontTestServer(app)) as test_client:
        yield test_client


async def test_a_missing_font_is_503_font_missing(
    client: TestClient[Any, Any], fontless: TestClient[Any, Any], case: Case
) -> None:
    before = await sql_row(
        client,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'proposal.export' AND subject_id = $1",
        case.world.subject_id,
    )
    resp = await fontless.get(
        f"/api/v1/proposals/{case.proposal_id}/document", headers=bearer(case.world.admin_token)
    )
    error = await expect_error(resp, 503, "font_missing")
    assert "no-such-font.ttf" in error["message"]
    after = await sql_row(
        client,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'proposal.export' AND subject_id = $1",
        case.world.subject_id,
    )
    assert after["n"] == before["n"]
