"""The supervision domain's records: org units, officers, subjects, devices, fences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any


class SupervisionLevel(StrEnum):
    """严管 strict, 普管 normal, 宽管 lenient."""

    STRICT = "strict"
    NORMAL = "normal"
    LENIENT = "lenient"


class SubjectCategory(StrEnum):
    """缓刑 probation, 假释 parole, 管制 control, 暂予监外执行 medical parole."""

    PROBATION = "probation"
    PAROLE = "parole"
    CONTROL = "control"
    MEDICAL_PAROLE = "medical_parole"


@dataclass(frozen=True, slots=True)
class OrgUnit:
    """A county bureau (县局) or a station (司法所)."""

    id: int
    code: str
    name: str
    parent_id: int | None
    timezone: str

    def to_json(self, parent_code: str | None = None) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "parent_code": parent_code,
            "timezone": self.timezone,
        }


@dataclass(frozen=True, slots=True)
class Officer:
    id: int
    username: str
    password_hash: str
    role: str
    org_unit_id: int
    active: bool


@dataclass(frozen=True, slots=True)
class Home:
    """The subject's home circle (WGS-84 centre, metres), used for curfew."""

    lon: float
    lat: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class Curfew:
    """Daily curfew window in the station's local time; may cross midnight."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Subject:
    """A person under community correction (社区矫正对象)."""

    id: int
    name: str
    org_unit_id: int
    supervision_level: SupervisionLevel
    category: SubjectCategory
    term_start: date
    term_end: date
    activity_area_id: int | None
    exclusion_zone_ids: tuple[int, ...]
    home: Home | None
    curfew: Curfew | None
    responsible_officer_id: int | None = None
    responsible_supervisor_id: int | None = None
    status: str = "active"
    created_at: datetime | None = None

    def to_json(self, org_code: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "org_unit": org_code,
            "supervision_level": self.supervision_level.value,
            "category": self.category.value,
            "term_start": self.term_start.isoformat(),
            "term_end": self.term_end.isoformat(),
            "activity_area_id": self.activity_area_id,
            "exclusion_zone_ids": list(self.exclusion_zone_ids),
            "home": (
                {"lat": self.home.lat, "lon": self.home.lon, "radius_m": self.home.radius_m}
                if self.home
                else None
            ),
            "curfew": (
                {
                    "start": self.curfew.start.strftime("%H:%M"),
                    "end": self.curfew.end.strftime("%H:%M"),
                }
                if self.curfew
                else None
            ),
            "responsible_officer_id": self.responsible_officer_id,
            "responsible_supervisor_id": self.responsible_supervisor_id,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class GeofenceRecord:
    """A stored fence. Polygonal fences point at a shared geometry row; circles carry their own
    centre (WGS-84) and radius (metres)."""

    id: int
    name: str
    kind: str
    org_unit_id: int
    geometry_id: int | None
    center_lon: float | None
    center_lat: float | None
    radius_m: float | None
    adcodes: tuple[str, ...] | None
    source_crs: str
    schedule: dict[str, Any] | None
