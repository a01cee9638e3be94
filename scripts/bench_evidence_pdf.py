"""How long an evidence PDF takes to draw, and how large it is, for an episode of 500 fixes.

The episode is built synthetically (no database): a subject of a 2 km × 3 km activity area
walks out of it and back over 500 fixes, fifteen seconds apart; one confirmed
``left_activity_area`` alert, four check-ins, three task steps, an approved warning. The
document's model is built as the service builds it (``domain/evidence.py``: facts, decisions,
the map projected) and rendered as the endpoint renders it (``adapters/pdf.py``, ReportLab,
the Noto Sans SC subsets embedded), ``--runs`` times after one warm-up run (the first run of
a process also parses the 10 MB font, reported apart).

It prints the model's and the render's median and maximum, the PDF's size and pages, and
closes with a JSON line.

    .venv/bin/python scripts/bench_evidence_pdf.py
    .venv/bin/python scripts/bench_evidence_pdf.py --fixes 5000 --runs 10
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pypdf import PdfReader

from correction_monitor.adapters.pdf import font_file, render_pdf
from correction_monitor.domain.alerts import AlertStatus, AlertType, Disposition
from correction_monitor.domain.checkins import Checkin, CheckinKind, CheckinStatus
from correction_monitor.domain.evidence import (
    EvidenceDocument,
    TaskStep,
    build_document,
    fence_rings,
    project_map,
)
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.ladder import Measure, Proposal, ProposalStatus
from correction_monitor.domain.models import Alert, Subject, SubjectCategory, SupervisionLevel

T0 = datetime(2026, 5, 1, 1, 0, tzinfo=UTC)
CENTRE = (117.2, 39.1)


class _Box:
    """A rectangle the way shapely gives one to ``fence_rings`` (an exterior, no holes)."""

    geom_type = "Polygon"
    interiors: tuple[object, ...] = ()

    def __init__(self, ring: list[tuple[float, float]]) -> None:
        self.exterior = type("Ring", (), {"coords": ring})()


def episode(fixes: int) -> EvidenceDocument:
    lon0, lat0 = CENTRE
    area = [
        (lon0 - 0.012, lat0 - 0.013),
        (lon0 + 0.012, lat0 - 0.013),
        (lon0 + 0.012, lat0 + 0.013),
        (lon0 - 0.012, lat0 + 0.013),
        (lon0 - 0.012, lat0 - 0.013),
    ]
    points = []
    for i in range(fixes):
        # Out to 4 km east and back along a wavy line.
        along = math.sin(math.pi * i / max(fixes - 1, 1))
        lon = lon0 + 0.045 * along
        lat = lat0 + 0.004 * math.sin(i / 9) + 0.002 * along
        points.append(
            TrackPoint(T0 + timedelta(seconds=15 * i), round(lon * 1e7), round(lat * 1e7), 9, 0, 1)
        )
    end = T0 + timedelta(seconds=15 * fixes)
    subject = Subject(
        1,
        "王小明",
        3,
        SupervisionLevel.STRICT,
        SubjectCategory.PROBATION,
        date(2025, 1, 1),
        date(2027, 12, 31),
        1,
        (),
        None,
        None,
    )
    alert = Alert(
        11,
        1,
        3,
        AlertType.LEFT_ACTIVITY_AREA,
        "high",
        AlertStatus.RESOLVED,
        1,
        "e",
        T0 + timedelta(minutes=20),
        T0 + timedelta(minutes=22),
        end - timedelta(minutes=20),
        {},
        acknowledged_at=T0 + timedelta(minutes=30),
        acknowledged_by=1,
        resolved_at=end + timedelta(minutes=10),
        resolved_by=1,
        disposition=Disposition.CONFIRMED,
        note="电话核实，对象承认未经批准前往邻县，已责令返回。",
    )
    checkins = [
        Checkin(
            20 + n,
            1,
            3,
            CheckinKind.CHALLENGE if n % 2 else CheckinKind.SCHEDULED,
            T0 + timedelta(minutes=25 * n),
            T0 + timedelta(minutes=25 * n + 30),
            CheckinStatus.MISSED if n == 2 else CheckinStatus.PASSED,
            answered_at=None if n == 2 else T0 + timedelta(minutes=25 * n + 3),
        )
        for n in range(4)
    ]
    steps = [
        TaskStep(9, "verify_alert", "phone", T0 + timedelta(minutes=35), 1, "未接通"),
        TaskStep(9, "verify_alert", "info_check", T0 + timedelta(minutes=40), 1, "定位在邻县"),
        TaskStep(9, "verify_alert", "done", end + timedelta(minutes=10), 1, None),
    ]
    proposal = Proposal(
        42,
        1,
        3,
        Measure.WARNING,
        "社区矫正法实施办法第三十五条",
        ("经核实确认违规：越出活动区域（越界），情节较重。", "依据实施办法第三十五条，建议警告。"),
        (11,),
        {},
        None,
        ProposalStatus.APPROVED,
        end + timedelta(minutes=11),
        end + timedelta(hours=2),
        2,
        "同意给予警告",
        "alert:11",
    )
    view = project_map(
        points, fence_rings(_Box(area)), width=493.0, height=493.0 * 2 / 3, caption="活动区域与轨迹"
    )
    return build_document(
        proposal=proposal,
        subject=subject,
        station="城关司法所",
        zone=ZoneInfo("Asia/Shanghai"),
        alerts=[alert],
        checkins=checkins,
        steps=steps,
        officers={1: "李警官", 2: "张局长"},
        map_view=view,
        now=end + timedelta(hours=3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--font", type=Path, default=None, help="a TrueType file (CM_PDF_FONT)")
    parser.add_argument("--out", type=Path, default=None, help="also write the PDF here")
    args = parser.parse_args()
    font = font_file(args.font)

    began = time.perf_counter()
    document = episode(args.fixes)
    pdf = render_pdf(document, font)
    first_s = time.perf_counter() - began

    model_s, render_s = [], []
    for _ in range(args.runs):
        began = time.perf_counter()
        document = episode(args.fixes)
        built = time.perf_counter()
        pdf = render_pdf(document, font)
        done = time.perf_counter()
        model_s.append(built - began)
        render_s.append(done - built)
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    if args.out:
        args.out.write_bytes(pdf)

    def ms(values: list[float]) -> str:
        return f"p50 {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"

    print(f"evidence PDF, {args.fixes} fixes, {args.runs} runs (font {font.name})")
    print(f"  first run in a process (font parsed): {first_s * 1000:.0f} ms")
    print(f"  model (facts, decisions, map projection): {ms(model_s)}")
    print(f"  render (ReportLab, font subsets embedded): {ms(render_s)}")
    print(f"  PDF: {len(pdf):,} bytes, {pages} pages")
    print(
        json.dumps(
            {
                "fixes": args.fixes,
                "runs": args.runs,
                "first_run_ms": round(first_s * 1000, 1),
                "model_p50_ms": round(statistics.median(model_s) * 1000, 2),
                "render_p50_ms": round(statistics.median(render_s) * 1000, 1),
                "render_max_ms": round(max(render_s) * 1000, 1),
                "pdf_bytes": len(pdf),
                "pages": pages,
            }
        )
    )


if __name__ == "__main__":
    main()
