"""A subject's live status (the console's and the feed's view): latest position, contact,
open alerts.

The latest position comes from the hot state (Redis, a copy) and falls back to the last
evaluated fix in PostgreSQL when Redis has none or is down. Reading it is a read of
location data, so it is audited like a track read (``position.read``, with its purpose); the
open alerts it carries (their evidence holds positions too) are named in the same entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from correction_monitor.domain.access import Principal
from correction_monitor.domain.alerts import AlertStatus
from correction_monitor.domain.models import Alert, SubjectContact
from correction_monitor.service.command import Command
from correction_monitor.service.jurisdiction import visible_subject
from correction_monitor.service.unit_of_work import UnitOfWork

MAX_OPEN_ALERTS = 100


class PositionCache(Protocol):
    """The latest positions kept outside PostgreSQL (``adapters/hot_state.py``): per
    subject a ``{"ts" (epoch s), "lon", "lat", "accuracy_m"}``; an empty answer when down."""

    async def latest_positions(self, subject_ids: list[int]) -> dict[int, dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class LatestPosition:
    """Where the subject was last known: ``at`` (UTC), WGS-84 degrees, accuracy in metres,
    and where that was read (``redis`` or ``postgresql``)."""

    at: datetime
    lon: float
    lat: float
    accuracy_m: float
    source: Literal["redis", "postgresql"]


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    subject_id: int
    latest_position: LatestPosition | None
    contact: SubjectContact | None
    open_alerts: list[Alert]


@dataclass(frozen=True, slots=True)
class ReadSubjectStatus(Command[SubjectStatus]):
    """The status of a subject of the caller's jurisdiction."""

    actor: Principal
    subject_id: int
    purpose: str | None = None
    request_id: str | None = None


async def read_subject_status(
    command: ReadSubjectStatus, uow: UnitOfWork, *, positions: PositionCache | None = None
) -> SubjectStatus:
    """``positions`` is the hot state (PostgreSQL alone answers without it)."""
    who = command.actor
    async with uow:
        subject = await visible_subject(uow, who, command.subject_id)
        contact = await uow.subjects.contact(subject.id)
        open_alerts = await uow.alerts.list_in(
            who.scope, subject_id=subject.id, status=AlertStatus.OPEN, limit=MAX_OPEN_ALERTS
        )
        uow.audit(
            officer_id=who.officer_id,
            action="position.read",
            subject_id=subject.id,
            purpose=command.purpose,
            request_id=command.request_id,
            detail={"open_alert_ids": [a.id for a in open_alerts]},
        )
    cached = (
        (await positions.latest_positions([subject.id])).get(subject.id)
        if positions is not None
        else None
    )
    latest: LatestPosition | None = None
    if cached is not None:
        latest = LatestPosition(
            datetime.fromtimestamp(cached["ts"], UTC),
            cached["lon"],
            cached["lat"],
            cached["accuracy_m"],
            "redis",
        )
    elif contact is not None and contact.reference is not None:
        ts, lon, lat, accuracy_m = contact.reference
        latest = LatestPosition(datetime.fromtimestamp(ts, UTC), lon, lat, accuracy_m, "postgresql")
    return SubjectStatus(subject.id, latest, contact, open_alerts)
