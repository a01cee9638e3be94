"""Night patrol plans as officers take them out, and the outcomes they record, in
PostgreSQL; the printed sheet drawn with ReportLab (the evidence document's font, loaded the
same way, and its map's frame, scale bar and north mark: ``adapters/pdf.py``)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import asyncpg
from reportlab.graphics.shapes import Circle, Drawing, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    PageBreak,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from correction_monitor.adapters.pdf import (
    add_scale_and_north,
    grid_table,
    map_frame,
    paragraph,
    register_font,
)
from correction_monitor.domain.alerts import AlertType
from correction_monitor.domain.patrol_sheet import (
    RouteMap,
    RouteMapView,
    TeamSheet,
    project_route_map,
)

PLAN = """
SELECT p.id, p.org_unit_id, p.night, p.status, p.routes, u.code AS org_code,
       u.name AS station, u.timezone
FROM patrol_plans p JOIN org_units u ON u.id = p.org_unit_id
WHERE p.id = $1
"""
# The plan's stops with their team and subject, teams in order, stops by seq.
STOPS = """
SELECT s.id, s.team_id, s.subject_id, s.seq, s.eta, s.reasons, s.outcome,
       t.name AS team, t.start_lon, t.start_lat, t.window_start, t.window_end,
       j.name, j.home_lon, j.home_lat
FROM patrol_stops s
JOIN patrol_teams t ON t.id = s.team_id
JOIN subjects j ON j.id = s.subject_id
WHERE s.plan_id = $1
ORDER BY t.name, s.team_id, s.seq
"""
STOP_COLUMNS = """
s.id, s.plan_id, s.team_id, s.subject_id, s.seq, s.eta, s.reasons, s.outcome, s.outcome_at,
s.outcome_note, s.outcome_fix, s.recorded_by, s.recorded_at, s.alert_id
"""
STOP_FOR_UPDATE = f"""
SELECT {STOP_COLUMNS}, t.name AS team
FROM patrol_stops s JOIN patrol_teams t ON t.id = s.team_id
WHERE s.plan_id = $1 AND s.subject_id = $2
FOR UPDATE OF s
"""
RECORD = f"""
UPDATE patrol_stops s SET outcome = $2, outcome_at = $3, outcome_note = $4, outcome_fix = $5,
    recorded_by = $6, recorded_at = $7, alert_id = COALESCE($8, s.alert_id)
WHERE s.id = $1
RETURNING {STOP_COLUMNS}
"""
SUBJECT_CURFEW = """
SELECT s.id, s.org_unit_id, s.curfew_start, s.curfew_end, u.timezone
FROM subjects s JOIN org_units u ON u.id = s.org_unit_id
WHERE s.id = $1
"""
# The subject's curfew alerts that began in one curfew night, unresolved ones first.
CURFEW_ALERTS = """
SELECT id, status, disposition, evidence FROM alerts
WHERE subject_id = $1 AND type = 'curfew_violation' AND retracted_at IS NULL
  AND started_at >= $2 AND started_at < $3
ORDER BY (status = 'resolved'), id
"""
# Location alerts of the subject whose episode was under way at a time.
AWAY_ALERTS = """
SELECT id, type, org_unit_id, evidence FROM alerts
WHERE subject_id = $1 AND type = ANY($2::text[]) AND retracted_at IS NULL
  AND started_at <= $3 AND (ended_at IS NULL OR ended_at >= $3)
ORDER BY id
FOR UPDATE
"""
TEAM_NAME = "SELECT name FROM patrol_teams WHERE id = $1"
PATROL_ALERT = """
SELECT id FROM alerts WHERE subject_id = $1 AND type = 'curfew_violation' AND episode_key = $2
"""
APPEND_EVIDENCE = """
UPDATE alerts SET evidence = jsonb_set(evidence, ARRAY[$2::text],
    COALESCE(evidence -> $2::text, '[]'::jsonb) || $3::jsonb)
WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class PlanRow:
    id: int
    org_unit_id: int
    org_code: str
    station: str
    timezone: str
    night: date
    status: str
    routes: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StopRow:
    """A stop joined with its team and subject, as the exports show it."""

    id: int
    team_id: int
    team: str
    start_lon: float
    start_lat: float
    window_start: time
    window_end: time
    subject_id: int
    name: str
    home_lon: float | None
    home_lat: float | None
    seq: int
    eta: datetime
    reasons: list[Any]
    outcome: str | None


