"""An in-memory unit of work for handler tests: the repositories of the service layer over
plain dicts, with what was audited, emitted and scheduled kept for the test to read.

It behaves as the PostgreSQL one does where handlers can tell: a unit of work sees its own
changes, a commit keeps them with the audits, timers and events collected (events join the
event log, timers the timer table, as their adapters would write them), and an exception
leaves no trace of any of it (each opening works on a copy of the committed state).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from correction_monitor.adapters.errors import AlreadyExists, NotFound
from correction_monitor.domain.access import Principal, Role
from correction_monitor.domain.alerts import (
    AlertChange,
    AlertOp,
    AlertOpen,
    AlertStatus,
    AlertType,
    AppliedChange,
    Disposition,
    Gravity,
)
from correction_monitor.domain.clock import Clock, ManualClock
from correction_monitor.domain.events import DomainEvent, StoredEvent
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.integrity import RuleAlert
from correction_monitor.domain.models import (
    AdminAreaRecord,
    Alert,
    AuditEntry,
    AuditRecord,
    Device,
    GeofenceRecord,
    NewFence,
    NewSubject,
    Officer,
    OrgUnit,
    SilentSubject,
    Subject,
    SubjectCategory,
    SubjectContact,
    SupervisionLevel,
)
from correction_monitor.domain.timers import DueTimer, Timer
from correction_monitor.policy import load_policy
from correction_monitor.service import devices
from correction_monitor.service.bootstrap import Services, bootstrap
from correction_monitor.service.unit_of_work import UnitOfWork
from geofences.geojson import AdminArea

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TimerRow:
    """A stored timer, as the ``timers`` table holds it."""

    id: int
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int = 0
    fired_at: datetime | None = None
    last_error: str | None = None


@dataclass
class FakeState:
    """Everything the fake repositories hold, by id (ids are drawn from one counter)."""

    org_units: dict[int, OrgUnit] = field(default_factory=dict)
    officers: dict[int, Officer] = field(default_factory=dict)
    tokens: dict[bytes, tuple[int, datetime]] = field(default_factory=dict)
    login_failures: list[tuple[str, datetime]] = field(default_factory=list)
    subjects: dict[int, Subject] = field(default_factory=dict)
    devices: dict[int, Device] = field(default_factory=dict)
    device_digests: dict[int, bytes] = field(default_factory=dict)
    geometries: dict[int, BaseGeometry] = field(default_factory=dict)
    admin_areas: dict[str, tuple[AdminArea, int, str]] = field(default_factory=dict)
    fences: dict[int, GeofenceRecord] = field(default_factory=dict)
    alerts: dict[int, Alert] = field(default_factory=dict)
    fixes: dict[int, list[TrackPoint]] = field(default_factory=dict)
    contacts: dict[int, SubjectContact] = field(default_factory=dict)
    audit_log: list[AuditRecord] = field(default_factory=list)
    timers: dict[tuple[str, str], TimerRow] = field(default_factory=dict)
    event_log: dict[int, StoredEvent] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)
    contact: dict[int, SilentSubject] = field(default_factory=dict)
    lost_since: dict[int, datetime] = field(default_factory=dict)
    device_seen: dict[int, datetime] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def copy(self) -> FakeState:
        # Values are frozen dataclasses, tuples and shapely geometries (immutable): copying
        # the containers copies the state. The id counter is shared, as a sequence is in
        # PostgreSQL.
        fields = {
            f.name: copy.copy(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "ids"
        }
        return FakeState(**fields, ids=self.ids)

    def next_id(self) -> int:
        return next(self.ids)

    # --- seeding, for tests ------------------------------------------------------------------

    def add_unit(
        self, code: str, parent: OrgUnit | None = None, timezone: str = "Asia/Shanghai"
    ) -> OrgUnit:
        unit = OrgUnit(
            self.next_id(), code, f"单位 {code}", parent.id if parent else None, timezone
        )
        self.org_units[unit.id] = unit
        return unit

    def add_officer(
        self,
        role: Role,
        unit: OrgUnit,
        *,
        username: str | None = None,
        password_hash: str = "not-a-hash",
        active: bool = True,
    ) -> Principal:
        """An officer of ``unit``; returns them as a caller, with their jurisdiction."""
        officer_id = self.next_id()
        name = username or f"{role.value}{officer_id}"
        self.officers[officer_id] = Officer(
            officer_id, name, password_hash, role.value, unit.id, active
        )
        scope: frozenset[int] | None
        if role is Role.ADMIN:
            scope = None
        elif role in (Role.COUNTY_ADMIN, Role.AUDITOR):
            scope = self.subtree(unit.id)
        else:
            scope = frozenset({unit.id})
        return Principal(officer_id, name, role, unit.id, scope)

    def subtree(self, unit_id: int) -> frozenset[int]:
        below = {u.id for u in self.org_units.values() if u.parent_id == unit_id}
        return frozenset({unit_id}).union(*(self.subtree(b) for b in below))

    def add_fence(
        self,
        unit: OrgUnit,
        kind: str = "activity_area",
        circle: tuple[float, float, float] = (
            116.3,
            39.9,
            5000.0,
        ),
    ) -> GeofenceRecord:
        fence = GeofenceRecord(
            self.next_id(), f"{kind} fence", kind, unit.id, None, *circle, None, "wgs84", None
        )
        self.fences[fence.id] = fence
        return fence

    def add_subject(self, unit: OrgUnit, name: str = "张三") -> Subject:
        subject = Subject(
            id=self.next_id(),
            name=name,
            org_unit_id=unit.id,
            supervision_level=SupervisionLevel.NORMAL,
            category=SubjectCategory.PROBATION,
            term_start=date(2026, 1, 1),
            term_end=date(2027, 1, 1),
            activity_area_id=None,
            exclusion_zone_ids=(),
            home=None,
            curfew=None,
        )
        self.subjects[subject.id] = subject
        return subject

    def add_alert(
        self,
        subject: Subject,
        status: AlertStatus = AlertStatus.OPEN,
        type_: AlertType = AlertType.LEFT_ACTIVITY_AREA,
    ) -> Alert:
        alert = Alert(
            id=self.next_id(),
            subject_id=subject.id,
            org_unit_id=subject.org_unit_id,
            type=type_,
            severity="high",
            status=status,
            fence_id=None,
            episode_key="area:1",
            started_at=T0,
            detected_at=T0,
            ended_at=None,
            evidence={},
        )
        self.alerts[alert.id] = alert
        return alert


class FakeOrgUnits:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def get(self, unit_id: int) -> OrgUnit:
        try:
            return self._state.org_units[unit_id]
        except KeyError:
            raise NotFound(f"org unit {unit_id}") from None

    async def get_by_code(self, code: str) -> OrgUnit:
        for unit in self._state.org_units.values():
            if unit.code == code:
                return unit
        raise NotFound(f"org unit {code!r}")

    async def add(self, code: str, name: str, parent_id: int | None, timezone: str) -> OrgUnit:
        if any(u.code == code for u in self._state.org_units.values()):
            raise AlreadyExists(f"org unit {code!r} exists already")
        unit = OrgUnit(self._state.next_id(), code, name, parent_id, timezone)
        self._state.org_units[unit.id] = unit
        return unit

    async def all(self) -> list[OrgUnit]:
        return sorted(self._state.org_units.values(), key=lambda u: u.id)

    async def lineage_ids(self, unit_id: int) -> frozenset[int]:
        found: set[int] = set()
        unit = self._state.org_units.get(unit_id)
        while unit is not None:
            found.add(unit.id)
            unit = self._state.org_units.get(unit.parent_id) if unit.parent_id else None
        return frozenset(found)

    async def codes_by_id(self, ids: Iterable[int]) -> dict[int, str]:
        return {i: self._state.org_units[i].code for i in ids if i in self._state.org_units}


class FakeOfficers:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def get(self, officer_id: int) -> Officer:
        try:
            return self._state.officers[officer_id]
        except KeyError:
            raise NotFound(f"officer {officer_id}") from None

    async def get_by_username(self, username: str) -> Officer:
        for officer in self._state.officers.values():
            if officer.username == username:
                return officer
        raise NotFound(f"officer {username!r}")

    async def add(
        self,
        username: str,
        password_hash: str,
        role: str,
        org_unit_id: int,
        display_name: str | None = None,
        phone: str | None = None,
    ) -> Officer:
        if any(o.username == username for o in self._state.officers.values()):
            raise AlreadyExists(f"officer {username!r} exists already")
        officer = Officer(
            self._state.next_id(),
            username,
            password_hash,
            role,
            org_unit_id,
            True,
            display_name,
            phone,
        )
        self._state.officers[officer.id] = officer
        return officer

    async def list_in(self, org_unit_ids: frozenset[int] | None) -> list[Officer]:
        return sorted(
            (
                o
                for o in self._state.officers.values()
                if org_unit_ids is None or o.org_unit_id in org_unit_ids
            ),
            key=lambda o: o.id,
        )

    async def set_password_hash(self, officer_id: int, password_hash: str) -> None:
        officer = self._state.officers[officer_id]
        self._state.officers[officer_id] = dataclasses.replace(officer, password_hash=password_hash)

    async def record_login_failure(self, username: str, at: datetime) -> None:
        self._state.login_failures.append((username, at))

    async def login_failures_since(
        self, username: str, since: datetime, limit: int
    ) -> list[datetime]:
        found = sorted(
            (at for name, at in self._state.login_failures if name == username and at > since),
            reverse=True,
        )
        return found[:limit]

    async def store_token(self, digest: bytes, officer_id: int, expires_at: datetime) -> None:
        self._state.tokens[digest] = (officer_id, expires_at)

    async def token_expires_at(self, digest: bytes) -> datetime | None:
        held = self._state.tokens.get(digest)
        return held[1] if held is not None else None

    async def revoke_token(self, digest: bytes) -> bool:
        return self._state.tokens.pop(digest, None) is not None


class FakeSubjects:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def get(self, subject_id: int) -> Subject:
        try:
            return self._state.subjects[subject_id]
        except KeyError:
            raise NotFound(f"subject {subject_id}") from None

    async def get_for_update(self, subject_id: int) -> Subject:
        return await self.get(subject_id)

    async def update_supervision(
        self,
        subject_id: int,
        *,
        supervision_level: SupervisionLevel,
        responsible_officer_id: int | None,
        responsible_supervisor_id: int | None,
    ) -> Subject:
        changed = dataclasses.replace(
            await self.get(subject_id),
            supervision_level=supervision_level,
            responsible_officer_id=responsible_officer_id,
            responsible_supervisor_id=responsible_supervisor_id,
        )
        self._state.subjects[subject_id] = changed
        return changed

    async def add(self, new: NewSubject) -> Subject:
        subject = Subject(
            id=self._state.next_id(),
            name=new.name,
            org_unit_id=new.org_unit_id,
            supervision_level=new.supervision_level,
            category=new.category,
            term_start=new.term_start,
            term_end=new.term_end,
            activity_area_id=new.activity_area_id,
            exclusion_zone_ids=tuple(sorted(set(new.exclusion_zone_ids))),
            home=new.home,
            curfew=new.curfew,
            responsible_officer_id=new.responsible_officer_id,
            responsible_supervisor_id=new.responsible_supervisor_id,
            created_at=T0,
        )
        self._state.subjects[subject.id] = subject
        return subject

    async def list_in(
        self, org_unit_ids: frozenset[int] | None, *, limit: int, offset: int
    ) -> list[Subject]:
        found = sorted(
            (
                s
                for s in self._state.subjects.values()
                if org_unit_ids is None or s.org_unit_id in org_unit_ids
            ),
            key=lambda s: s.id,
        )
        return found[offset : offset + limit]

    async def contact(self, subject_id: int) -> SubjectContact | None:
        return self._state.contacts.get(subject_id)


class FakeDevices:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def add(
        self, subject_id: int, digest: bytes, osmand_id: str, platform: str | None
    ) -> Device:
        taken = any(d.osmand_id == osmand_id for d in self._state.devices.values())
        if taken or digest in self._state.device_digests.values():
            raise AlreadyExists("device identifier collision; retry")
        device = Device(self._state.next_id(), subject_id, osmand_id, platform, T0)
        self._state.devices[device.id] = device
        self._state.device_digests[device.id] = digest
        return device

    async def list_for(self, subject_id: int) -> list[Device]:
        return sorted(
            (d for d in self._state.devices.values() if d.subject_id == subject_id),
            key=lambda d: d.id,
        )

    async def revoke(self, subject_id: int, device_id: int) -> Device:
        device = self._state.devices.get(device_id)
        if device is None or device.subject_id != subject_id or device.revoked_at is not None:
            raise NotFound(f"device {device_id}")
        revoked = dataclasses.replace(device, revoked_at=T0)
        self._state.devices[device_id] = revoked
        return revoked


class FakeIntegrity:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def lock_subject(self, subject_id: int) -> None:
        return None  # one unit of work at a time: nothing to serialise

    async def alerts_of_rule(self, subject_id: int, rule: str) -> list[RuleAlert]:
        return [
            RuleAlert(a.id, a.status == AlertStatus.RESOLVED, a.evidence)
            for a in sorted(self._state.alerts.values(), key=lambda a: a.id)
            if a.subject_id == subject_id
            and a.type == AlertType.DEVICE_INTEGRITY
            and a.evidence.get("rule") == rule
        ]

    async def set_evidence(self, alert_id: int, evidence: dict[str, Any]) -> None:
        alert = self._state.alerts[alert_id]
        self._state.alerts[alert_id] = dataclasses.replace(alert, evidence=evidence)

    async def devices_heard(self, subject_id: int) -> list[tuple[int, str | None, datetime | None]]:
        return [
            (d.id, d.platform, self._state.device_seen.get(d.id))
            for d in sorted(self._state.devices.values(), key=lambda d: d.id)
            if d.subject_id == subject_id and d.revoked_at is None
        ]


class FakeGeo:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def store_geometry(self, geometry: BaseGeometry) -> int:
        wkb = shapely.to_wkb(shapely.normalize(geometry))
        for geometry_id, stored in self._state.geometries.items():
            if shapely.to_wkb(shapely.normalize(stored)) == wkb:
                return geometry_id
        geometry_id = self._state.next_id()
        self._state.geometries[geometry_id] = geometry
        return geometry_id

    async def load_geometry(self, geometry_id: int) -> BaseGeometry:
        try:
            return self._state.geometries[geometry_id]
        except KeyError:
            raise NotFound(f"geometry {geometry_id}") from None

    async def upsert_admin_area(self, area: AdminArea, geometry_id: int, source_crs: str) -> None:
        self._state.admin_areas[area.adcode] = (area, geometry_id, source_crs)

    async def admin_areas(self) -> list[AdminAreaRecord]:
        return [
            AdminAreaRecord(a.adcode, a.name, a.parent_adcode, a.level, geometry_id)
            for a, geometry_id, _ in self._state.admin_areas.values()
        ]

    async def admin_area_shapes(self) -> dict[str, AdminArea]:
        return {code: area for code, (area, _, _) in self._state.admin_areas.items()}

    async def add_fence(self, new: NewFence) -> GeofenceRecord:
        lon, lat, radius = new.circle if new.circle is not None else (None, None, None)
        fence = GeofenceRecord(
            id=self._state.next_id(),
            name=new.name,
            kind=new.kind,
            org_unit_id=new.org_unit_id,
            geometry_id=new.geometry_id,
            center_lon=lon,
            center_lat=lat,
            radius_m=radius,
            adcodes=new.adcodes,
            source_crs=new.source_crs,
            schedule=new.schedule,
        )
        self._state.fences[fence.id] = fence
        return fence

    async def get_fence(self, fence_id: int) -> GeofenceRecord:
        try:
            return self._state.fences[fence_id]
        except KeyError:
            raise NotFound(f"geofence {fence_id}") from None

    async def get_fences(self, ids: Iterable[int]) -> list[GeofenceRecord]:
        return [self._state.fences[i] for i in ids if i in self._state.fences]

    async def list_fences(self, org_unit_ids: frozenset[int] | None) -> list[GeofenceRecord]:
        return sorted(
            (
                f
                for f in self._state.fences.values()
                if org_unit_ids is None or f.org_unit_id in org_unit_ids
            ),
            key=lambda f: f.id,
        )


class FakeAlerts:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def get(self, alert_id: int) -> Alert:
        try:
            return self._state.alerts[alert_id]
        except KeyError:
            raise NotFound(f"alert {alert_id}") from None

    async def apply(
        self, ops: Sequence[AlertOp], detected_at: datetime | None = None
    ) -> list[AppliedChange]:
        """As the SQL: an episode is raised once (by subject, type and episode key), and
        ended once."""
        changes: list[AppliedChange] = []
        for op in ops:
            found = next(
                (
                    a
                    for a in self._state.alerts.values()
                    if (a.subject_id, a.type, a.episode_key)
                    == (op.subject_id, op.type, op.episode_key)
                ),
                None,
            )
            if isinstance(op, AlertOpen):
                if found is not None:
                    continue
                alert = Alert(
                    id=self._state.next_id(),
                    subject_id=op.subject_id,
                    org_unit_id=op.org_unit_id,
                    type=op.type,
                    severity=op.severity,
                    status=AlertStatus.OPEN,
                    fence_id=op.fence_id,
                    episode_key=op.episode_key,
                    started_at=op.started_at,
                    detected_at=detected_at or op.started_at,
                    ended_at=None,
                    evidence=dict(op.evidence),
                )
                self._state.alerts[alert.id] = alert
                changes.append(AppliedChange(alert.id, AlertChange.OPENED, op))
            elif found is not None and found.ended_at is None:
                self._state.alerts[found.id] = dataclasses.replace(found, ended_at=op.ended_at)
                changes.append(AppliedChange(found.id, AlertChange.ENDED, op))
        return changes

    async def list_in(
        self,
        org_unit_ids: frozenset[int] | None,
        *,
        subject_id: int | None = None,
        type: AlertType | None = None,
        status: AlertStatus | None = None,
        limit: int,
    ) -> list[Alert]:
        found = [
            a
            for a in sorted(self._state.alerts.values(), key=lambda a: -a.id)
            if (org_unit_ids is None or a.org_unit_id in org_unit_ids)
            and (subject_id is None or a.subject_id == subject_id)
            and (type is None or a.type is type)
            and (status is None or a.status is status)
        ]
        return found[:limit]

    async def acknowledge(self, alert_id: int, officer_id: int, at: datetime | None = None) -> bool:
        alert = self._state.alerts[alert_id]
        if alert.status is not AlertStatus.OPEN:
            return False
        self._state.alerts[alert_id] = dataclasses.replace(
            alert,
            status=AlertStatus.ACKNOWLEDGED,
            acknowledged_at=at or T0,
            acknowledged_by=officer_id,
        )
        return True

    async def resolve(
        self,
        alert_id: int,
        officer_id: int,
        disposition: Disposition,
        note: str | None,
        gravity: Gravity = Gravity.MINOR,
        at: datetime | None = None,
    ) -> bool:
        alert = self._state.alerts[alert_id]
        if alert.status is AlertStatus.RESOLVED:
            return False
        self._state.alerts[alert_id] = dataclasses.replace(
            alert,
            status=AlertStatus.RESOLVED,
            resolved_at=at or T0,
            resolved_by=officer_id,
            disposition=disposition,
            note=note,
            gravity=gravity,
            acknowledged_at=alert.acknowledged_at or at or T0,
            acknowledged_by=alert.acknowledged_by or officer_id,
        )
        return True


class FakeFixes:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def track(
        self, subject_id: int, start: datetime, end: datetime, limit: int
    ) -> list[TrackPoint]:
        found = sorted(
            (p for p in self._state.fixes.get(subject_id, []) if start <= p.ts < end),
            key=lambda p: (p.ts, p.device_id),
        )
        return found[:limit]


class FakeAuditLog:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def _within(self, record: AuditRecord, scope: frozenset[int] | None) -> bool:
        if scope is None:
            return True
        entry = record.entry
        if entry.subject_id is not None:
            subject = self._state.subjects.get(entry.subject_id)
            return subject is not None and subject.org_unit_id in scope
        officer = self._state.officers.get(entry.officer_id or 0)
        return officer is not None and officer.role != "admin" and officer.org_unit_id in scope

    async def entries(
        self, *, subject_id: int | None, limit: int, scope: frozenset[int] | None
    ) -> list[AuditRecord]:
        found = [
            r
            for r in reversed(self._state.audit_log)
            if (subject_id is None or r.entry.subject_id == subject_id) and self._within(r, scope)
        ]
        return found[:limit]


class FakeContact:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def silent_since(self, before: datetime) -> list[SilentSubject]:
        return [
            c
            for sid, c in sorted(self._state.contact.items())
            if sid not in self._state.lost_since and c.last_contact < before
        ]

    async def mark_lost(self, subject_id: int, since: datetime) -> bool:
        if subject_id in self._state.lost_since:
            return False
        self._state.lost_since[subject_id] = since
        return True


class FakeTimers:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def take_due(self, now: datetime, limit: int, kinds: Sequence[str]) -> list[DueTimer]:
        due = sorted(
            (
                t
                for t in self._state.timers.values()
                if t.fired_at is None and t.due_at <= now and t.kind in kinds
            ),
            key=lambda t: (t.due_at, t.id),
        )
        return [DueTimer(t.id, t.kind, t.key, t.due_at, t.payload, t.attempts) for t in due[:limit]]

    def _replace(self, timer_id: int, **changes: Any) -> None:
        for name, row in self._state.timers.items():
            if row.id == timer_id:
                self._state.timers[name] = dataclasses.replace(row, **changes)

    async def mark_fired(self, timer_id: int, at: datetime) -> None:
        self._replace(timer_id, fired_at=at)

    async def mark_failed(self, timer_id: int, error: str, retry_at: datetime) -> None:
        for row in self._state.timers.values():
            if row.id == timer_id:
                self._replace(
                    timer_id, attempts=row.attempts + 1, last_error=error[:2000], due_at=retry_at
                )
                return

    async def cancel(self, kind: str, key: str) -> bool:
        row = self._state.timers.get((kind, key))
        if row is None or row.fired_at is not None:
            return False
        del self._state.timers[(kind, key)]
        return True


class FakeEventLog:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def take_cursor(self, consumer: str) -> int | None:
        return self._state.cursors.setdefault(consumer, 0)

    async def advance_cursor(self, consumer: str, position: int) -> None:
        self._state.cursors[consumer] = position

    async def read_after(
        self, after_id: int, *, names: Sequence[str] | None = None, limit: int = 500
    ) -> list[StoredEvent]:
        found = [
            e
            for i, e in sorted(self._state.event_log.items())
            if i > after_id and (not names or e.name in names)
        ]
        return found[:limit]

    async def last_id(self) -> int:
        return max(self._state.event_log, default=0)


class FakeUnitOfWork(UnitOfWork):
    """The unit of work over :class:`FakeState`; ``state`` is what has been committed, and
    ``audits``, ``emitted`` and ``scheduled`` what the committed work recorded, in order."""

    def __init__(self, state: FakeState | None = None, clock: Clock | None = None) -> None:
        super().__init__()
        self.state = state or FakeState()
        self.clock = clock or ManualClock(T0)
        self._working: FakeState | None = None
        self.commits = 0
        self.rollbacks = 0
        self.audits: list[AuditEntry] = []
        self.emitted: list[DomainEvent] = []
        self.scheduled: list[Timer] = []

    async def _begin(self) -> None:
        if self._working is not None:
            raise RuntimeError("this unit of work is open already")
        self._working = self.state.copy()
        self.org_units = FakeOrgUnits(self._working)
        self.officers = FakeOfficers(self._working)
        self.subjects = FakeSubjects(self._working)
        self.devices = FakeDevices(self._working)
        self.geo = FakeGeo(self._working)
        self.alerts = FakeAlerts(self._working)
        self.fixes = FakeFixes(self._working)
        self.audit_log = FakeAuditLog(self._working)
        self.timers = FakeTimers(self._working)
        self.contact = FakeContact(self._working)
        self.events = FakeEventLog(self._working)
        self.integrity = FakeIntegrity(self._working)

    async def _commit(
        self,
        audits: Sequence[AuditEntry],
        timers: Sequence[Timer],
        events: Sequence[DomainEvent],
    ) -> None:
        state, self._working = self._working, None
        assert state is not None
        for entry in audits:
            state.audit_log.append(AuditRecord(state.next_id(), self.clock.now(), entry))
        for timer in timers:
            # As the SQL upsert: setting (kind, key) again moves the deadline and rearms it.
            previous = state.timers.get((timer.kind, timer.key))
            timer_id = previous.id if previous else state.next_id()
            state.timers[(timer.kind, timer.key)] = TimerRow(
                timer_id, timer.kind, timer.key, timer.due_at, timer.payload
            )
        for event in events:
            position = max(state.event_log, default=0) + 1
            state.event_log[position] = StoredEvent(
                position,
                event.name,
                self.clock.now(),
                event.org_unit_id,
                event.subject_id,
                event.alert_id,
                event.data,
            )
        self.state = state
        self.audits.extend(audits)
        self.scheduled.extend(timers)
        self.emitted.extend(events)
        self.commits += 1

    async def _rollback(
        self,
        exc_type: type[BaseException],
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._working = None
        self.rollbacks += 1


def fake_services(
    uow: FakeUnitOfWork, *, clock: Clock | None = None, **dependencies: Any
) -> Services:
    """The services of the composition root, every command run on ``uow`` (and on its
    clock unless another is given)."""
    return bootstrap(
        lambda: uow,
        policy=load_policy(),
        clock=clock or uow.clock,
        **dependencies,
    )


def fixed_credentials(*drawn: tuple[str, str]) -> devices.Credentials:
    """Device credentials drawn from ``drawn`` in turn (to provoke collisions)."""
    queue = list(drawn)
    return lambda: queue.pop(0)
