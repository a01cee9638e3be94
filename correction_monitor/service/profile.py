"""The subject's app: its own profile and rules, rendered so the app can draw them.

The app sees only its own subject (RULES.md §4): who it is, its station and time zone, its
term, its curfew and home, its activity area and exclusion zones as GeoJSON (WGS-84), its
check-in windows and challenge rules, and how often to report its location. That last one is
the level's ``expected_fix_interval_s``, and ``None`` for 宽管: supervised by check-ins only,
its phone is told not to track at all (data minimisation, RULES.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import shapely
from shapely.geometry.base import BaseGeometry

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.app_profile import (
    as_multipolygon,
    circle_polygon,
    stored_windows_json,
    windows_json,
)
from correction_monitor.domain.models import GeofenceRecord, Subject
from correction_monitor.policy import Policy
from correction_monitor.service.command import Command
from correction_monitor.service.errors import NotFound
from correction_monitor.service.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class ReadProfile(Command[dict[str, Any]]):
    """The profile of the subject whose device is calling (``GET /api/v1/me``)."""

    subject_id: int


def geometry_json(geometry: BaseGeometry) -> dict[str, Any]:
    """A stored geometry as a GeoJSON geometry object (shapely writes it in C: a county's
    boundary of many thousand vertices costs milliseconds)."""
    rendered: dict[str, Any] = orjson.loads(shapely.to_geojson(geometry))
    return rendered


async def fence_geometry(uow: UnitOfWork, fence: GeofenceRecord) -> dict[str, Any] | None:
    """A fence as a GeoJSON geometry: a circle as the polygon approximating it, a fence of
    administrative areas as the MultiPolygon of their union, a drawn polygon as stored."""
    if fence.geometry_id is not None:
        rendered = geometry_json(await uow.geo.load_geometry(fence.geometry_id))
        return as_multipolygon(rendered) if fence.adcodes else rendered
    if fence.center_lon is not None and fence.center_lat is not None and fence.radius_m:
        return circle_polygon(fence.center_lon, fence.center_lat, fence.radius_m)
    return None


def _hhmm_pair(subject: Subject) -> dict[str, str] | None:
    if subject.curfew is None:
        return None
    return {
        "start": subject.curfew.start.strftime("%H:%M"),
        "end": subject.curfew.end.strftime("%H:%M"),
    }


async def read_profile(command: ReadProfile, uow: UnitOfWork, *, policy: Policy) -> dict[str, Any]:
    """The contract's profile fields, then what the app needs to supervise itself: the
    reporting interval, check-in windows (the subject's own when set, else its level's),
    challenge rules, reminder leads and the home circle."""
    async with uow:
        try:
            subject = await uow.subjects.get(command.subject_id)
        except stored.NotFound as exc:
            raise NotFound(f"subject {command.subject_id}") from exc
        unit = await uow.org_units.get(subject.org_unit_id)
        area_ids = [subject.activity_area_id] if subject.activity_area_id else []
        fences = {
            f.id: f for f in await uow.geo.get_fences([*area_ids, *subject.exclusion_zone_ids])
        }
        area = fences.get(subject.activity_area_id) if subject.activity_area_id else None
        activity_area = await fence_geometry(uow, area) if area is not None else None
        zones = []
        for zone_id in subject.exclusion_zone_ids:
            zone = fences.get(zone_id)
            if zone is None:
                continue
            zones.append(
                {
                    "id": zone.id,
                    "name": zone.name,
                    "geometry": await fence_geometry(uow, zone),
                    "schedule": zone.schedule,
                }
            )
        own = await uow.profiles.own_schedule(subject.id)
    level = policy.level(subject.supervision_level)
    windows = stored_windows_json(own) if own is not None else None
    return {
        "subject_id": subject.id,
        "name": subject.name,
        "supervision_level": subject.supervision_level.value,
        "org_unit": unit.code,
        "timezone": unit.timezone,
        "term_start": subject.term_start.isoformat(),
        "term_end": subject.term_end.isoformat(),
        "curfew": _hhmm_pair(subject),
        "activity_area": activity_area,
        "exclusion_zones": zones,
        "home": (
            {"lat": subject.home.lat, "lon": subject.home.lon, "radius_m": subject.home.radius_m}
            if subject.home
            else None
        ),
        "location_interval_s": (
            level.expected_fix_interval_s if level.expected_fix_interval_s > 0 else None
        ),
        "checkin_schedule": "subject" if windows is not None else "level",
        "checkin_windows": windows if windows is not None else windows_json(level.checkin_windows),
        "challenge": {
            "per_period": level.challenges_per_period,
            "period": level.challenge_period,
            "answer_within_s": level.challenge_answer_s,
        },
        "reminder_lead_s": list(level.reminder_lead_s),
    }
