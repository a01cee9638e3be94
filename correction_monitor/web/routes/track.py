"""A subject's location history and the audit log: reading them is ``service/track.py``'s
and ``service/audit_log.py``'s (every track read audited with its purpose, RULES.md §4);
these routes read the query and render the GeoJSON, the CSV download and the entries."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from correction_monitor.domain.fixes import FixFlag
from correction_monitor.domain.timeutil import BadInstant, iso, parse_instant
from correction_monitor.service.audit_log import AUDIT_READERS, ListAuditEntries
from correction_monitor.service.track import ReadTrack, Track
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, refuse_nul
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.params import PG_INT_MAX, int_param

routes = web.RouteTableDef()


def _instant(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_instant(raw)
    except BadInstant as exc:
        written = _wall_clock(raw)
        if written is None:
            raise bad_request("invalid_time", f"{name}: {exc}") from exc
        return written
    except (ValueError, OverflowError, OSError) as exc:
        # Epoch milliseconds beyond the years datetime can hold.
        raise bad_request("invalid_time", f"{name}: {raw!r} is out of range") from exc


def _wall_clock(raw: str) -> datetime | None:
    """An ISO-8601 time written without offset, read as UTC (as the OsmAnd decoder reads
    one); None when ``raw`` is not such a time.

    The contract takes "ISO-8601" input without demanding an offset, and a read window is
    not evidence: reading it as UTC, the zone every output time is written in, answers the
    query instead of refusing it.
    """
    try:
        written = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    return written.replace(tzinfo=UTC) if written.tzinfo is None else None


async def _read_track(request: web.Request, *, export: bool) -> Track:
    who = await officer(request)
    subject_id = int_param(request, "id")
    end = _instant(request, "to")
    start = _instant(request, "from")
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    command = ReadTrack(
        actor=who,
        subject_id=subject_id,
        start=start,
        end=end,
        export=export,
        purpose=purpose,
        request_id=request.get(REQUEST_ID),
    )
    return await handle(request, command)


@routes.get("/api/v1/subjects/{id}/track")
async def track(request: web.Request) -> web.Response:
    """GeoJSON FeatureCollection of the subject's accepted fixes (WGS-84, time-ordered)."""
    found = await _read_track(request, export=False)
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [p.lon_e7 / 1e7, p.lat_e7 / 1e7]},
            "properties": {
                "ts": iso(p.ts),
                "accuracy_m": p.accuracy_m,
                "device_id": p.device_id,
                "flags": FixFlag.names(p.flags),
            },
        }
        for p in found.points
    ]
    return json_response(
        {
            "type": "FeatureCollection",
            "features": features,
            "properties": {
                "subject_id": found.subject_id,
                "from": iso(found.start),
                "to": iso(found.end),
                "crs": "wgs84",
                "truncated": found.truncated,
            },
        }
    )


@routes.get("/api/v1/subjects/{id}/track.csv")
async def export_track(request: web.Request) -> web.Response:
    """The same fixes as a CSV download (an export: audited as ``track.export``)."""
    found = await _read_track(request, export=True)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ts_utc", "lon_wgs84", "lat_wgs84", "accuracy_m", "device_id", "flags"])
    for p in found.points:
        writer.writerow(
            [
                iso(p.ts),
                f"{p.lon_e7 / 1e7:.7f}",
                f"{p.lat_e7 / 1e7:.7f}",
                p.accuracy_m,
                p.device_id,
                "|".join(FixFlag.names(p.flags)),
            ]
        )
    start, end = found.start, found.end
    filename = f"subject-{found.subject_id}-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}.csv"
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@routes.get("/api/v1/audit")
async def audit_entries(request: web.Request) -> web.Response:
    """The audit log (newest first), for auditors and administrators."""
    who = await officer(request, AUDIT_READERS)
    raw_subject = request.query.get("subject_id")
    try:
        subject_id = int(raw_subject) if raw_subject else None
        limit = int(request.query.get("limit", "100"))
    except ValueError as exc:
        raise bad_request("invalid_request", "subject_id and limit must be integers") from exc
    if limit < 1:
        raise bad_request("invalid_request", "limit must be at least 1")
    if subject_id is not None and not 0 < subject_id <= PG_INT_MAX:
        # No subject has such an id; asyncpg would refuse to send it.
        return json_response({"entries": []})
    command = ListAuditEntries(actor=who, subject_id=subject_id, limit=limit)
    return json_response(
        {
            "entries": [
                {
                    "id": r.id,
                    "at": r.at.isoformat(),
                    "officer_id": r.entry.officer_id,
                    "action": r.entry.action,
                    "subject_id": r.entry.subject_id,
                    "purpose": r.entry.purpose,
                    "request_id": r.entry.request_id,
                    "detail": r.entry.detail,
                }
                for r in await handle(request, command)
            ]
        }
    )