@dataclass(frozen=True, slots=True)
class StopRecord:
    """A stop with its outcome, as recorded."""

    id: int
    plan_id: int
    team_id: int
    subject_id: int
    seq: int
    eta: datetime
    reasons: list[Any]
    outcome: str | None
    outcome_at: datetime | None
    outcome_note: str | None
    outcome_fix: dict[str, Any] | None
    recorded_by: int | None
    recorded_at: datetime | None
    alert_id: int | None


@dataclass(frozen=True, slots=True)
class SubjectCurfew:
    subject_id: int
    org_unit_id: int
    curfew_start: time | None
    curfew_end: time | None
    timezone: str


@dataclass(frozen=True, slots=True)
class AlertRef:
    """An alert's id and what a visit needs of it."""

    id: int
    type: str
    status: str
    disposition: str | None
    evidence: dict[str, Any]


def _record(row: asyncpg.Record) -> StopRecord:
    return StopRecord(
        id=row["id"],
        plan_id=row["plan_id"],
        team_id=row["team_id"],
        subject_id=row["subject_id"],
        seq=row["seq"],
        eta=row["eta"],
        reasons=list(row["reasons"] or []),
        outcome=row["outcome"],
        outcome_at=row["outcome_at"],
        outcome_note=row["outcome_note"],
        outcome_fix=row["outcome_fix"],
        recorded_by=row["recorded_by"],
        recorded_at=row["recorded_at"],
        alert_id=row["alert_id"],
    )


class PostgresPatrolExports:
    """Plans, stops and outcomes for the exports and the outcome endpoint."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def plan(self, plan_id: int) -> PlanRow | None:
        row = await self._conn.fetchrow(PLAN, plan_id)
        if row is None:
            return None
        routes = row["routes"] if isinstance(row["routes"], list) else []
        return PlanRow(
            id=row["id"],
            org_unit_id=row["org_unit_id"],
            org_code=row["org_code"],
            station=row["station"],
            timezone=row["timezone"],
            night=row["night"],
            status=row["status"],
            routes=[r for r in routes if isinstance(r, dict)],
        )

    async def stops(self, plan_id: int) -> list[StopRow]:
        return [
            StopRow(
                id=r["id"],
                team_id=r["team_id"],
                team=r["team"],
                start_lon=r["start_lon"],
                start_lat=r["start_lat"],
                window_start=r["window_start"],
                window_end=r["window_end"],
                subject_id=r["subject_id"],
                name=r["name"],
                home_lon=r["home_lon"],
                home_lat=r["home_lat"],
                seq=r["seq"],
                eta=r["eta"],
                reasons=list(r["reasons"] or []),
                outcome=r["outcome"],
            )
            for r in await self._conn.fetch(STOPS, plan_id)
        ]

    async def stop_for_update(self, plan_id: int, subject_id: int) -> StopRecord | None:
        """The plan's stop of the subject, held until the transaction ends."""
        row = await self._conn.fetchrow(STOP_FOR_UPDATE, plan_id, subject_id)
        return None if row is None else _record(row)

    async def record(
        self,
        stop_id: int,
        *,
        outcome: str,
        at: datetime,
        note: str | None,
        fix: dict[str, Any] | None,
        recorded_by: int,
        recorded_at: datetime,
        alert_id: int | None,
    ) -> StopRecord:
        row = await self._conn.fetchrow(
            RECORD, stop_id, outcome, at, note, fix, recorded_by, recorded_at, alert_id
        )
        assert row is not None, "the stop is locked by this transaction"
        return _record(row)

    async def subject_curfew(self, subject_id: int) -> SubjectCurfew:
        row = await self._conn.fetchrow(SUBJECT_CURFEW, subject_id)
        assert row is not None, "a stop's subject exists (foreign key)"
        return SubjectCurfew(
            row["id"], row["org_unit_id"], row["curfew_start"], row["curfew_end"], row["timezone"]
        )

    async def curfew_alerts(
        self, subject_id: int, opens_at: datetime, closes_at: datetime
    ) -> list[AlertRef]:
        """The subject's curfew alerts that began within one curfew night (not retracted),
        unresolved first."""
        rows = await self._conn.fetch(CURFEW_ALERTS, subject_id, opens_at, closes_at)
        return [
            AlertRef(
                r["id"],
                AlertType.CURFEW_VIOLATION.value,
                r["status"],
                r["disposition"],
                r["evidence"],
            )
            for r in rows
        ]

    async def away_alerts(self, subject_id: int, types: list[str], at: datetime) -> list[AlertRef]:
        """The subject's alerts of ``types`` whose episode was under way at ``at`` (not
        retracted), locked until the transaction ends."""
        rows = await self._conn.fetch(AWAY_ALERTS, subject_id, types, at)
        return [AlertRef(r["id"], r["type"], "", None, r["evidence"]) for r in rows]

    async def team_name(self, team_id: int) -> str:
        name: str = await self._conn.fetchval(TEAM_NAME, team_id)
        return name

    async def patrol_alert_id(self, subject_id: int, episode_key: str) -> int:
        """The id of the subject's curfew alert of ``episode_key`` (one a visit opened)."""
        alert_id: int | None = await self._conn.fetchval(PATROL_ALERT, subject_id, episode_key)
        assert alert_id is not None, "opened (or found) in this transaction"
        return alert_id

    async def append_evidence(self, alert_id: int, key: str, item: dict[str, Any]) -> None:
        """Add ``item`` to the list ``key`` of the alert's evidence."""
        await self._conn.execute(APPEND_EVIDENCE, alert_id, key, [item])


