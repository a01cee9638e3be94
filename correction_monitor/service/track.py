"""A subject's location history (轨迹): every read of it, and every export, is audited with
its purpose (RULES.md §4), in the transaction of the read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from correction_monitor.domain.access import Principal
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.fixes import TrackPoint
from correction_monitor.domain.timeutil import iso
from correction_monitor.service.command import Command
from correction_monitor.service.errors import InvalidInput
from correction_monitor.service.jurisdiction import visible_subject
from correction_monitor.service.unit_of_work import UnitOfWork

MAX_TRACK_SPAN = timedelta(days=31)
DEFAULT_SPAN = timedelta(days=1)
MAX_TRACK_FIXES = 100_000
_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Track:
    """The fixes of ``[start, end)`` (UTC), time-ordered; ``truncated`` when the window
    holds more than one read returns (the first ``MAX_TRACK_FIXES``)."""

    subject_id: int
    start: datetime
    end: datetime
    points: list[TrackPoint]
    truncated: bool


@dataclass(frozen=True, slots=True)
class ReadTrack(Command[Track]):
    """A subject's track between ``start`` and ``end`` (aware datetimes): ``end`` is now
    unless given, ``start`` a day before ``end``; the window holds at most 31 days.
    ``export`` marks a download (audited as ``track.export`` rather than ``track.read``)."""

    actor: Principal
    subject_id: int
    start: datetime | None = None
    end: datetime | None = None
    export: bool = False
    purpose: str | None = None
    request_id: str | None = None


async def read_track(command: ReadTrack, uow: UnitOfWork, *, clock: Clock) -> Track:
    end = command.end if command.end is not None else clock.now()
    # The default span would step before year 1 for an end within a day of it.
    start = command.start
    if start is None:
        start = max(end, _EARLIEST + DEFAULT_SPAN) - DEFAULT_SPAN
    if end <= start:
        raise InvalidInput("invalid_time", "'to' must be after 'from'")
    if end - start > MAX_TRACK_SPAN:
        raise InvalidInput("span_too_long", "a track read covers at most 31 days")
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        points = await uow.fixes.track(subject.id, start, end, MAX_TRACK_FIXES)
        uow.audit(
            officer_id=command.actor.officer_id,
            action="track.export" if command.export else "track.read",
            subject_id=subject.id,
            purpose=command.purpose,
            request_id=command.request_id,
            detail={"from": iso(start), "to": iso(end), "fixes": len(points)},
        )
    return Track(subject.id, start, end, points, len(points) >= MAX_TRACK_FIXES)
