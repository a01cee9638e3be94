"""The evidence document of a proposal (证据材料), as a model the PDF adapter draws.

RULES.md §1: every proposal carries the article, the facts (alerts, fixes, check-ins,
officers' notes) and who decided what, when. :func:`build_document` gathers those from the
stored records into one :class:`EvidenceDocument`, every text in zh-CN and every time in the
station's time zone, so the renderer (``adapters/pdf.py``) only lays out what it is given.

The map of the episode is projected here too (:func:`project_map`): longitude and latitude
become metres on a local plane around the fixes' middle (equirectangular; a county is small
enough that the error stays far below a fix's accuracy), then page points inside the drawing
box, with a scale bar of a round length (:func:`fit_projection`, which the night patrols'
route map uses as well). No map tiles: nothing is fetched to print evidence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from correction_monitor.domain.alerts import Disposition
from correction_monitor.domain.checkins import Checkin, CheckinKind, CheckinStatus
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.ladder import (
    BREACH_LABELS,
    LEVEL_LABELS,
    MEASURE_LABELS,
    REVOCATION_LABELS,
    Measure,
    Proposal,
    ProposalStatus,
)
from correction_monitor.domain.models import Alert, Subject, SubjectCategory

# Metres per degree of latitude, and of longitude at the equator (WGS-84, rounded).
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0
# A drawing holds at most this many fixes; a longer track is thinned evenly (its first and
# last fix always kept), since a page cannot show more points than this apart anyway.
MAX_DRAWN_FIXES = 4000
# Points on a circle fence's outline.
CIRCLE_SEGMENTS = 72

CATEGORY_LABELS: dict[str, str] = {
    SubjectCategory.PROBATION: "缓刑",
    SubjectCategory.PAROLE: "假释",
    SubjectCategory.CONTROL: "管制",
    SubjectCategory.MEDICAL_PAROLE: "暂予监外执行",
}
DISPOSITION_LABELS: dict[str, str] = {
    Disposition.CONFIRMED: "经核实确认违规",
    Disposition.JUSTIFIED: "事出有因（不属违规）",
    Disposition.FALSE_ALARM: "误报",
}
STATUS_LABELS: dict[str, str] = {
    ProposalStatus.PENDING: "待决定",
    ProposalStatus.APPROVED: "已批准",
    ProposalStatus.REJECTED: "未批准",
}
CHECKIN_KIND_LABELS: dict[str, str] = {
    CheckinKind.SCHEDULED: "定时报到",
    CheckinKind.CHALLENGE: "随机抽查",
}
CHECKIN_STATUS_LABELS: dict[str, str] = {
    CheckinStatus.PENDING: "待报到",
    "open": "报到中",
    CheckinStatus.PASSED: "通过",
    CheckinStatus.NEEDS_REVIEW: "待人工复核",
    CheckinStatus.FAILED: "未通过",
    CheckinStatus.MISSED: "未按时报到",
    CheckinStatus.CANCELLED: "已取消",
}
TASK_STEP_LABELS: dict[str, str] = {
    "phone": "电话联系",
    "info_check": "信息化核查",
    "visit": "实地走访",
    "notify_police": "通报公安机关",
    "note": "备注",
    "escalated": "逾期升级",
    "sla_missed": "超过办理时限",
    "done": "办结",
}
TASK_KIND_LABELS: dict[str, str] = {
    "verify_alert": "核实告警",
    "search": "组织查找",
    "review_checkin": "复核报到",
    "approve_leave": "审批外出",
    "decide_proposal": "决定建议",
}
SEVERITY_LABELS: dict[str, str] = {"high": "高", "normal": "一般"}


def alert_type_label(alert_type: str) -> str:
    """The zh-CN name of an alert type (the ladder's, which grounds use too).

    >>> alert_type_label("left_activity_area")
    '越出活动区域（越界）'
    >>> alert_type_label("some_new_type")
    'some_new_type'
    """
    return BREACH_LABELS.get(alert_type, (alert_type, alert_type))[0]


def measure_label(measure: Measure, category: SubjectCategory) -> str:
    """The zh-CN name of the measure; revocation named as the subject's category has it.

    >>> measure_label(Measure.WARNING, SubjectCategory.PROBATION)
    '警告'
    >>> measure_label(Measure.REVOCATION, SubjectCategory.PAROLE)
    '提请撤销假释'
    """
    if measure is Measure.REVOCATION and category in REVOCATION_LABELS:
        return REVOCATION_LABELS[category][0]
    return MEASURE_LABELS[measure][0]


@dataclass(frozen=True, slots=True)
class TaskStep:
    """One recorded step of a task about the proposal or its alerts (a search's phone call,
    a visit, an escalation)."""

    task_id: int
    task_kind: str
    kind: str
    at: datetime
    officer_id: int | None
    note: str | None


@dataclass(frozen=True, slots=True)
class SubjectFacts:
    name: str
    category: str
    level: str
    station: str
    term: str


@dataclass(frozen=True, slots=True)
class Fact:
    """One line of the facts in time order: when, what kind of record, what it says."""

    at: datetime
    when: str
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Decision:
    """Who decided what, when (and what they noted)."""

    at: datetime
    when: str
    who: str
    what: str
    note: str


@dataclass(frozen=True, slots=True)
class MapView:
    """The episode's map in page points, origin at the drawing box's lower left.

    ``fences`` are closed outlines; ``path`` the fixes in time order (thinned to
    :data:`MAX_DRAWN_FIXES`); ``scale_bar`` is (length in points, its label).
    """

    width: float
    height: float
    fences: tuple[tuple[tuple[float, float], ...], ...]
    path: tuple[tuple[float, float], ...]
    fixes: int
    scale_bar: tuple[float, str]
    caption: str


@dataclass(frozen=True, slots=True)
class EvidenceDocument:
    title: str
    reference: str
    subject: SubjectFacts
    measure: str
    article: str
    status: str
    grounds: tuple[str, ...]
    facts: tuple[Fact, ...]
    map: MapView | None
    decisions: tuple[Decision, ...]
    generated_at: str
    file_name: str


def local_time(ts: datetime | None, zone: ZoneInfo) -> str:
    """``ts`` on the station's wall clock, to the second; a dash for no time.

    >>> from datetime import UTC
    >>> local_time(datetime(2026, 5, 1, 2, 30, tzinfo=UTC), ZoneInfo("Asia/Shanghai"))
    '2026-05-01 10:30:00'
    >>> local_time(None, ZoneInfo("Asia/Shanghai"))
    '—'
    """
    if ts is None:
        return "—"
    return ts.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _term(start: date, end: date) -> str:
    return f"{start:%Y年%m月%d日} 至 {end:%Y年%m月%d日}"


def _alert_fact(alert: Alert, zone: ZoneInfo) -> str:
    parts = [
        f"告警 {alert.id}：{alert_type_label(alert.type)}",
        f"级别{SEVERITY_LABELS.get(alert.severity, alert.severity)}",
        f"开始于 {local_time(alert.started_at, zone)}",
        f"系统发现于 {local_time(alert.detected_at, zone)}",
        (
            f"结束于 {local_time(alert.ended_at, zone)}"
            if alert.ended_at is not None
            else "告警时仍未结束"
        ),
    ]
    if alert.disposition is not None:
        parts.append(f"处置：{DISPOSITION_LABELS.get(alert.disposition, alert.disposition)}")
    if alert.note:
        parts.append(f"民警备注：{alert.note}")
    if alert.retracted_at is not None:
        parts.append(f"已于 {local_time(alert.retracted_at, zone)} 撤回")
    return "；".join(parts) + "。"


def _checkin_fact(checkin: Checkin, zone: ZoneInfo, now: datetime) -> str:
    shown = checkin.shown_status(now)
    parts = [
        f"报到 {checkin.id}：{CHECKIN_KIND_LABELS.get(checkin.kind, checkin.kind)}",
        f"时限 {local_time(checkin.opens_at, zone)} 至 {local_time(checkin.closes_at, zone)}",
        f"结果：{CHECKIN_STATUS_LABELS.get(shown, shown)}",
    ]
    if checkin.answered_at is not None:
        parts.append(f"应答于 {local_time(checkin.answered_at, zone)}")
    if checkin.review_note:
        parts.append(f"复核意见：{checkin.review_note}")
    return "；".join(parts) + "。"


def _who(officer_id: int | None, officers: dict[int, str]) -> str:
    if officer_id is None:
        return "系统"
    return officers.get(officer_id, f"民警 {officer_id}")


def _step_label(kind: str) -> str:
    return TASK_STEP_LABELS.get(kind, kind)


def build_document(
    *,
    proposal: Proposal,
    subject: Subject,
    station: str,
    zone: ZoneInfo,
    alerts: Sequence[Alert],
    checkins: Sequence[Checkin],
    steps: Sequence[TaskStep],
    officers: dict[int, str],
    map_view: MapView | None,
    now: datetime,
) -> EvidenceDocument:
    """The evidence document of ``proposal``: ``officers`` names officers by id (display
    name, else username); times are shown on ``zone``'s clock; ``now`` is when it is made."""
    measure = measure_label(proposal.measure, subject.category)
    if proposal.measure is Measure.LEVEL_CHANGE and proposal.proposed_level is not None:
        measure = f"{measure}（调整为{LEVEL_LABELS[proposal.proposed_level]}）"
    facts: list[Fact] = []
    decisions: list[Decision] = []

    def fact(at: datetime, kind: str, text: str) -> None:
        facts.append(Fact(at, local_time(at, zone), kind, text))

    def decided(at: datetime | None, officer_id: int | None, what: str, note: str | None) -> None:
        if at is not None:
            who = _who(officer_id, officers)
            decisions.append(Decision(at, local_time(at, zone), who, what, note or ""))

    for alert in alerts:
        fact(alert.started_at, "告警", _alert_fact(alert, zone))
        label = f"告警 {alert.id}（{alert_type_label(alert.type)}）"
        decided(alert.acknowledged_at, alert.acknowledged_by, f"签收{label}", None)
        if alert.disposition is not None:
            disposition = DISPOSITION_LABELS.get(alert.disposition, alert.disposition)
            decided(alert.resolved_at, alert.resolved_by, f"处置{label}：{disposition}", alert.note)
    for checkin in checkins:
        fact(checkin.opens_at, "报到", _checkin_fact(checkin, zone, now))
        decided(
            checkin.reviewed_at,
            checkin.reviewed_by,
            f"复核报到 {checkin.id}：{CHECKIN_STATUS_LABELS.get(checkin.status, checkin.status)}",
            checkin.review_note,
        )
    for step in steps:
        who = _who(step.officer_id, officers)
        task = f"任务 {step.task_id}（{TASK_KIND_LABELS.get(step.task_kind, step.task_kind)}）"
        text = f"{task}：{_step_label(step.kind)}（{who}）"
        fact(step.at, "任务", text + (f"：{step.note}" if step.note else "") + "。")
        if step.officer_id is not None:
            decided(
                step.at,
                step.officer_id,
                f"任务 {step.task_id}：{_step_label(step.kind)}",
                step.note,
            )
    fact(proposal.created_at, "建议", f"系统依据已确认的事实生成建议 {proposal.id}：{measure}。")
    decisions.append(
        Decision(
            proposal.created_at,
            local_time(proposal.created_at, zone),
            "系统",
            f"提出建议 {proposal.id}：{measure}",
            "",
        )
    )
    if proposal.status is not ProposalStatus.PENDING:
        decided(
            proposal.decided_at,
            proposal.decided_by,
            f"决定建议 {proposal.id}：{STATUS_LABELS[proposal.status]}",
            proposal.decision_note,
        )
    facts.sort(key=lambda f: f.at)
    decisions.sort(key=lambda d: d.at)
    return EvidenceDocument(
        title=f"社区矫正{measure}建议书（证据材料）",
        reference=f"建议编号 {proposal.id}",
        subject=SubjectFacts(
            name=subject.name,
            category=CATEGORY_LABELS.get(subject.category, subject.category),
            level=LEVEL_LABELS.get(subject.supervision_level, subject.supervision_level),
            station=station,
            term=_term(subject.term_start, subject.term_end),
        ),
        measure=measure,
        article=proposal.article,
        status=STATUS_LABELS[proposal.status],
        grounds=proposal.grounds,
        facts=tuple(facts),
        map=map_view,
        decisions=tuple(decisions),
        generated_at=local_time(now, zone),
        file_name=f"proposal-{proposal.id}-evidence.pdf",
    )


# ------------------------------------------------------------------------------------ the map


def circle_ring(lon: float, lat: float, radius_m: float) -> list[tuple[float, float]]:
    """A circle fence's outline as lon/lat points (closed: the first point repeated).

    >>> ring = circle_ring(117.0, 39.0, 1000.0)
    >>> len(ring), ring[0] == ring[-1]
    (73, True)
    """
    cos_lat = math.cos(math.radians(lat))
    ring = []
    for i in range(CIRCLE_SEGMENTS):
        angle = 2 * math.pi * i / CIRCLE_SEGMENTS
        ring.append(
            (
                lon + radius_m * math.cos(angle) / (M_PER_DEG_LON * cos_lat),
                lat + radius_m * math.sin(angle) / M_PER_DEG_LAT,
            )
        )
    ring.append(ring[0])
    return ring


def nice_length(at_most_m: float) -> float:
    """The longest round length (1, 2 or 5 times a power of ten metres) not above
    ``at_most_m``: the scale bar's.

    >>> nice_length(740.0), nice_length(2000.0), nice_length(0.3)
    (500.0, 2000.0, 0.2)
    """
    power = 10.0 ** math.floor(math.log10(at_most_m))
    for step in (5.0, 2.0, 1.0):
        if step * power <= at_most_m * (1 + 1e-9):
            return step * power
    return power


def _length_label(metres: float) -> str:
    """
    >>> _length_label(500.0), _length_label(2000.0), _length_label(0.2)
    ('500 米', '2 公里', '0.2 米')
    """
    if metres >= 1000:
        return f"{metres / 1000:g} 公里"
    return f"{metres:g} 米"


def thin(points: Sequence[TrackPoint], limit: int = MAX_DRAWN_FIXES) -> list[TrackPoint]:
    """At most ``limit`` of ``points``, evenly spaced, the first and the last kept.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> pts = [TrackPoint(t, i, i, 5, 0, 1) for i in range(10)]
    >>> [p.lon_e7 for p in thin(pts, 4)]
    [0, 3, 6, 9]
    """
    if len(points) <= limit:
        return list(points)
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


@dataclass(frozen=True, slots=True)
class PageProjection:
    """Longitude and latitude (WGS-84) to page points of a ``width`` × ``height`` box, origin
    at its lower left, north up, the same scale both ways: an equirectangular plane around
    ``(lon0, lat0)`` (a county is small enough that the error stays far below a fix's
    accuracy), ``scale`` points per metre, the framed extent's middle ``(mid_x, mid_y)``
    metres at the box's centre. Made by :func:`fit_projection`."""

    width: float
    height: float
    margin: float
    lon0: float
    lat0: float
    x_scale: float
    mid_x: float
    mid_y: float
    scale: float

    def metres(self, pt: tuple[float, float]) -> tuple[float, float]:
        """``pt`` (lon, lat) as metres east and north of ``(lon0, lat0)``."""
        return ((pt[0] - self.lon0) * self.x_scale, (pt[1] - self.lat0) * M_PER_DEG_LAT)

    def page(self, pt: tuple[float, float]) -> tuple[float, float]:
        """``pt`` (lon, lat) in page points."""
        x, y = self.metres(pt)
        return (
            self.width / 2 + (x - self.mid_x) * self.scale,
            self.height / 2 + (y - self.mid_y) * self.scale,
        )

    def scale_bar(self) -> tuple[float, str]:
        """A round length at most a quarter of the inner width: (its length in points, its
        label)."""
        bar_m = nice_length((self.width - 2 * self.margin) / 4 / self.scale)
        return bar_m * self.scale, _length_label(bar_m)


def fit_projection(
    points: Sequence[tuple[float, float]],
    *,
    width: float,
    height: float,
    margin: float = 12.0,
    min_span_m: float = 50.0,
) -> PageProjection | None:
    """The projection that frames every one of ``points`` (lon, lat) whole inside the box,
    ``margin`` points from its edges; an extent narrower than ``min_span_m`` metres (one
    point, or a few metres apart) is framed as that wide. None when there are no points.

    >>> view = fit_projection([(112.9, 28.2), (112.91, 28.21)], width=200, height=100)
    >>> [round(c, 1) for c in view.page((112.9, 28.2))], round(view.scale, 4)
    ([66.3, 12.0], 0.0687)
    """
    if not points:
        return None
    lon0 = (min(p[0] for p in points) + max(p[0] for p in points)) / 2
    lat0 = (min(p[1] for p in points) + max(p[1] for p in points)) / 2
    x_scale = M_PER_DEG_LON * math.cos(math.radians(lat0))
    planar = [((p[0] - lon0) * x_scale, (p[1] - lat0) * M_PER_DEG_LAT) for p in points]
    min_x = min(p[0] for p in planar)
    max_x = max(p[0] for p in planar)
    min_y = min(p[1] for p in planar)
    max_y = max(p[1] for p in planar)
    span_x = max(max_x - min_x, min_span_m)
    span_y = max(max_y - min_y, min_span_m)
    inner_w, inner_h = width - 2 * margin, height - 2 * margin
    return PageProjection(
        width=width,
        height=height,
        margin=margin,
        lon0=lon0,
        lat0=lat0,
        x_scale=x_scale,
        mid_x=(min_x + max_x) / 2,
        mid_y=(min_y + max_y) / 2,
        scale=min(inner_w / span_x, inner_h / span_y),  # points per metre
    )


def project_map(
    points: Sequence[TrackPoint],
    fences: Iterable[Sequence[tuple[float, float]]],
    *,
    width: float,
    height: float,
    caption: str,
    margin: float = 12.0,
) -> MapView | None:
    """The fixes and fence outlines (lon/lat, WGS-84) fitted into a ``width`` × ``height``
    box of page points (north up, the same scale both ways); None when there is nothing to
    draw. The view frames the fixes and every fence outline, whole."""
    drawn = thin(points)
    track = [(p.lon_e7 / 1e7, p.lat_e7 / 1e7) for p in drawn]
    rings = [list(ring) for ring in fences if len(ring) >= 2]
    everything = track + [pt for ring in rings for pt in ring]
    projection = fit_projection(everything, width=width, height=height, margin=margin)
    if projection is None:
        return None
    return MapView(
        width=width,
        height=height,
        fences=tuple(tuple(projection.page(pt) for pt in ring) for ring in rings),
        path=tuple(projection.page(pt) for pt in track),
        fixes=len(points),
        scale_bar=projection.scale_bar(),
        caption=caption,
    )


def fence_rings(geometry: Any) -> list[list[tuple[float, float]]]:
    """The outlines (exterior and holes) of a shapely Polygon or MultiPolygon, as lon/lat
    lists; nothing for other shapes."""
    kind = getattr(geometry, "geom_type", "")
    polygons = list(geometry.geoms) if kind == "MultiPolygon" else [geometry]
    if kind not in ("Polygon", "MultiPolygon"):
        return []
    rings: list[list[tuple[float, float]]] = []
    for polygon in polygons:
        for ring in (polygon.exterior, *polygon.interiors):
            rings.append([(float(x), float(y)) for x, y, *_ in ring.coords])
    return rings