# ---------------------------------------------------------------- the printed sheet

MARGIN = 15 * mm
GRID_COLOUR = colors.HexColor("#999999")
# The route map's box: the text column's width, 0.45 of it high (the stops' table follows).
ROUTE_MAP_HEIGHT_RATIO = 0.45
# One colour per team, in the plan's order (repeated after eight teams).
TEAM_COLOURS = tuple(
    colors.HexColor(c)
    for c in (
        "#1f5fa8",
        "#c0392b",
        "#1e8449",
        "#8e44ad",
        "#d35400",
        "#16a085",
        "#b7950b",
        "#5d6d7e",
    )
)


def _styles(font: str) -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=font, fontSize=9.5, leading=13, wordWrap="CJK")
    return {
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=11),
        "title": ParagraphStyle(
            "title", parent=base, fontSize=16, leading=22, alignment=TA_CENTER, spaceAfter=8
        ),
    }


def team_colour(index: int) -> colors.Color:
    """The colour of the plan's ``index``-th team on the map and in its legend."""
    return TEAM_COLOURS[index % len(TEAM_COLOURS)]


def route_map_drawing(view: RouteMapView, font: str, highlight: int | None) -> Drawing:
    """The route map: frame, each team's line start → stops in order → start in its colour
    (team ``highlight``'s thicker and drawn last), the start (起) as a square, each stop a
    disc holding its number, then the scale bar and north mark."""
    drawing = map_frame(view.width, view.height)
    order = sorted(range(len(view.routes)), key=lambda i: view.routes[i].team_id == highlight)
    for i in order:
        route = view.routes[i]
        colour = team_colour(i)
        mine = route.team_id == highlight
        points = [route.start, *((x, y) for _, x, y in route.stops), route.start]
        if route.stops:
            line = PolyLine(
                [c for pt in points for c in pt],
                strokeColor=colour,
                strokeWidth=2.0 if mine or highlight is None else 0.9,
            )
            if not mine and highlight is not None:
                line.strokeDashArray = [4, 2]
            drawing.add(line)
        radius = 5.5 if mine or highlight is None else 4.5
        for seq, x, y in route.stops:
            drawing.add(Circle(x, y, radius, fillColor=colour, strokeColor=colors.white))
            drawing.add(
                String(
                    x,
                    y - 2.3,
                    str(seq),
                    fontName=font,
                    fontSize=6.5,
                    fillColor=colors.white,
                    textAnchor="middle",
                )
            )
    starts: set[tuple[int, int]] = set()
    for i, route in enumerate(view.routes):
        sx, sy = route.start
        square = Rect(sx - 4, sy - 4, 8, 8)
        square.fillColor = team_colour(i)
        square.strokeColor = colors.black
        square.strokeWidth = 0.8
        drawing.add(square)
        key = (round(sx), round(sy))
        if key not in starts:  # teams of one station share a start: label it once
            starts.add(key)
            drawing.add(String(sx + 6, sy - 3, "起", fontName=font, fontSize=8))
    add_scale_and_north(drawing, view.scale_bar, font)
    return drawing


