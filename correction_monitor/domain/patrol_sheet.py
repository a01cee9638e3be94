"""A night patrol plan as officers take it out: the exports' model (pure).

One :class:`PlanExport` holds what the JSON, GeoJSON, CSV and printed sheet show: per team
its start point, window and ordered stops, each stop with its subject's name and home (the
officers need both to knock on the right door; the subjects never see a plan). The GeoJSON
and CSV are built here; the printed sheet (``adapters/patrol_exports.py``) draws the
:class:`TeamSheet` pages this module makes, in Chinese, each with the unit's route map
(:class:`RouteMap`: every team's start and stops in order, projected onto the page by
:func:`project_route_map` with the evidence map's projection; no map tiles).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from correction_monitor.domain.evidence import fit_projection
from correction_monitor.domain.patrol_outcomes import OUTCOME_LABELS, Outcome
from correction_monitor.domain.timeutil import iso

REASON_LABELS: dict[str, str] = {
    "due": "到期走访",
    "overdue": "逾期未访",
    "last_night_of_window": "本期最后一晚（必访）",
    "drawn": "随机抽中",
    "added_by_supervisor": "所长增派",
    "swapped_in_by_supervisor": "所长调换",
    "open_alert": "有未处理告警",
    "recent_alert": "近期有告警",
    "curfew_anomaly": "宵禁时段异常",
    "new_intake": "新入矫",
    "recent_sanction": "近期受过处罚",
    "lost_contact": "曾失联",
    "device_integrity": "人机分离迹象",
    "manual": "人工指定",
}
"""The stop reasons in Chinese for the printed sheet (others print as given)."""

CSV_COLUMNS = (
    "team_id",
    "team",
    "seq",
    "eta_local",
    "subject_id",
    "name",
    "home_lat",
    "home_lon",
    "reasons",
    "outcome",
)


@dataclass(frozen=True, slots=True)
class ExportStop:
    """A stop of a route, with the subject's name and home (WGS-84)."""

    stop_id: int
    subject_id: int
    seq: int
    eta: datetime
    reasons: tuple[str, ...]
    name: str
    home_lon: float | None
    home_lat: float | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class ExportRoute:
    """A team's route: start (and end) point, window, figures and ordered stops."""

    team_id: int
    team: str
    start_lon: float
    start_lat: float
    window_start: time
    window_end: time
    distance_m: float | None
    duration_s: float | None
    stops: tuple[ExportStop, ...]


@dataclass(frozen=True, slots=True)
class PlanExport:
    plan_id: int
    org_unit: str
    station: str
    night: date
    status: str
    zone: ZoneInfo
    routes: tuple[ExportRoute, ...]

    @property
    def stop_count(self) -> int:
        return sum(len(r.stops) for r in self.routes)

    @property
    def subject_ids(self) -> list[int]:
        return [s.subject_id for r in self.routes for s in r.stops]


def reason_code(reason: Any) -> str:
    """A stored reason as text: a string as is, an object by its ``code`` (or ``kind``)."""
    if isinstance(reason, dict):
        for key in ("code", "kind", "reason"):
            value = reason.get(key)
            if isinstance(value, str):
                return value
        return str(reason)
    return str(reason)


