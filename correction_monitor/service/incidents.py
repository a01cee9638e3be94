"""Reading an incident: the alerts of one event (``domain/incidents.py``), as officers see
them. Its alerts carry positions in their evidence, so the read is audited like an alert's
(``incident.read``, with the caller's purpose)."""

from __future__ import annotations

from dataclasses import dataclass

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal
from correction_monitor.domain.incidents import Incident
from correction_monitor.domain.models import Alert
from correction_monitor.service.command import Command
from correction_monitor.service.errors import NotFound
from correction_monitor.service.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class IncidentView:
    incident: Incident
    alerts: list[Alert]


@dataclass(frozen=True, slots=True)
class GetIncident(Command[IncidentView]):
    """One incident of the caller's jurisdiction with its alerts, oldest first (others'
    are not found)."""

    actor: Principal
    incident_id: int
    purpose: str | None = None
    request_id: str | None = None


async def get_incident(command: GetIncident, uow: UnitOfWork) -> IncidentView:
    async with uow:
        try:
            incident = await uow.incidents.get(command.incident_id)
        except stored.NotFound as exc:
            raise NotFound(f"incident {command.incident_id}") from exc
        if not command.actor.sees(incident.org_unit_id):
            raise NotFound(f"incident {command.incident_id}")
        alerts = [await uow.alerts.get(alert_id) for alert_id in incident.alert_ids]
        uow.audit(
            officer_id=command.actor.officer_id,
            action="incident.read",
            subject_id=incident.subject_id,
            purpose=command.purpose,
            request_id=command.request_id,
            detail={"incident_id": incident.id, "alert_ids": list(incident.alert_ids)},
        )
    return IncidentView(incident, alerts)
