"""The alert-quality report (the number the product is judged by), for officers through the
API and for operators as Prometheus gauges.

Per alert type (or per station and type): alerts raised, self-resolved, released to
officers, resolved as confirmed / justified / false alarm, the false-alarm rate (false
alarms among resolved alerts), the times from ``detected_at`` to acknowledgement and to
resolution (p50 and p90, seconds, ``percentile_cont``), and how many alerts had a task
whose SLA passed (``escalation_level > 0``). The period is the alerts' ``detected_at`` in
``[from, to)``; the jurisdiction is the caller's, narrowed to an org unit's subtree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from correction_monitor import metrics
from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal, subtree_ids
from correction_monitor.domain.alert_quality import QualityRow
from correction_monitor.domain.alerts import AlertType
from correction_monitor.domain.models import OrgUnit
from correction_monitor.service.command import Command
from correction_monitor.service.errors import InvalidInput, NotFound
from correction_monitor.service.unit_of_work import UnitOfWork

METRICS_PERIOD = timedelta(days=30)
"""The gauges describe the alerts raised in this many days before each refresh."""

METRICS_STATION_SERIES_MAX = 300
"""At most this many (station, type) series per gauge, the stations with most alerts first,
so a province's thousand stations do not make the scrape unbounded; per-type totals
(``org_unit="all"``) always cover everything."""


def _subtree(units: list[OrgUnit], root_id: int) -> frozenset[int]:
    return subtree_ids(((u.id, u.parent_id) for u in units), root_id)


def _every_type(rows: list[QualityRow]) -> list[QualityRow]:
    """Rows per type with every type present (zeros for a type that raised nothing), in the
    types' order, so a reader finds each rule's row whatever happened."""
    by_type = {row.type: row for row in rows}
    return [
        by_type.get(t.value)
        or QualityRow(t.value, None, 0, 0, 0, 0, 0, 0, 0, None, None, None, None, 0)
        for t in AlertType
    ]


@dataclass(frozen=True, slots=True)
class AlertQualityReport(Command[list[QualityRow]]):
    """The report's rows for the caller's jurisdiction (within ``org_unit``'s subtree when
    given), alerts detected in ``[start, end)``; per type, or per station and type with
    ``by_station``."""

    actor: Principal
    org_unit: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    by_station: bool = False


async def alert_quality_report(command: AlertQualityReport, uow: UnitOfWork) -> list[QualityRow]:
    who = command.actor
    if command.start and command.end and command.start >= command.end:
        raise InvalidInput("invalid_request", "from must be before to")
    async with uow:
        scope = who.scope
        if command.org_unit is not None:
            try:
                unit = await uow.org_units.get_by_code(command.org_unit)
            except stored.NotFound as exc:
                raise NotFound(f"org unit {command.org_unit!r}") from exc
            if not who.sees(unit.id):
                raise NotFound(f"org unit {command.org_unit!r}")
            below = _subtree(await uow.org_units.all(), unit.id)
            scope = below if scope is None else below & scope
        rows = await uow.reports.alert_quality(
            scope, command.start, command.end, by_org_unit=command.by_station
        )
    return rows if command.by_station else _every_type(rows)


@dataclass(frozen=True, slots=True)
class PublishAlertQualityMetrics(Command[int]):
    """Refresh the ``cm_alert_quality_*`` gauges from the alerts detected in the
    :data:`METRICS_PERIOD` before ``now``; returns how many series were set."""

    now: datetime


_published: set[tuple[str, str]] = set()
"""The (type, org unit) series this process has set, so one that drops out is zeroed
rather than left showing old figures."""


async def publish_alert_quality_metrics(
    command: PublishAlertQualityMetrics, uow: UnitOfWork
) -> int:
    start = command.now - METRICS_PERIOD
    async with uow:
        by_station = await uow.reports.alert_quality(None, start, None, by_org_unit=True)
        totals = await uow.reports.alert_quality(None, start, None, by_org_unit=False)
    stations = sorted(by_station, key=lambda r: (-r.raised, r.org_unit or "", r.type))
    series = [(row, row.org_unit or "") for row in stations[:METRICS_STATION_SERIES_MAX]]
    series += [(row, "all") for row in _every_type(totals)]
    current = {(row.type, org_unit) for row, org_unit in series}
    for type_, org_unit in _published - current:
        metrics.set_alert_quality(type_, org_unit, None)
    for row, org_unit in series:
        metrics.set_alert_quality(row.type, org_unit, row.to_json())
    _published.clear()
    _published.update(current)
    return len(series)