def reason_label(reason: str) -> str:
    return REASON_LABELS.get(reason, reason)


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def geojson(plan: PlanExport) -> dict[str, Any]:
    """A FeatureCollection (RFC 7946, WGS-84 [lon, lat]): per route a LineString from the
    team's start through its stops in ``seq`` order back to the start, then per stop a
    Point at the subject's home. Stops without a home are left out of the geometry (they
    are listed in the route's ``stops_without_home``)."""
    features: list[dict[str, Any]] = []
    for route in plan.routes:
        start = [route.start_lon, route.start_lat]
        homes = [
            [s.home_lon, s.home_lat]
            for s in route.stops
            if s.home_lon is not None and s.home_lat is not None
        ]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [start, *homes, start]},
                "properties": {
                    "kind": "route",
                    "plan_id": plan.plan_id,
                    "team_id": route.team_id,
                    "team": route.team,
                    "distance_m": route.distance_m,
                    "duration_s": route.duration_s,
                    "stops": len(route.stops),
                    "stops_without_home": [
                        s.subject_id
                        for s in route.stops
                        if s.home_lon is None or s.home_lat is None
                    ],
                },
            }
        )
    for route in plan.routes:
        for stop in route.stops:
            if stop.home_lon is None or stop.home_lat is None:
                continue
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [stop.home_lon, stop.home_lat]},
                    "properties": {
                        "kind": "stop",
                        "plan_id": plan.plan_id,
                        "team_id": route.team_id,
                        "subject_id": stop.subject_id,
                        "name": stop.name,
                        "seq": stop.seq,
                        "eta": iso(stop.eta),
                        "reasons": list(stop.reasons),
                        "outcome": stop.outcome,
                    },
                }
            )
    return {"type": "FeatureCollection", "features": features}


def csv_text(plan: PlanExport) -> str:
    """One row per stop (header :data:`CSV_COLUMNS`), teams in order, stops by ``seq``;
    ``eta_local`` in the station's time zone, reasons joined by ``;``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for route in plan.routes:
        for stop in route.stops:
            writer.writerow(
                [
                    route.team_id,
                    route.team,
                    stop.seq,
                    _local(stop.eta, plan.zone),
                    stop.subject_id,
                    stop.name,
                    "" if stop.home_lat is None else f"{stop.home_lat:.6f}",
                    "" if stop.home_lon is None else f"{stop.home_lon:.6f}",
                    ";".join(stop.reasons),
                    stop.outcome or "",
                ]
            )
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class SheetRow:
    seq: str
    eta: str
    name: str
    place: str
    reasons: str
    outcome: str


@dataclass(frozen=True, slots=True)
class MapTeam:
    """A team's route as the map shows it (WGS-84): the start point and the homes of its
    stops in ``seq`` order, ``(seq, lon, lat)`` (stops without a home are left out)."""

    team_id: int
    team: str
    start: tuple[float, float]
    stops: tuple[tuple[int, float, float], ...]
    stop_count: int
    distance: str
    window: str


@dataclass(frozen=True, slots=True)
class RouteMap:
    """The unit's night on one map: every team's route, and the caption under it."""

    title: str
    teams: tuple[MapTeam, ...]
    caption: str


@dataclass(frozen=True, slots=True)
class RouteLineView:
    """A team's route in page points: start, then ``(seq, x, y)`` of each drawn stop."""

    team_id: int
    start: tuple[float, float]
    stops: tuple[tuple[int, float, float], ...]


@dataclass(frozen=True, slots=True)
class RouteMapView:
    """The route map in page points, origin at the drawing box's lower left; ``routes`` in
    the order of :attr:`RouteMap.teams`; ``scale_bar`` is (length in points, its label)."""

    width: float
    height: float
    routes: tuple[RouteLineView, ...]
    scale_bar: tuple[float, str]


def project_route_map(
    route_map: RouteMap, *, width: float, height: float, margin: float = 18.0
) -> RouteMapView | None:
    """The teams' starts and stops fitted into a ``width`` × ``height`` box of page points
    (north up, the same scale both ways, every point whole inside, at least 500 m framed);
    None when there is nothing to draw."""
    points = [p for t in route_map.teams for p in (t.start, *((x, y) for _, x, y in t.stops))]
    projection = fit_projection(points, width=width, height=height, margin=margin, min_span_m=500.0)
    if projection is None:
        return None
    routes = []
    for team in route_map.teams:
        stops = []
        for seq, lon, lat in team.stops:
            x, y = projection.page((lon, lat))
            stops.append((seq, x, y))
        routes.append(RouteLineView(team.team_id, projection.page(team.start), tuple(stops)))
    return RouteMapView(width, height, tuple(routes), projection.scale_bar())


