"""The supervision domain's records: org units, officers, subjects, devices, fences, alerts
and audit entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

from correction_monitor.domain.alerts import AlertStatus, AlertType, Disposition, Gravity
from correction_monitor.domain.timeutil import iso


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
    display_name: str | None = None
    phone: str | None = None


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
class NewSubject:
    """A subject about to be registered: a :class:`Subject` before it has an id.

    ``home_crs`` records the system the home was given in (the home itself is WGS-84).
    """

    name: str
    org_unit_id: int
    supervision_level: SupervisionLevel
    category: SubjectCategory
    term_start: date
    term_end: date
    activity_area_id: int | None
    exclusion_zone_ids: tuple[int, ...]
    home: Home | None
    home_crs: str | None
    curfew: Curfew | None
    responsible_officer_id: int | None
    responsible_supervisor_id: int | None


@dataclass(frozen=True, slots=True)
class Device:
    """A phone enrolled for a subject. Its bearer token is kept only as a digest and never
    appears here; ``osmand_id`` is what Traccar Client sends as its identifier."""

    id: int
    subject_id: int
    osmand_id: str
    platform: str | None
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AdminAreaRecord:
    """An imported administrative area (行政区划), without its geometry."""

    adcode: str
    name: str | None
    parent_adcode: str | None
    level: str | None
    geometry_id: int


@dataclass(frozen=True, slots=True)
class NewFence:
    """A fence about to be stored. A polygonal fence names its shared geometry; a circle
    carries ``circle`` = (lon, lat) WGS-84 and radius in metres."""

    name: str
    kind: str
    org_unit_id: int
    geometry_id: int | None
    circle: tuple[float, float, float] | None
    adcodes: tuple[str, ...] | None
    source_crs: str
    schedule: dict[str, Any] | None
    created_by: int | None


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


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as officers handle it: the episode it describes and where the case is.

    Times are aware UTC datetimes; ``evidence`` is the JSON stored with it (positions,
    distances, the policy that applied).
    """

    id: int
    subject_id: int
    org_unit_id: int
    type: AlertType
    severity: str
    status: AlertStatus
    fence_id: int | None
    episode_key: str
    started_at: datetime
    detected_at: datetime
    ended_at: datetime | None
    evidence: dict[str, Any]
    acknowledged_at: datetime | None = None
    acknowledged_by: int | None = None
    resolved_at: datetime | None = None
    resolved_by: int | None = None
    disposition: Disposition | None = None
    note: str | None = None
    retracted_at: datetime | None = None
    gravity: Gravity | None = None
    incident_id: int | None = None
    # Self-resolution: until when the subject is messaged first; whether the episode ended
    # within that grace (never reaching officers); when it reached officers.
    self_resolution_until: datetime | None = None
    self_resolved: bool = False
    released_at: datetime | None = None
    reopened_at: datetime | None = None
    reopened_by: int | None = None
    reopen_count: int = 0

    def to_json(self) -> dict[str, Any]:
        """The Alert of CONTRACT.md, with the lifecycle's fields beyond it."""
        return {
            "id": self.id,
            "subject_id": self.subject_id,
            "type": self.type.value,
            "severity": self.severity,
            "status": self.status.value,
            "started_at": iso(self.started_at),
            "detected_at": iso(self.detected_at),
            "ended_at": iso(self.ended_at),
            "fence_id": self.fence_id,
            "evidence": self.evidence,
            "acknowledged_at": iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "resolved_at": iso(self.resolved_at),
            "resolved_by": self.resolved_by,
            "disposition": self.disposition.value if self.disposition else None,
            "note": self.note,
            "retracted_at": iso(self.retracted_at),
            "gravity": self.gravity.value if self.gravity else None,
            "incident_id": self.incident_id,
            "self_resolution_until": iso(self.self_resolution_until),
            "self_resolved": self.self_resolved,
            "released_at": iso(self.released_at),
            "reopened_at": iso(self.reopened_at),
            "reopen_count": self.reopen_count,
        }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the append-only audit log (RULES.md §4): who did or read what, about
    which subject, for which purpose, in which request."""

    officer_id: int | None
    action: str
    subject_id: int | None = None
    purpose: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit entry as the log keeps it: its position ``id`` and its time ``at`` (UTC)."""

    id: int
    at: datetime
    entry: AuditEntry


@dataclass(frozen=True, slots=True)
class SubjectContact:
    """How a subject's device has been heard from, as evaluation last left it.

    ``reference`` is the last evaluated fix (epoch seconds, longitude, latitude, accuracy in
    metres; None before the first); ``last_fix_at`` the newest stored fix's time,
    ``last_contact_at`` when accepted fixes last arrived, ``lost_contact_since`` when the
    present silence became lost contact (None while in contact) and
    ``lost_contact_total_s`` the seconds of lost contact so far (脱离监管 time).
    """

    reference: tuple[float, float, float, float] | None
    last_fix_at: datetime | None
    last_contact_at: datetime | None
    lost_contact_since: datetime | None
    lost_contact_total_s: float


@dataclass(frozen=True, slots=True)
class SilentSubject:
    """A subject not heard from since ``last_contact`` (UTC): its last accepted fix or, never
    heard from, its device's enrolment; ``lost_total_s`` is its 脱离监管 clock so far
    (seconds)."""

    subject_id: int
    org_unit_id: int
    supervision_level: str
    last_contact: datetime
    lost_total_s: float
