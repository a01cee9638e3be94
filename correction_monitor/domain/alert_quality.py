"""The alert-quality report's figures: how many alerts a rule raised, how many the subject
resolved alone, how officers judged the rest, how fast, and how often the SLA was missed.

This is the number the product is judged by (RULES.md §5: of 13,987 alarms in one district,
under 1 % were real departures), so it is computed the same way for the API and the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class QualityRow:
    """Figures of the alerts of one type (and, by station, one org unit) raised in a period.

    ``resolved`` counts alerts resolved now (a reopened one counts again once resolved
    again); times are seconds from ``detected_at`` (None when no alert got that far);
    ``sla_missed`` counts alerts with a task that escalated (its SLA passed at least once).
    """

    type: str
    org_unit: str | None
    raised: int
    self_resolved: int
    released: int
    resolved: int
    confirmed: int
    justified: int
    false_alarm: int
    ack_p50_s: float | None
    ack_p90_s: float | None
    resolve_p50_s: float | None
    resolve_p90_s: float | None
    sla_missed: int
    # Alerts a night patrol contradicted: it found the subject home while the alert said
    # away (service/patrol_outcomes.py).
    patrol_contradicted: int = 0

    @property
    def false_alarm_rate(self) -> float | None:
        """False alarms among resolved alerts (None when none is resolved).

        >>> QualityRow("t", None, 4, 0, 4, 4, 1, 0, 3, None, None, None, None, 0).false_alarm_rate
        0.75
        """
        if not self.resolved:
            return None
        return round(self.false_alarm / self.resolved, 4)

    def to_json(self) -> dict[str, Any]:
        """The contract's report row, with ``org_unit`` when by station and the counts of
        alerts released and resolved that the rate is read against."""
        out: dict[str, Any] = {}
        if self.org_unit is not None:
            out["org_unit"] = self.org_unit
        out.update(
            {
                "type": self.type,
                "raised": self.raised,
                "self_resolved": self.self_resolved,
                "confirmed": self.confirmed,
                "justified": self.justified,
                "false_alarm": self.false_alarm,
                "false_alarm_rate": self.false_alarm_rate,
                "ack_p50_s": _seconds(self.ack_p50_s),
                "ack_p90_s": _seconds(self.ack_p90_s),
                "resolve_p50_s": _seconds(self.resolve_p50_s),
                "resolve_p90_s": _seconds(self.resolve_p90_s),
                "sla_missed": self.sla_missed,
                "released": self.released,
                "resolved": self.resolved,
                "patrol_contradicted": self.patrol_contradicted,
            }
        )
        return out


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