@dataclass(frozen=True, slots=True)
class TeamSheet:
    """One printed page: a team's night, in Chinese, with the unit's route map (its own
    route ``team_id`` marked 本组)."""

    title: str
    heading: tuple[tuple[str, str], ...]
    rows: tuple[SheetRow, ...]
    footer: str
    team_id: int | None = None
    route_map: RouteMap | None = None


OUTCOME_BOXES = "　".join(f"□{label}" for label in OUTCOME_LABELS.values())
"""The outcome column's boxes to tick by hand."""


def _distance(route: ExportRoute) -> str:
    return "—" if route.distance_m is None else f"{route.distance_m / 1000:.1f} 公里"


def route_map(plan: PlanExport) -> RouteMap:
    """The plan's routes for the map, teams in the plan's order."""
    teams = []
    missing = 0
    for route in plan.routes:
        drawn = tuple(
            (stop.seq, stop.home_lon, stop.home_lat)
            for stop in sorted(route.stops, key=lambda s: s.seq)
            if stop.home_lon is not None and stop.home_lat is not None
        )
        missing += len(route.stops) - len(drawn)
        teams.append(
            MapTeam(
                team_id=route.team_id,
                team=route.team,
                start=(route.start_lon, route.start_lat),
                stops=drawn,
                stop_count=len(route.stops),
                distance=_distance(route),
                window=f"{_hhmm(route.window_start)}—{_hhmm(route.window_end)}",
            )
        )
    caption = (
        "■ 出发地点（起）　● 走访对象住所，数字为走访顺序。连线为出发地点→各住所→返回的"
        "直线示意，不是道路；实际路线以现场为准。本地平面投影（WGS-84），上北下南，无底图。"
    )
    if missing:
        caption += f"另有 {missing} 人未登记住所，未绘入。"
    return RouteMap(
        title=f"巡查路线图　{plan.station}　{plan.night.isoformat()}",
        teams=tuple(teams),
        caption=caption,
    )


def team_sheets(plan: PlanExport, generated_at: datetime) -> list[TeamSheet]:
    """The printed sheet's pages, one per team, each with the unit's route map (a plan
    without routes prints none)."""
    generated = _local(generated_at, plan.zone)
    routes_map = route_map(plan)
    sheets = []
    for route in plan.routes:
        rows = []
        for stop in route.stops:
            place = (
                f"{stop.home_lat:.5f}, {stop.home_lon:.5f}"
                if stop.home_lat is not None and stop.home_lon is not None
                else "未登记住所"
            )
            recorded = (
                f"已记录：{OUTCOME_LABELS[Outcome(stop.outcome)]}"
                if stop.outcome in {o.value for o in Outcome}
                else OUTCOME_BOXES
            )
            rows.append(
                SheetRow(
                    seq=str(stop.seq),
                    eta=stop.eta.astimezone(plan.zone).strftime("%H:%M"),
                    name=stop.name,
                    place=place,
                    reasons="、".join(reason_label(r) for r in stop.reasons) or "—",
                    outcome=recorded,
                )
            )
        sheets.append(
            TeamSheet(
                title="夜间巡查走访单",
                heading=(
                    ("司法所", plan.station),
                    ("巡查日期", plan.night.isoformat()),
                    ("巡查组", route.team),
                    ("工作时段", f"{_hhmm(route.window_start)}—{_hhmm(route.window_end)}"),
                    ("出发地点", f"{route.start_lat:.5f}, {route.start_lon:.5f}（WGS-84）"),
                    ("走访人数", f"{len(route.stops)} 人，路线全长 {_distance(route)}"),
                ),
                rows=tuple(rows),
                footer=f"巡查计划 {plan.plan_id} · {route.team} · 生成于 {generated}",
                team_id=route.team_id,
                route_map=routes_map,
            )
        )
    return sheets
