"""A night patrol plan exported for the officers who walk it: GeoJSON, CSV, and a printed
zh-CN sheet per team (``domain/patrol_sheet.py`` has their model).

The exports name each visited subject and their home, so each is a read of location data
(RULES.md §4): it is audited as ``patrol.export`` in the read's transaction, with the format,
the stops and subjects it shows and the caller's purpose ("patrol preparation" when not
given). Casework roles and auditors read plans of their jurisdiction; another unit's plan is
not found. The sheet is drawn off the event loop with the evidence document's font; without
the font the answer is ``font_missing`` (503) before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from correction_monitor.adapters.patrol_exports import StopRow, render_sheet
from correction_monitor.domain.access import CASEWORK_ROLES, Principal, Role
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.patrol_sheet import (
    ExportRoute,
    ExportStop,
    PlanExport,
    reason_code,
    team_sheets,
)
from correction_monitor.service.command import Command
from correction_monitor.service.documents import document_font, draw
from correction_monitor.service.errors import Forbidden, NotFound
from correction_monitor.service.unit_of_work import UnitOfWork

EXPORT_READERS = CASEWORK_ROLES | {Role.AUDITOR}
DEFAULT_PURPOSE = "patrol preparation"
FORMATS = ("geojson", "csv", "pdf")
AUDIT_IDS_MAX = 200


@dataclass(frozen=True, slots=True)
class ExportPlan(Command[PlanExport]):
    """Plan ``plan_id`` with its routes, stops, subjects' names and homes, read for the
    export ``format`` (``geojson``, ``csv``; the sheet is :class:`RenderPatrolSheet`)."""

    actor: Principal
    plan_id: int
    format: str
    purpose: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class PatrolSheetPdf:
    plan_id: int
    file_name: str
    content: bytes


@dataclass(frozen=True, slots=True)
class RenderPatrolSheet(Command[PatrolSheetPdf]):
    """The printed sheet of plan ``plan_id``: one A4 page per team."""

    actor: Principal
    plan_id: int
    purpose: str | None = None
    request_id: str | None = None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def _read(
    uow: UnitOfWork,
    who: Principal,
    plan_id: int,
    fmt: str,
    purpose: str | None,
    request_id: str | None,
) -> PlanExport:
    """The plan's export model, audited as a read of location data (in the open unit)."""
    if not who.may(EXPORT_READERS):
        raise Forbidden("your role may not read patrol plans")
    plan = await uow.patrol_exports.plan(plan_id)
    if plan is None or not who.sees(plan.org_unit_id):
        raise NotFound(f"patrol plan {plan_id}")
    figures = {r.get("team_id"): r for r in plan.routes if isinstance(r.get("team_id"), int)}
    by_team: dict[int, list[ExportStop]] = {}
    teams: dict[int, StopRow] = {}
    for row in await uow.patrol_exports.stops(plan_id):
        teams.setdefault(row.team_id, row)
        by_team.setdefault(row.team_id, []).append(
            ExportStop(
                stop_id=row.id,
                subject_id=row.subject_id,
                seq=row.seq,
                eta=row.eta,
                reasons=tuple(reason_code(r) for r in row.reasons),
                name=row.name,
                home_lon=row.home_lon,
                home_lat=row.home_lat,
                outcome=row.outcome,
            )
        )
    routes = []
    for team_id, stops in by_team.items():
        team = teams[team_id]
        route = figures.get(team_id, {})
        routes.append(
            ExportRoute(
                team_id=team_id,
                team=team.team,
                start_lon=team.start_lon,
                start_lat=team.start_lat,
                window_start=team.window_start,
                window_end=team.window_end,
                distance_m=_number(route.get("distance_m")),
                duration_s=_number(route.get("duration_s")),
                stops=tuple(stops),
            )
        )
    export = PlanExport(
        plan_id=plan.id,
        org_unit=plan.org_code,
        station=plan.station,
        night=plan.night,
        status=plan.status,
        zone=ZoneInfo(plan.timezone),
        routes=tuple(routes),
    )
    subject_ids = export.subject_ids
    uow.audit(
        officer_id=who.officer_id,
        action="patrol.export",
        purpose=purpose or DEFAULT_PURPOSE,
        request_id=request_id,
        subject_id=subject_ids[0] if len(subject_ids) == 1 else None,
        detail={
            "plan_id": plan.id,
            "night": plan.night.isoformat(),
            "format": fmt,
            "teams": len(routes),
            "stops": export.stop_count,
            "subjects": len(subject_ids),
            "subject_ids": subject_ids[:AUDIT_IDS_MAX],
            "homes": True,
        },
    )
    return export


async def export_plan(command: ExportPlan, uow: UnitOfWork) -> PlanExport:
    if command.format not in FORMATS:
        raise ValueError(f"unknown export format {command.format!r}")
    async with uow:
        return await _read(
            uow,
            command.actor,
            command.plan_id,
            command.format,
            command.purpose,
            command.request_id,
        )


async def render_patrol_sheet(
    command: RenderPatrolSheet, uow: UnitOfWork, *, clock: Clock, font: Path | None
) -> PatrolSheetPdf:
    """Read and audit the plan, then draw its sheet off the event loop (``font`` is
    ``CM_PDF_FONT``, the npm package's when None)."""
    if not command.actor.may(EXPORT_READERS):
        raise Forbidden("your role may not read patrol plans")
    font_path = document_font(font)
    async with uow:
        export = await _read(
            uow, command.actor, command.plan_id, "pdf", command.purpose, command.request_id
        )
    sheets = team_sheets(export, clock.now())
    title = f"夜间巡查走访单 {export.station} {export.night.isoformat()}"
    content = await draw(render_sheet, sheets, title, font_path)
    name = f"patrol-{export.plan_id}-{export.night.isoformat()}.pdf"
    return PatrolSheetPdf(export.plan_id, name, content)
