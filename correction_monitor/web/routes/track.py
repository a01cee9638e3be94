"""A subject's location history: every read is audited with its purpose (RULES.md §4)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from correction_monitor.adapters import audit, fixes
from correction_monitor.domain.access import Role
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.domain.timeutil import BadInstant, iso, parse_instant
from correction_monitor.web.auth import officer
from correction_monitor.web.errors import bad_request
from correction_monitor.web.jsonio import json_response, refuse_nul
from correction_monitor.web.keys import POOL, REQUEST_ID
from correction_monitor.web.params import PG_INT_MAX, int_param, visible_subject

routes = web.RouteTableDef()

MAX_TRACK_SPAN = timedelta(days=31)
DEFAULT_SPAN = timedelta(days=1)
MAX_TRACK_FIXES = 100_000
AUDIT_READERS = frozenset({Role.AUDITOR, Role.ADMIN})


def _instant(request: web.Request, name: str, default: datetime) -> datetime:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
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


async def _read_track(
    request: web.Request, action: str
) -> tuple[int, datetime, datetime, list[Any]]:
    """Check access and the window, read the fixes and audit the read as ``action``."""
    who = await officer(request)
    subject_id = int_param(request, "id")
    now = datetime.now(UTC)
    end = _instant(request, "to", now)
    # The default span would step before year 1 for a 'to' within a day of it.
    start = _instant(
        request, "from", max(end, datetime.min.replace(tzinfo=UTC) + DEFAULT_SPAN) - DEFAULT_SPAN
    )
    if end <= start:
        raise bad_request("invalid_time", "'to' must be after 'from'")
    if end - start > MAX_TRACK_SPAN:
        raise bad_request("span_too_long", "a track read covers at most 31 days")
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await visible_subject(conn, who, subject_id)
        rows = await fixes.track(conn, subject_id, start, end, MAX_TRACK_FIXES)
        await audit.record(
            conn,
            officer_id=who.officer_id,
            action=action,
            subject_id=subject_id,
            purpose=purpose,
            request_id=request.get(REQUEST_ID),
            detail={"from": iso(start), "to": iso(end), "fixes": len(rows)},
        )
    return subject_id, start, end, rows


@routes.get("/api/v1/subjects/{id}/track")
async def track(request: web.Request) -> web.Response:
    """GeoJSON FeatureCollection of the subject's accepted fixes (WGS-84, time-ordered)."""
    subject_id, start, end, rows = await _read_track(request, "track.read")
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [r["lon_e7"] / 1e7, r["lat_e7"] / 1e7]},
            "properties": {
                "ts": iso(r["ts"]),
                "accuracy_m": r["accuracy_m"],
                "device_id": r["device_id"],
                "flags": FixFlag.names(r["flags"]),
            },
        }
        for r in rows
    ]
    return json_response(
        {
            "type": "FeatureCollection",
            "features": features,
            "properties": {
                "subject_id": subject_id,
                "from": iso(start),
                "to": iso(end),
                "crs": "wgs84",
                "truncated": len(rows) >= MAX_TRACK_FIXES,
            },
        }
    )


@routes.get("/api/v1/subjects/{id}/track.csv")
async def export_track(request: web.Request) -> web.Response:
    """The same fixes as a CSV download (an export: audited as ``track.export``)."""
    subject_id, start, end, rows = await _read_track(request, "track.export")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ts_utc", "lon_wgs84", "lat_wgs84", "accuracy_m", "device_id", "flags"])
    for r in rows:
        writer.writerow(
            [
                iso(r["ts"]),
                f"{r['lon_e7'] / 1e7:.7f}",
                f"{r['lat_e7'] / 1e7:.7f}",
                r["accuracy_m"],
                r["device_id"],
                "|".join(FixFlag.names(r["flags"])),
            ]
        )
    filename = f"subject-{subject_id}-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}.csv"
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
    limit = min(limit, 1000)
    if subject_id is not None and not 0 < subject_id <= PG_INT_MAX:
        # No subject has such an id; asyncpg would refuse to send it.
        return json_response({"entries": []})
    async with request.app[POOL].acquire() as conn:
        rows = await audit.entries(conn, subject_id=subject_id, limit=limit, scope=who.scope)
    return json_response({"entries": rows})