def _route_map_block(
    route_map: RouteMap, highlight: int | None, font: str, width: float
) -> list[Flowable]:
    """The route map's title, drawing, legend (one row per team, in its colour) and
    caption."""
    styles = _styles(font)
    body, small = styles["body"], styles["small"]
    block: list[Flowable] = [paragraph(route_map.title, body), Spacer(1, 3)]
    view = project_route_map(route_map, width=width, height=width * ROUTE_MAP_HEIGHT_RATIO)
    if view is None:
        return [*block, paragraph("该巡查计划没有可绘制的出发地点或住所。", small)]
    block.append(route_map_drawing(view, font, highlight))
    block.append(Spacer(1, 4))
    rows: list[list[Any]] = []
    for team in route_map.teams:
        name = team.team + ("（本组）" if team.team_id == highlight else "")
        rows.append(
            [
                "",
                paragraph(name, small),
                paragraph(f"{team.stop_count} 人", small),
                paragraph(f"全长 {team.distance}", small),
                paragraph(f"工作时段 {team.window}", small),
            ]
        )
    legend = Table(rows, colWidths=[width * f for f in (0.04, 0.36, 0.14, 0.2, 0.26)])
    commands: list[Any] = [
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
    ]
    for i in range(len(rows)):
        commands.append(("BACKGROUND", (0, i), (0, i), team_colour(i)))
    legend.setStyle(TableStyle(commands))
    block += [legend, Spacer(1, 2), paragraph(route_map.caption, small)]
    return block


def render_sheet(sheets: list[TeamSheet], title: str, font_path: Path) -> bytes:
    """The printed sheet as PDF bytes: A4 portrait, one page (or more, for a long route)
    per team, each headed by the unit's route map, the font embedded as subsets
    (FontMissing when it is gone)."""
    font = register_font(font_path)
    styles = _styles(font)
    body, small = styles["body"], styles["small"]
    out = io.BytesIO()
    template = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=title,
        author="社区矫正机构",
        lang="zh-CN",
    )
    width = A4[0] - 2 * MARGIN
    story: list[Flowable] = []
    for n, sheet in enumerate(sheets):
        if n:
            story.append(PageBreak())
        story.append(paragraph(sheet.title, styles["title"]))
        if sheet.route_map is not None:
            story.append(
                KeepTogether(_route_map_block(sheet.route_map, sheet.team_id, font, width))
            )
            story.append(Spacer(1, 8))
        heading = [[paragraph(k, body), paragraph(v, body)] for k, v in sheet.heading]
        story.append(grid_table(heading, [width * 0.18, width * 0.82], header=False, padding=3))
        story.append(Spacer(1, 8))
        rows: list[list[Any]] = [
            [
                paragraph(h, small)
                for h in (
                    "序号",
                    "预计到达",
                    "姓名",
                    "住所（纬度, 经度）",
                    "走访原因",
                    "走访结果",
                    "时间/备注",
                )
            ]
        ]
        for row in sheet.rows:
            rows.append(
                [
                    paragraph(row.seq, small),
                    paragraph(row.eta, small),
                    paragraph(row.name, body),
                    paragraph(row.place, small),
                    paragraph(row.reasons, small),
                    paragraph(row.outcome, small),
                    "",
                ]
            )
        if not sheet.rows:
            rows.append([paragraph("本组当晚无走访对象。", small), "", "", "", "", "", ""])
        fractions = (0.06, 0.09, 0.11, 0.17, 0.17, 0.24, 0.16)
        story.append(grid_table(rows, [width * f for f in fractions], header=True, padding=3))
        story.append(Spacer(1, 14))
        story.append(
            paragraph(
                "巡查人员签名：____________________　　　　带队人员签名：____________________"
                "\n\n日期：________年____月____日",
                body,
            )
        )
        story.append(Spacer(1, 8))
        story.append(
            paragraph(
                "本走访单仅供社区矫正工作人员巡查使用，载有住所位置信息，不得向社区矫正对象或"
                "无关人员出示；走访结果请在系统中如实记录。" + "\n" + sheet.footer,
                small,
            )
        )
    if not story:
        story.append(paragraph("该巡查计划没有巡查组路线。", body))
    template.build(story)
    return out.getvalue()
