"""A proposal's evidence document (证据材料) as a printable zh-CN PDF.

RULES.md §1: every proposal carries the article, the facts and who decided what, when;
§4: every export and every read of location history is audited with its purpose. Making
the document reads the proposal, its alerts, the check-ins and task steps of the episode,
the fence, and the episode's fixes through the same fix store the track endpoint reads
(``uow.fixes.track``), and records two audit entries in that read's transaction: the
location history's read (``track.export``, purpose "proposal evidence") and the document's
export (``proposal.export``), so a document that cannot be audited is never made.

Rendering is CPU-bound (ReportLab, pure Python): it runs after the transaction, on a small
thread pool of its own, so the event loop keeps serving while a document is drawn and at
most :data:`service.documents.RENDER_WORKERS` documents are drawn at once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from correction_monitor.adapters import errors as stored
from correction_monitor.adapters.pdf import render_pdf
from correction_monitor.domain.access import CASEWORK_ROLES, Principal, Role
from correction_monitor.domain.checkins import Checkin
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.evidence import (
    EvidenceDocument,
    MapView,
    TaskStep,
    build_document,
    circle_ring,
    fence_rings,
    local_time,
    project_map,
)
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.ladder import Proposal
from correction_monitor.domain.models import Alert, GeofenceRecord, Subject
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.command import Command
from correction_monitor.service.documents import document_font, draw
from correction_monitor.service.errors import Forbidden, NotFound
from correction_monitor.service.track import MAX_TRACK_FIXES, MAX_TRACK_SPAN
from correction_monitor.service.unit_of_work import UnitOfWork

# Who may print a proposal's evidence: casework roles and auditors, within jurisdiction.
DOCUMENT_READERS = CASEWORK_ROLES | {Role.AUDITOR}
DEFAULT_PURPOSE = "proposal evidence"
# The episode's window: from a little before its first alert began to a little after its
# last ended (or was decided), so the map shows the way out and back.
EPISODE_MARGIN = timedelta(minutes=30)
# A proposal with no alert (the lost-contact clock, a level change): the day before it.
NO_ALERT_SPAN = timedelta(days=1)
MAX_CHECKINS = 500
MAX_TASKS = 200
# The map's box in page points: the text column of A4 with 18 mm margins, 2:3.
MAP_WIDTH = 493.0
MAP_HEIGHT = MAP_WIDTH * 2 / 3


@dataclass(frozen=True, slots=True)
class EvidencePdf:
    proposal_id: int
    file_name: str
    content: bytes


@dataclass(frozen=True, slots=True)
class RenderEvidence(Command[EvidencePdf]):
    """The evidence document of proposal ``proposal_id``; ``purpose`` is recorded with the
    export (``proposal evidence`` when not given)."""

    actor: Principal
    proposal_id: int
    purpose: str | None = None
    request_id: str | None = None


def episode_window(proposal: Proposal, alerts: list[Alert]) -> tuple[datetime, datetime]:
    """The span whose fixes and check-ins the document shows (at most a track read's 31
    days, the latest of them)."""
    if not alerts:
        return proposal.created_at - NO_ALERT_SPAN, proposal.created_at
    start = min(a.started_at for a in alerts) - EPISODE_MARGIN
    ends = [a.ended_at or a.resolved_at or a.detected_at for a in alerts]
    end = max(max(e for e in ends if e is not None), *(a.detected_at for a in alerts))
    end += EPISODE_MARGIN
    return max(start, end - MAX_TRACK_SPAN), end


async def _fence_outlines(
    uow: UnitOfWork, fence: GeofenceRecord
) -> list[list[tuple[float, float]]]:
    if fence.geometry_id is not None:
        return fence_rings(await uow.geo.load_geometry(fence.geometry_id))
    if fence.center_lon is not None and fence.center_lat is not None and fence.radius_m:
        return [circle_ring(fence.center_lon, fence.center_lat, fence.radius_m)]
    if fence.adcodes:
        areas = await uow.geo.admin_area_shapes()
        rings: list[list[tuple[float, float]]] = []
        for code in fence.adcodes:
            if code in areas:
                rings += fence_rings(areas[code].geometry)
        return rings
    return []


async def _map(
    uow: UnitOfWork, subject: Subject, alerts: list[Alert], points: list[TrackPoint], caption: str
) -> MapView | None:
    """The fixes with the activity area and the fences the alerts name."""
    ids = [subject.activity_area_id] if subject.activity_area_id is not None else []
    ids += [a.fence_id for a in alerts if a.fence_id is not None and a.fence_id not in ids]
    outlines: list[list[tuple[float, float]]] = []
    for fence in await uow.geo.get_fences(ids):
        outlines += await _fence_outlines(uow, fence)
    return project_map(points, outlines, width=MAP_WIDTH, height=MAP_HEIGHT, caption=caption)


async def _officer_names(uow: UnitOfWork, ids: set[int]) -> dict[int, str]:
    names = {}
    for officer_id in sorted(ids):
        try:
            officer = await uow.officers.get(officer_id)
        except stored.NotFound:
            continue
        names[officer_id] = officer.display_name or officer.username
    return names


async def _task_steps(
    uow: UnitOfWork, who: Principal, proposal: Proposal, checkins: list[Checkin]
) -> list[TaskStep]:
    """The steps of the tasks about the proposal, its alerts or the episode's check-ins."""
    checkin_ids = {c.id for c in checkins}
    tasks = await uow.tasks.list_in(
        scope=who.scope,
        viewer_id=who.officer_id,
        status=None,
        assignee_id=None,
        subject_id=proposal.subject_id,
        kind=None,
        limit=MAX_TASKS,
    )
    steps = []
    for task in tasks:
        if not (
            task.proposal_id == proposal.id
            or task.alert_id in proposal.alert_ids
            or task.checkin_id in checkin_ids
        ):
            continue
        for step in await uow.tasks.steps(task.id):
            steps.append(
                TaskStep(task.id, task.kind, step.kind, step.at, step.officer_id, step.note)
            )
    return steps


