"""Supervision policy: level defaults and ingest limits, read from a TOML file.

Provinces differ, so every threshold is configuration (RULES.md §3), never code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from correction_monitor.domain.models import SupervisionLevel

DEFAULT_POLICY_FILE = Path(__file__).with_name("default.toml")


@dataclass(frozen=True, slots=True)
class LevelPolicy:
    """What a supervision level means in numbers (seconds)."""

    label: str
    confirm_s: float
    lost_contact_after_s: float
    expected_fix_interval_s: float
    checkins_per_day: int
    patrol_every_days: int
    ack_sla_high_s: float
    ack_sla_normal_s: float


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    default_accuracy_m: float
    max_future_skew_s: float
    max_age_s: float
    max_speed_mps: float
    max_decision_accuracy_m: float
    # Consecutive fixes of one device at most this far apart (seconds) cover the span
    # between them: a late fix inside it is a contradicting account, not a gap fill.
    covered_gap_s: float


@dataclass(frozen=True, slots=True)
class Policy:
    ingest: IngestPolicy
    levels: dict[SupervisionLevel, LevelPolicy]
    default_home_radius_m: float
    lost_contact_warning_after_s: float
    lost_contact_revocation_after_s: float
    lost_contact_reset: str
    lost_contact_action: str
    lost_contact_article: str

    def level(self, level: SupervisionLevel | str) -> LevelPolicy:
        return self.levels[SupervisionLevel(level)]


class PolicyError(ValueError):
    """The policy file is missing a key or has a value of the wrong kind."""


def parse_policy(data: dict[str, Any]) -> Policy:
    try:
        levels = {level: LevelPolicy(**data["levels"][level.value]) for level in SupervisionLevel}
        return Policy(
            ingest=IngestPolicy(**data["ingest"]),
            levels=levels,
            default_home_radius_m=float(data["curfew"]["default_home_radius_m"]),
            lost_contact_warning_after_s=float(data["lost_contact"]["warning_after_s"]),
            lost_contact_revocation_after_s=float(data["lost_contact"]["revocation_after_s"]),
            lost_contact_reset=str(data["lost_contact"]["reset"]),
            lost_contact_action=str(data["lost_contact"]["action"]),
            lost_contact_article=str(data["lost_contact"]["article"]),
        )
    except (KeyError, TypeError) as exc:
        raise PolicyError(f"policy file is incomplete or malformed: {exc}") from exc


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def load_policy(path: Path | None = None) -> Policy:
    """Read the policy: the shipped defaults, overlaid with ``path`` when given.

    A province's file need only hold what differs, e.g. ``[levels.strict]
    lost_contact_after_s = 1800``; unknown keys are refused with the key named.
    """
    with DEFAULT_POLICY_FILE.open("rb") as fh:
        data = tomllib.load(fh)
    if path is not None:
        try:
            with path.open("rb") as fh:
                override = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
        data = _merged(data, override)
    return parse_policy(data)
