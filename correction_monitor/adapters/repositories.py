"""The repositories of the unit of work, on one PostgreSQL connection.

Each class binds the connection (and with it the transaction) the unit of work holds and
delegates to the module that keeps the SQL (``subjects``, ``geo``, ...), so those modules stay
usable on their own by ingestion and the jobs. They implement the protocols of
``service/repositories.py`` structurally; nothing here imports the service layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import asyncpg
from shapely.geometry.base import BaseGeometry

from correction_monitor.adapters import (
    alerts,
    audit,
    fixes,
    geo,
    messages,
    officers,
    org_units,
    subjects,
)
from correction_monitor.adapters import checkins as checkin_store
from correction_monitor.adapters.leave import approved_leaves
from correction_monitor.domain.alerts import (
    AlertOp,
    AlertStatus,
    AlertType,
    AppliedChange,
    Disposition,
    Gravity,
)
from correction_monitor.domain.checkins import (
    AnswerTarget,
    Checkin,
    CheckinKind,
    CheckinStatus,
    Draw,
    NewCheckin,
    StoredSchedule,
)
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.leave import ApprovedLeave
from correction_monitor.domain.messages import NewMessage, SubjectMessage
from correction_monitor.domain.models import (
    AdminAreaRecord,
    Alert,
    AuditRecord,
    Device,
    GeofenceRecord,
    NewFence,
    NewSubject,
    Officer,
    OrgUnit,
    Subject,
    SubjectContact,
    SupervisionLevel,
)
from geofences.geojson import AdminArea


class PostgresOrgUnits:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, unit_id: int) -> OrgUnit:
        return await org_units.get_by_id(self._conn, unit_id)

    async def get_by_code(self, code: str) -> OrgUnit:
        return await org_units.get_by_code(self._conn, code)

    async def add(self, code: str, name: str, parent_id: int | None, timezone: str) -> OrgUnit:
        return await org_units.create(self._conn, code, name, parent_id, timezone)

    async def all(self) -> list[OrgUnit]:
        return await org_units.all_units(self._conn)

    async def lineage_ids(self, unit_id: int) -> frozenset[int]:
        return await org_units.lineage_ids(self._conn, unit_id)

    async def codes_by_id(self, ids: Iterable[int]) -> dict[int, str]:
        return await org_units.codes_by_id(self._conn, list(set(ids)))


class PostgresOfficers:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, officer_id: int) -> Officer:
        return await officers.get_by_id(self._conn, officer_id)

    async def get_by_username(self, username: str) -> Officer:
        return await officers.get_by_username(self._conn, username)

    async def add(
        self,
        username: str,
        password_hash: str,
        role: str,
        org_unit_id: int,
        display_name: str | None = None,
        phone: str | None = None,
    ) -> Officer:
        return await officers.create(
            self._conn, username, password_hash, role, org_unit_id, display_name, phone
        )

    async def list_in(self, org_unit_ids: frozenset[int] | None) -> list[Officer]:
        return await officers.list_in(self._conn, org_unit_ids)

    async def set_password_hash(self, officer_id: int, password_hash: str) -> None:
        await officers.set_password_hash(self._conn, officer_id, password_hash)

    async def record_login_failure(self, username: str, at: datetime) -> None:
        await officers.record_login_failure(self._conn, username, at)

    async def login_failures_since(
        self, username: str, since: datetime, limit: int
    ) -> list[datetime]:
        return await officers.login_failures_since(self._conn, username, since, limit)

    async def store_token(self, digest: bytes, officer_id: int, expires_at: datetime) -> None:
        await officers.store_token(self._conn, digest, officer_id, expires_at)

    async def token_expires_at(self, digest: bytes) -> datetime | None:
        return await officers.token_expires_at(self._conn, digest)

    async def revoke_token(self, digest: bytes) -> bool:
        return await officers.revoke_token(self._conn, digest)


class PostgresSubjects:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, subject_id: int) -> Subject:
        return await subjects.get(self._conn, subject_id)

    async def get_for_update(self, subject_id: int) -> Subject:
        return await subjects.get(self._conn, subject_id, for_update=True)

    async def update_supervision(
        self,
        subject_id: int,
        *,
        supervision_level: SupervisionLevel,
        responsible_officer_id: int | None,
        responsible_supervisor_id: int | None,
    ) -> Subject:
        return await subjects.update_supervision(
            self._conn,
            subject_id,
            supervision_level=supervision_level,
            responsible_officer_id=responsible_officer_id,
            responsible_supervisor_id=responsible_supervisor_id,
        )

    async def add(self, new: NewSubject) -> Subject:
        return await subjects.create(self._conn, new)

    async def list_in(
        self, org_unit_ids: frozenset[int] | None, *, limit: int, offset: int
    ) -> list[Subject]:
        return await subjects.list_in(self._conn, org_unit_ids, limit=limit, offset=offset)

    async def contact(self, subject_id: int) -> SubjectContact | None:
        return await subjects.contact(self._conn, subject_id)


class PostgresDevices:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(
        self, subject_id: int, digest: bytes, osmand_id: str, platform: str | None
    ) -> Device:
        return await subjects.enrol_device(self._conn, subject_id, digest, osmand_id, platform)

    async def list_for(self, subject_id: int) -> list[Device]:
        return await subjects.list_devices(self._conn, subject_id)

    async def revoke(self, subject_id: int, device_id: int) -> Device:
        return await subjects.revoke_device(self._conn, subject_id, device_id)


class PostgresGeo:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def store_geometry(self, geometry: BaseGeometry) -> int:
        return await geo.store_geometry(self._conn, geometry)

    async def load_geometry(self, geometry_id: int) -> BaseGeometry:
        return await geo.load_geometry(self._conn, geometry_id)

    async def upsert_admin_area(self, area: AdminArea, geometry_id: int, source_crs: str) -> None:
        await geo.upsert_admin_area(
            self._conn,
            adcode=area.adcode,
            name=area.name,
            parent_adcode=area.parent_adcode,
            level=area.level,
            geometry_id=geometry_id,
            source_crs=source_crs,
        )

    async def admin_areas(self) -> list[AdminAreaRecord]:
        return await geo.admin_areas(self._conn)

    async def admin_area_shapes(self) -> dict[str, AdminArea]:
        return await geo.admin_area_shapes(self._conn)

    async def add_fence(self, new: NewFence) -> GeofenceRecord:
        return await geo.create_fence(self._conn, new)

    async def get_fence(self, fence_id: int) -> GeofenceRecord:
        return await geo.get_fence(self._conn, fence_id)

    async def get_fences(self, ids: Iterable[int]) -> list[GeofenceRecord]:
        return await geo.get_fences(self._conn, ids)

    async def list_fences(self, org_unit_ids: frozenset[int] | None) -> list[GeofenceRecord]:
        return await geo.list_fences(self._conn, org_unit_ids)


def _alert(row: asyncpg.Record) -> Alert:
    return Alert(
        id=row["id"],
        subject_id=row["subject_id"],
        org_unit_id=row["org_unit_id"],
        type=AlertType(row["type"]),
        severity=row["severity"],
        status=AlertStatus(row["status"]),
        fence_id=row["fence_id"],
        episode_key=row["episode_key"],
        started_at=row["started_at"],
        detected_at=row["detected_at"],
        ended_at=row["ended_at"],
        evidence=row["evidence"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        disposition=Disposition(row["disposition"]) if row["disposition"] else None,
        note=row["note"],
        retracted_at=row["retracted_at"],
        gravity=Gravity(row["gravity"]) if row["gravity"] else None,
        incident_id=row["incident_id"],
        self_resolution_until=row["self_resolution_until"],
        self_resolved=row["self_resolved"],
        released_at=row["released_at"],
        reopened_at=row["reopened_at"],
        reopened_by=row["reopened_by"],
        reopen_count=row["reopen_count"],
    )


class PostgresAlerts:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, alert_id: int) -> Alert:
        return _alert(await alerts.get(self._conn, alert_id))

    async def apply(
        self, ops: Sequence[AlertOp], detected_at: datetime | None = None
    ) -> list[AppliedChange]:
        return await alerts.apply(self._conn, ops, detected_at)

    async def list_in(
        self,
        org_unit_ids: frozenset[int] | None,
        *,
        subject_id: int | None = None,
        type: AlertType | None = None,
        status: AlertStatus | None = None,
        limit: int,
    ) -> list[Alert]:
        rows = await alerts.list_alerts(
            self._conn,
            org_unit_ids,
            subject_id=subject_id,
            type_=type.value if type is not None else None,
            status=status.value if status is not None else None,
            limit=limit,
        )
        return [_alert(row) for row in rows]

    async def acknowledge(self, alert_id: int, officer_id: int, at: datetime | None = None) -> bool:
        return await alerts.acknowledge(self._conn, alert_id, officer_id, at)

    async def resolve(
        self,
        alert_id: int,
        officer_id: int,
        disposition: Disposition,
        note: str | None,
        gravity: Gravity = Gravity.MINOR,
        at: datetime | None = None,
    ) -> bool:
        return await alerts.resolve(
            self._conn, alert_id, officer_id, disposition.value, note, gravity.value, at
        )


class PostgresFixes:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def track(
        self, subject_id: int, start: datetime, end: datetime, limit: int
    ) -> list[TrackPoint]:
        return await fixes.track(self._conn, subject_id, start, end, limit)


class PostgresAuditLog:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def entries(
        self, *, subject_id: int | None, limit: int, scope: frozenset[int] | None
    ) -> list[AuditRecord]:
        return await audit.entries(self._conn, subject_id=subject_id, limit=limit, scope=scope)


class PostgresMessages:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, new: Sequence[NewMessage], at: datetime) -> list[SubjectMessage]:
        return await messages.add(self._conn, new, at)

    async def since(self, subject_id: int, after_id: int, limit: int) -> list[SubjectMessage]:
        return await messages.since(self._conn, subject_id, after_id, limit)

    async def mark_read(self, subject_id: int, message_id: int, at: datetime) -> datetime | None:
        return await messages.mark_read(self._conn, subject_id, message_id, at)


class PostgresCheckins:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def lock_layout(self, subject_id: int) -> None:
        await checkin_store.lock_layout(self._conn, subject_id)

    async def laid_until(self, subject_id: int) -> datetime | None:
        return await checkin_store.laid_until(self._conn, subject_id)

    async def set_laid_until(self, subject_id: int, until: datetime, at: datetime) -> None:
        await checkin_store.set_laid_until(self._conn, subject_id, until, at)

    async def subjects_behind(self, before: datetime, today: date, limit: int) -> list[int]:
        return await checkin_store.subjects_behind(self._conn, before, today, limit)

    async def schedule(self, subject_id: int) -> StoredSchedule | None:
        return await checkin_store.schedule(self._conn, subject_id)

    async def set_schedule(
        self, subject_id: int, windows: list[dict[str, Any]], officer_id: int, at: datetime
    ) -> None:
        await checkin_store.set_schedule(self._conn, subject_id, windows, officer_id, at)

    async def clear_schedule(self, subject_id: int) -> bool:
        return await checkin_store.clear_schedule(self._conn, subject_id)

    async def add(self, new: Sequence[NewCheckin], at: datetime) -> list[Checkin]:
        return await checkin_store.insert(self._conn, new, at)

    async def pending_after(
        self, subject_id: int, kind: CheckinKind, after: datetime
    ) -> list[Checkin]:
        return await checkin_store.pending_after(self._conn, subject_id, kind, after)

    async def cancel(self, checkin_ids: Sequence[int]) -> None:
        await checkin_store.cancel(self._conn, checkin_ids)

    async def cancel_stale_challenges(
        self, subject_id: int, after: datetime, keep_period: str | None
    ) -> int:
        return await checkin_store.cancel_stale_challenges(
            self._conn, subject_id, after, keep_period
        )

    async def list_for(
        self,
        subject_id: int,
        start: datetime,
        end: datetime,
        *,
        challenges_opened_by: datetime | None,
        limit: int,
    ) -> list[Checkin]:
        return await checkin_store.list_for(
            self._conn,
            subject_id,
            start,
            end,
            challenges_opened_by=challenges_opened_by,
            limit=limit,
        )

    async def get(self, checkin_id: int, *, for_update: bool = False) -> Checkin | None:
        return await checkin_store.get(self._conn, checkin_id, for_update=for_update)

    async def answer_target(self, checkin_id: int) -> AnswerTarget | None:
        return await checkin_store.answer_target(self._conn, checkin_id)

    async def answer(
        self,
        checkin_id: int,
        *,
        status: CheckinStatus,
        reasons: Sequence[str],
        answered_at: datetime,
        answer: dict[str, Any],
        photo_sha256: str | None,
        device_id: int,
    ) -> Checkin | None:
        return await checkin_store.answer(
            self._conn,
            checkin_id,
            status=status,
            reasons=reasons,
            answered_at=answered_at,
            answer=answer,
            photo_sha256=photo_sha256,
            device_id=device_id,
        )

    async def review(
        self,
        checkin_id: int,
        *,
        status: CheckinStatus,
        officer_id: int,
        at: datetime,
        note: str | None,
    ) -> Checkin | None:
        return await checkin_store.review(
            self._conn, checkin_id, status=status, officer_id=officer_id, at=at, note=note
        )

    async def photo_used_by(
        self, subject_id: int, photo_sha256: str, other_than: int
    ) -> int | None:
        return await checkin_store.photo_used_by(self._conn, subject_id, photo_sha256, other_than)

    async def draw(self, subject_id: int, period: str, period_start: datetime) -> Draw | None:
        return await checkin_store.draw(self._conn, subject_id, period, period_start)

    async def add_draw(
        self,
        *,
        subject_id: int,
        period: str,
        period_start: datetime,
        period_end: datetime,
        seed: str,
        algorithm: str,
        inputs: dict[str, Any],
        times: list[str],
        at: datetime,
    ) -> Draw | None:
        return await checkin_store.add_draw(
            self._conn,
            subject_id=subject_id,
            period=period,
            period_start=period_start,
            period_end=period_end,
            seed=seed,
            algorithm=algorithm,
            inputs=inputs,
            times=times,
            at=at,
        )

    async def draws(self, subject_id: int, limit: int) -> list[Draw]:
        return await checkin_store.draws(self._conn, subject_id, limit)

    async def approved_leaves(
        self, subject_id: int, start: datetime, end: datetime
    ) -> list[ApprovedLeave]:
        return await approved_leaves(self._conn, subject_id, start, end)
