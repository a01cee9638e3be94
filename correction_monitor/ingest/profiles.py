"""Each subject's compiled rules: prepared fences, schedules, approved leaves and policy
numbers.

Profiles are built from PostgreSQL once and cached per process; prepared polygons are shared
by geometry id, so 100 k subjects of one county hold one prepared county polygon.

Approved leaves (外出) come with the profile, their destinations prepared like any fence, so
evaluating a fix never queries for them. A change to what a profile holds (a leave
approved, a level changed by an officer or by an approved proposal) takes effect in the
process that made it at once (its route calls :meth:`ProfileCache.forget`); every process
also reads the event log's ``leave.approved`` and ``subject.changed`` events at most every
``RECHECK_S`` seconds, in the commit's transaction, and drops the profiles of the subjects
they name, so other processes follow within a few seconds instead of the profile's TTL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from correction_monitor.adapters import geo, outbox, subjects
from correction_monitor.adapters import leave as leave_store
from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.events import EventName
from correction_monitor.domain.leave import ApprovedLeave
from correction_monitor.domain.models import Subject
from correction_monitor.policy import LevelPolicy, Policy
from geofences.classify import PreparedArea
from geofences.model import Circle
from geofences.schedule import Schedule, Window

_ALL_DAYS = frozenset(range(1, 8))

TIMEZONE_OF_UNIT = "SELECT timezone FROM org_units WHERE id = $1"

# How often a process looks for profiles changed elsewhere (seconds).
RECHECK_S = 2.0
# The events that change what a subject's profile holds.
PROFILE_EVENTS = (EventName.LEAVE_APPROVED, EventName.SUBJECT_CHANGED)


@dataclass(frozen=True, slots=True)
class ZoneRule:
    """An exclusion zone (禁止令 place) and when it applies (None = always)."""

    fence_id: int
    area: PreparedArea
    schedule: Schedule | None


@dataclass(frozen=True, slots=True)
class LeaveArea:
    """An approved leave: its closed span in epoch seconds and its prepared destination."""

    leave_id: int
    start_ts: float
    end_ts: float
    area: PreparedArea


@dataclass(frozen=True, slots=True)
class SubjectProfile:
    """Everything evaluation needs to know about one subject."""

    subject_id: int
    org_unit_id: int
    level: str
    level_policy: LevelPolicy
    activity_fence_id: int | None
    activity_area: PreparedArea | None
    zones: tuple[ZoneRule, ...]
    home: PreparedArea | None
    curfew: Schedule | None
    timezone: str
    # Faster than this (m/s) between consecutive fixes is implausible: spike suspicion.
    max_speed_mps: float
    # Approved leaves (the newest ones), by start; empty for most subjects.
    leaves: tuple[LeaveArea, ...] = ()

    def policy_snapshot(self) -> dict[str, Any]:
        """The policy values an alert was decided with, kept in its evidence."""
        return {
            "supervision_level": self.level,
            "confirm_s": self.level_policy.confirm_s,
            "lost_contact_after_s": self.level_policy.lost_contact_after_s,
        }


class ProfileCache:
    """Compiled profiles per subject, refreshed after ``ttl_s`` seconds.

    A refresh re-reads only the subject row: fences and org units are never edited in place
    (a changed fence is a new fence), so their prepared areas, schedules and time zones are
    kept for the life of the process, and a refresh costs one query, not one per fence.
    """

    def __init__(self, policy: Policy, ttl_s: float = 60.0) -> None:
        self.policy = policy
        self.ttl_s = ttl_s
        self._profiles: dict[int, tuple[float, SubjectProfile]] = {}
        self._areas: dict[tuple[str, Any], PreparedArea] = {}
        self._fences: dict[int, tuple[PreparedArea, Any]] = {}
        self._timezones: dict[int, str] = {}
        # The event log position up to which profile changes have been applied, and when.
        self._mark: int | None = None
        self._checked = 0.0

    def forget(self, subject_id: int) -> None:
        """Drop the subject's profile: its next fixes are evaluated with a fresh one (an
        approved leave or a new level, say)."""
        self._profiles.pop(subject_id, None)

    async def _recheck(self, conn: asyncpg.Connection, now: float) -> None:
        """Forget the profiles of subjects changed since the last look (in any process:
        ``PROFILE_EVENTS``), at most every ``RECHECK_S``. The event log's id order is its
        commit order, so no change committed after the mark is missed."""
        if now - self._checked < RECHECK_S:
            return
        self._checked = now
        if self._mark is None:
            # Profiles built from here on read the subjects themselves.
            self._mark = await outbox.last_id(conn)
            return
        while True:
            events = await outbox.read_after(conn, self._mark, names=PROFILE_EVENTS, limit=500)
            for event in events:
                if event.subject_id is not None:
                    self.forget(event.subject_id)
                self._mark = event.id
            if len(events) < 500:
                return

    async def get_many(
        self, conn: asyncpg.Connection, subject_ids: list[int]
    ) -> dict[int, SubjectProfile]:
        now = time.monotonic()
        await self._recheck(conn, now)
        out: dict[int, SubjectProfile] = {}
        stale = []
        for subject_id in subject_ids:
            cached = self._profiles.get(subject_id)
            if cached is None or now - cached[0] > self.ttl_s:
                stale.append(subject_id)
            else:
                out[subject_id] = cached[1]
        if stale:
            # One query for all the group's stale subjects, not one per subject.
            rows = await subjects.get_many(conn, stale)
            leaves = await leave_store.approved_of_subjects(conn, stale)
            for subject_id in stale:
                if subject_id not in rows:
                    raise NotFound(f"subject {subject_id}")
                profile = await self._build(conn, rows[subject_id], leaves.get(subject_id, []))
                self._profiles[subject_id] = (now, profile)
                out[subject_id] = profile
        return out

    async def _polygon(self, conn: asyncpg.Connection, geometry_id: int) -> PreparedArea:
        key = ("geometry", geometry_id)
        area = self._areas.get(key)
        if area is None:
            geometry = await geo.load_geometry(conn, geometry_id)
            area = PreparedArea(geometry)
            self._areas[key] = area
        return area

    def _circle(self, lon: float, lat: float, radius_m: float) -> PreparedArea:
        key = ("circle", (lon, lat, radius_m))
        area = self._areas.get(key)
        if area is None:
            area = PreparedArea(Circle(lon, lat, radius_m))
            self._areas[key] = area
        return area

    async def _fence_area(
        self, conn: asyncpg.Connection, fence_id: int
    ) -> tuple[PreparedArea, Any]:
        cached = self._fences.get(fence_id)
        if cached is not None:
            return cached
        fence = await geo.get_fence(conn, fence_id)
        if fence.geometry_id is not None:
            area = await self._polygon(conn, fence.geometry_id)
        else:
            assert fence.center_lon is not None
            assert fence.center_lat is not None
            assert fence.radius_m is not None
            area = self._circle(fence.center_lon, fence.center_lat, fence.radius_m)
        self._fences[fence_id] = (area, fence.schedule)
        return area, fence.schedule

    async def _timezone(self, conn: asyncpg.Connection, org_unit_id: int) -> str:
        timezone = self._timezones.get(org_unit_id)
        if timezone is None:
            timezone = await conn.fetchval(TIMEZONE_OF_UNIT, org_unit_id)
            assert timezone is not None
            self._timezones[org_unit_id] = timezone
        return timezone

    async def _leave_areas(
        self, conn: asyncpg.Connection, leaves: list[ApprovedLeave]
    ) -> tuple[LeaveArea, ...]:
        areas = []
        for leave in leaves:
            area, _ = await self._fence_area(conn, leave.destination_fence_id)
            areas.append(
                LeaveArea(
                    leave.leave_id, leave.starts_at.timestamp(), leave.ends_at.timestamp(), area
                )
            )
        return tuple(areas)

    async def _build(
        self, conn: asyncpg.Connection, subject: Subject, leaves: list[ApprovedLeave]
    ) -> SubjectProfile:
        timezone = await self._timezone(conn, subject.org_unit_id)
        activity = None
        if subject.activity_area_id is not None:
            activity, _ = await self._fence_area(conn, subject.activity_area_id)
        zones = []
        for fence_id in subject.exclusion_zone_ids:
            area, schedule = await self._fence_area(conn, fence_id)
            zones.append(
                ZoneRule(
                    fence_id,
                    area,
                    Schedule.from_json(schedule, timezone) if schedule else None,
                )
            )
        home = curfew = None
        if subject.home is not None:
            home = self._circle(subject.home.lon, subject.home.lat, subject.home.radius_m)
            if subject.curfew is not None:
                curfew = Schedule(
                    (Window(_ALL_DAYS, subject.curfew.start, subject.curfew.end),), timezone
                )
        return SubjectProfile(
            subject_id=subject.id,
            org_unit_id=subject.org_unit_id,
            level=subject.supervision_level.value,
            level_policy=self.policy.level(subject.supervision_level),
            activity_fence_id=subject.activity_area_id,
            activity_area=activity,
            zones=tuple(zones),
            home=home,
            curfew=curfew,
            timezone=timezone,
            max_speed_mps=self.policy.ingest.max_speed_mps,
            leaves=await self._leave_areas(conn, leaves) if leaves else (),
        )
