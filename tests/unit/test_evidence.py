"""The evidence document: its model (facts and decisions in time order, zh-CN labels, the
map's projection) and the PDF it renders to (real text, the CJK font embedded)."""

from __future__ import annotations

import dataclasses
import io
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject

from correction_monitor.adapters.pdf import FontMissing, font_file, render_pdf
from correction_monitor.domain.alerts import AlertStatus, AlertType, Disposition
from correction_monitor.domain.checkins import Checkin, CheckinKind, CheckinStatus
from correction_monitor.domain.evidence import (
    EvidenceDocument,
    TaskStep,
    build_document,
    circle_ring,
    project_map,
)
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.ladder import Measure, Proposal, ProposalStatus
from correction_monitor.domain.models import (
    Alert,
    Subject,
    SubjectCategory,
    SupervisionLevel,
)

pytestmark = pytest.mark.unit

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
CENTRE = (117.2, 39.1)


def subject() -> Subject:
    return Subject(
        id=7,
        name="王小明",
        org_unit_id=3,
        supervision_level=SupervisionLevel.NORMAL,
        category=SubjectCategory.PROBATION,
        term_start=date(2025, 1, 1),
        term_end=date(2027, 12, 31),
        activity_area_id=1,
        exclusion_zone_ids=(),
        home=None,
        curfew=None,
    )


def proposal(status: ProposalStatus = ProposalStatus.APPROVED) -> Proposal:
    return Proposal(
        id=42,
        subject_id=7,
        org_unit_id=3,
        measure=Measure.WARNING,
        article="社区矫正法实施办法第三十五条",
        grounds=("2026-05-01 10:00 起，经核实确认违规：越出活动区域（越界），情节较重。",),
        alert_ids=(11,),
        basis={},
        proposed_level=None,
        status=status,
        created_at=T0 + timedelta(hours=3),
        decided_at=T0 + timedelta(hours=5) if status is not ProposalStatus.PENDING else None,
        decided_by=2 if status is not ProposalStatus.PENDING else None,
        decision_note="同意警告" if status is not ProposalStatus.PENDING else None,
        dedupe_key="alert:11",
    )


def alert() -> Alert:
    return Alert(
        id=11,
        subject_id=7,
        org_unit_id=3,
        type=AlertType.LEFT_ACTIVITY_AREA,
        severity="high",
        status=AlertStatus.RESOLVED,
        fence_id=1,
        episode_key="e1",
        started_at=T0,
        detected_at=T0 + timedelta(minutes=5),
        ended_at=T0 + timedelta(hours=2),
        evidence={},
        acknowledged_at=T0 + timedelta(minutes=20),
        acknowledged_by=1,
        resolved_at=T0 + timedelta(hours=2, minutes=30),
        resolved_by=1,
        disposition=Disposition.CONFIRMED,
        note="电话核实，对象承认未经批准去了市区",
    )


def checkin() -> Checkin:
    return Checkin(
        id=5,
        subject_id=7,
        org_unit_id=3,
        kind=CheckinKind.CHALLENGE,
        opens_at=T0 + timedelta(minutes=30),
        closes_at=T0 + timedelta(minutes=60),
        status=CheckinStatus.MISSED,
    )


def track(n: int) -> list[TrackPoint]:
    """``n`` fixes on a loop that leaves the 2 km circle around CENTRE and comes back."""
    points = []
    for i in range(n):
        angle = 2 * math.pi * i / n
        lon = CENTRE[0] + 0.03 * math.cos(angle)
        lat = CENTRE[1] + 0.01 * math.sin(angle)
        points.append(
            TrackPoint(T0 + timedelta(seconds=15 * i), round(lon * 1e7), round(lat * 1e7), 8, 0, 1)
        )
    return points


def document(
    status: ProposalStatus = ProposalStatus.APPROVED, fixes: int = 200
) -> EvidenceDocument:
    view = project_map(
        track(fixes),
        [circle_ring(*CENTRE, 2000.0)],
        width=480,
        height=320,
        caption="活动区域与定位点",
    )
    return build_document(
        proposal=proposal(status),
        subject=subject(),
        station="城关司法所",
        zone=SHANGHAI,
        alerts=[alert()],
        checkins=[checkin()],
        steps=[
            TaskStep(9, "verify_alert", "phone", T0 + timedelta(minutes=40), 1, "未接通"),
        ],
        officers={1: "李警官", 2: "张局长"},
        map_view=view,
        now=T0 + timedelta(days=1),
    )


def font() -> Path:
    return font_file(None)


def test_the_document_names_the_measure_in_chinese_and_times_on_the_station_clock() -> None:
    doc = document()
    assert doc.title == "社区矫正警告建议书（证据材料）"
    assert doc.measure == "警告"
    assert doc.subject.category == "缓刑"
    assert doc.subject.level == "普管"
    assert doc.generated_at == "2026-05-02 10:00:00"