async def _gather(
    command: RenderEvidence, uow: UnitOfWork, now: datetime
) -> tuple[EvidenceDocument, int]:
    """The document's model and how many fixes it maps, read and audited in one transaction."""
    who = command.actor
    purpose = command.purpose or DEFAULT_PURPOSE
    async with uow:
        try:
            proposal = await uow.proposals.get(command.proposal_id)
            subject = await uow.subjects.get(proposal.subject_id)
        except stored.NotFound as exc:
            raise NotFound(f"proposal {command.proposal_id}") from exc
        # Outside the jurisdiction reads exactly as a proposal that does not exist.
        if not who.sees(subject.org_unit_id):
            raise NotFound(f"proposal {command.proposal_id}")
        station = await uow.org_units.get(subject.org_unit_id)
        zone = ZoneInfo(station.timezone)
        alerts = []
        for alert_id in proposal.alert_ids:
            try:
                alerts.append(await uow.alerts.get(alert_id))
            except stored.NotFound:
                continue
        start, end = episode_window(proposal, alerts)
        points = await uow.fixes.track(subject.id, start, end, MAX_TRACK_FIXES)
        checkins = await uow.checkins.list_for(
            subject.id, start, end, challenges_opened_by=now, limit=MAX_CHECKINS
        )
        steps = await _task_steps(uow, who, proposal, checkins)
        caption = (
            f"定位点 {len(points)} 个，{local_time(start, zone)} 至 {local_time(end, zone)}"
            "（WGS-84；红线为电子围栏，蓝线为轨迹）"
        )
        view = await _map(uow, subject, alerts, points, caption)
        officer_ids = {
            i
            for i in (
                *(a.acknowledged_by for a in alerts),
                *(a.resolved_by for a in alerts),
                *(c.reviewed_by for c in checkins),
                *(s.officer_id for s in steps),
                proposal.decided_by,
            )
            if i is not None
        }
        names = await _officer_names(uow, officer_ids)
        detail = {"proposal_id": proposal.id, "from": iso(start), "to": iso(end)}
        uow.audit(
            officer_id=who.officer_id,
            action="track.export",
            subject_id=subject.id,
            purpose=DEFAULT_PURPOSE,
            request_id=command.request_id,
            detail=detail | {"fixes": len(points)},
        )
        uow.audit(
            officer_id=who.officer_id,
            action="proposal.export",
            subject_id=subject.id,
            purpose=purpose,
            request_id=command.request_id,
            detail=detail | {"alerts": len(alerts), "checkins": len(checkins), "format": "pdf"},
        )
    document = build_document(
        proposal=proposal,
        subject=subject,
        station=station.name,
        zone=zone,
        alerts=alerts,
        checkins=checkins,
        steps=steps,
        officers=names,
        map_view=view,
        now=now,
    )
    return document, len(points)


async def render_evidence(
    command: RenderEvidence, uow: UnitOfWork, *, clock: Clock, font: Path | None
) -> EvidencePdf:
    """Read, audit, then draw the document off the event loop. ``font`` is the configured
    TrueType file (``CM_PDF_FONT``), the npm package's when None; without it the answer is
    ``font_missing`` (503) before anything is read."""
    if not command.actor.may(DOCUMENT_READERS):
        raise Forbidden("your role may not read evidence documents")
    font_path = document_font(font)
    document, _ = await _gather(command, uow, clock.now())
    content = await draw(render_pdf, document, font_path)
    return EvidencePdf(command.proposal_id, document.file_name, content)