def test_facts_are_in_time_order() -> None:
    doc = document()
    kinds = [f.kind for f in doc.facts]
    assert kinds == ["告警", "报到", "任务", "建议"]
    assert [f.at for f in doc.facts] == sorted(f.at for f in doc.facts)
    assert "越出活动区域" in doc.facts[0].text
    assert "电话核实" in doc.facts[0].text
    assert "未按时报到" in doc.facts[1].text


def test_decisions_say_who_decided_what_and_when() -> None:
    doc = document()
    whats = [(d.who, d.what) for d in doc.decisions]
    assert whats[0] == ("李警官", "签收告警 11（越出活动区域（越界））")
    assert "任务 9（核实告警）：电话联系（李警官）：未接通。" in [f.text for f in doc.facts]
    assert whats[-1] == ("张局长", "决定建议 42：已批准")
    assert doc.decisions[-1].note == "同意警告"
    assert doc.decisions[-1].when == "2026-05-01 15:00:00"


def test_a_pending_proposal_has_no_decision_yet() -> None:
    doc = document(ProposalStatus.PENDING)
    assert doc.status == "待决定"
    assert all("决定建议" not in d.what for d in doc.decisions)


def test_revocation_is_named_for_the_category() -> None:
    doc = build_document(
        proposal=dataclasses.replace(proposal(), measure=Measure.REVOCATION),
        subject=subject(),
        station="城关司法所",
        zone=SHANGHAI,
        alerts=[],
        checkins=[],
        steps=[],
        officers={},
        map_view=None,
        now=T0,
    )
    assert doc.measure == "提请撤销缓刑"
    assert doc.title == "社区矫正提请撤销缓刑建议书（证据材料）"


def test_the_map_fits_the_box_north_up_at_one_scale() -> None:
    view = project_map(
        track(400), [circle_ring(*CENTRE, 2000.0)], width=400, height=300, caption=""
    )
    assert view is not None
    xs = [x for x, _ in view.path] + [x for ring in view.fences for x, _ in ring]
    ys = [y for _, y in view.path] + [y for ring in view.fences for _, y in ring]
    assert min(xs) >= 0
    assert max(xs) <= 400
    assert min(ys) >= 0
    assert max(ys) <= 300
    # The loop is 0.06° of longitude wide and 0.02° of latitude high: at 39° N about
    # 5.2 km by 2.2 km, so the drawing is wider than high by that ratio, not 3 to 1.
    width = max(x for x, _ in view.path) - min(x for x, _ in view.path)
    height = max(y for _, y in view.path) - min(y for _, y in view.path)
    assert width / height == pytest.approx(0.06 * math.cos(math.radians(39.1)) / 0.02, rel=0.02)
    # North is up: the fix a quarter of the way round (northmost) is highest.
    assert view.path[100][1] == pytest.approx(max(y for _, y in view.path))
    assert view.fixes == 400
    bar, label = view.scale_bar
    assert 0 < bar <= 400 / 4
    assert label.endswith(("米", "公里"))


def test_nothing_to_draw_is_no_map() -> None:
    assert project_map([], [], width=100, height=100, caption="") is None


def test_the_pdf_holds_the_chinese_as_extractable_text() -> None:
    pdf = render_pdf(document(), font())
    assert pdf.startswith(b"%PDF-")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "王小明" in text
    assert "社区矫正法实施办法第三十五条" in text
    assert "警告" in text
    assert "城关司法所" in text
    assert "电话核实" in text


def embedded_fonts(pdf: bytes) -> list[str]:
    """The base names of the fonts whose program the PDF embeds (a ``FontFile2`` or
    ``FontFile3`` stream in the font's descriptor, or its descendant's)."""
    names = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        resources = cast(DictionaryObject, page["/Resources"])
        for ref in cast(DictionaryObject, resources["/Font"]).values():
            font_dict = cast(DictionaryObject, ref.get_object())
            if "/DescendantFonts" in font_dict:
                descendants = cast(ArrayObject, font_dict["/DescendantFonts"])
                font_dict = cast(DictionaryObject, descendants[0].get_object())
            if "/FontDescriptor" not in font_dict:
                continue
            descriptor = cast(DictionaryObject, font_dict["/FontDescriptor"])
            if "/FontFile2" in descriptor or "/FontFile3" in descriptor:
                names.append(str(font_dict["/BaseFont"]))
    return names


def test_the_pdf_embeds_the_font() -> None:
    embedded = embedded_fonts(render_pdf(document(), font()))
    assert embedded
    # Subsets (the name carries a six-letter tag), never the whole 10 MB font.
    assert all("+NotoSansSC" in name for name in embedded)


def test_the_pdf_is_a4_portrait_with_numbered_pages() -> None:
    reader = PdfReader(io.BytesIO(render_pdf(document(fixes=500), font())))
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)
    total = len(reader.pages)
    assert f"第 1 页 / 共 {total} 页" in reader.pages[0].extract_text()


def test_a_missing_font_is_told_as_such(tmp_path: Path) -> None:
    missing = tmp_path / "none.ttf"
    with pytest.raises(FontMissing):
        font_file(missing)
    with pytest.raises(FontMissing):
        render_pdf(document(), missing)
