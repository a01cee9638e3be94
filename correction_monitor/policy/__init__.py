"""Supervision policy: level defaults, check-ins, leave, integrity signals and ingest limits,
read from a TOML file.

Provinces differ, so every threshold is configuration (RULES.md §3), never code. The file is
checked whole when it is read (at start-up): a missing or unknown key, a value of the wrong
kind or out of range is refused with the key named, e.g. ``levels.strict.checkin_windows[1].
start: '25:00' is not a time of day (HH:MM)``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from correction_monitor.domain.models import SupervisionLevel

DEFAULT_POLICY_FILE = Path(__file__).with_name("default.toml")

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str) -> time:
    """``"HH:MM"`` (00:00 to 23:59) as a time of day; ValueError otherwise."""
    match = _HHMM.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a time of day (HH:MM)")
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True, slots=True)
class CheckinWindow:
    """A daily window on ``days`` (ISO weekdays, 1 = Monday) in the station's local time,
    from ``start`` to ``end``; an ``end`` not after ``start`` closes the next day."""

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class LevelPolicy:
    """What a supervision level means in numbers (seconds unless named otherwise)."""

    label: str
    confirm_s: float
    lost_contact_after_s: float
    # How often the phone is asked to report its location; 0: check-ins only (宽管).
    expected_fix_interval_s: float
    patrol_every_days: int
    ack_sla_high_s: float
    ack_sla_normal_s: float
    # Scheduled check-in windows in the station's time zone.
    checkin_windows: tuple[CheckinWindow, ...] = ()
    # Random challenges: how many per period ("day", "week" or "month") and answer time.
    challenges_per_period: int = 0
    challenge_period: str = "day"
    challenge_answer_s: float = 1800.0
    # A face-match score under this needs an officer's review.
    face_score_min: float = 0.8
    # Reminders to the subject, this long before an unanswered window closes.
    reminder_lead_s: tuple[float, ...] = ()
    # How long after a leave's end a subject still away is overdue (leave_overdue).
    leave_overdue_grace_s: float = 3600.0


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
class CheckinPolicy:
    """Check-ins beyond the levels' numbers."""

    # Random challenges are drawn within these local hours (and outside curfew).
    waking_start: time
    waking_end: time
    # Scheduled windows on days of an approved leave are not laid out.
    skip_on_leave: bool
    # Windows and challenges are laid out this far ahead.
    layout_ahead_s: float
    # The default of every level's face_score_min.
    face_score_min: float


@dataclass(frozen=True, slots=True)
class LeavePolicy:
    """Leave (外出) approval limits and its overdue grace (RULES.md §2)."""

    overdue_grace_s: float
    station_max_days: int
    county_max_days: int
    cumulative_window_days: int
    cumulative_max_days: int
    commuting_max_days: int


@dataclass(frozen=True, slots=True)
class IntegrityPolicy:
    """人机分离 signals: each rule can be switched off; none decides guilt."""

    mock_location: bool
    new_device: bool
    stationary_checkin: bool
    replayed_media: bool
    # A device counts as still active when heard from within this many seconds.
    new_device_overlap_s: float
    # "Has not moved for hours": every fix within stationary_radius_m for stationary_s.
    stationary_s: float
    stationary_radius_m: float
    # A patrol found the subject home while a location alert said away (人机分离).
    patrol_contradiction: bool = True

    def enabled(self, rule: str) -> bool:
        return bool(getattr(self, rule))


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """Tasks and their escalation (二级包保)."""

    # Seconds given at each escalation level (1: the supervisor, 2: the county).
    escalation_sla_s: tuple[float, ...]
    review_checkin_s: float
    approve_leave_s: float
    decide_proposal_s: float


@dataclass(frozen=True, slots=True)
class LadderPolicy:
    """The legal ladder's articles and thresholds (RULES.md §1), configurable because some
    article numbers are uncertain."""

    reprimand_article: str
    warning_article: str
    public_security_penalty_article: str
    # By subject category; a category without one (管制 control) has no revocation.
    revocation_article: dict[str, str]
    level_change_article: str
    reprimands_before_warning: int
    warnings_before_revocation: int
    lenient_after_clean_days: int


@dataclass(frozen=True, slots=True)
class NotificationPolicy:
    robot_per_minute: int
    retry_base_s: float
    retry_max_s: float
    max_attempts: int


@dataclass(frozen=True, slots=True)
class PatrolPolicy:
    """Night patrols: distances, team defaults, the solver's budget, the nightly plan's
    hour, and what each risk adds to a due subject's priority."""

    detour_factor: float
    default_speed_kmh: float
    default_stop_minutes: float
    solver_seconds: float
    plan_at: time
    risk_lookback_days: int
    risk_open_alert: float
    risk_recent_alert: float
    risk_curfew_anomaly: float
    risk_new_intake: float
    risk_new_intake_days: int
    risk_recent_sanction: float
    risk_recent_sanction_days: int
    risk_lost_contact: float
    risk_device_integrity: float


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
    checkins: CheckinPolicy
    leave: LeavePolicy
    integrity: IntegrityPolicy
    # Seconds per alert type during which the subject is messaged first (absent: 0).
    self_resolution_s: dict[str, float]
    tasks: TaskPolicy
    ladder: LadderPolicy
    notifications: NotificationPolicy
    patrol: PatrolPolicy

    def self_resolution(self, alert_type: str) -> float:
        """Seconds of self-resolution for alerts of ``alert_type`` (0: none)."""
        return self.self_resolution_s.get(alert_type, 0.0)

    def level(self, level: SupervisionLevel | str) -> LevelPolicy:
        return self.levels[SupervisionLevel(level)]


class PolicyError(ValueError):
    """The policy file is missing a key or has a value of the wrong kind; the message names
    the key."""


# The file's shape. Every section forbids unknown keys, so a misspelt key is named rather
# than silently ignored.

_Seconds = Annotated[float, Field(ge=0)]
_Positive = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Window(_Strict):
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(min_length=1)
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value


class _Level(_Strict):
    label: str
    confirm_s: _Seconds
    lost_contact_after_s: _Positive
    expected_fix_interval_s: _Seconds
    patrol_every_days: Annotated[int, Field(ge=1)]
    ack_sla_high_s: _Positive
    ack_sla_normal_s: _Positive
    checkin_windows: list[_Window]
    challenges_per_period: Annotated[int, Field(ge=0, le=48)]
    challenge_period: Literal["day", "week", "month"]
    challenge_answer_s: Annotated[float, Field(ge=60, le=86400)]
    face_score_min: Annotated[float, Field(ge=0, le=1)] | None = None
    reminder_lead_s: list[_Positive]
    leave_overdue_grace_s: _Seconds | None = None


class _Ingest(_Strict):
    default_accuracy_m: _Positive
    max_future_skew_s: _Seconds
    max_age_s: _Positive
    max_speed_mps: _Positive
    max_decision_accuracy_m: _Positive
    covered_gap_s: _Seconds


class _Levels(_Strict):
    strict: _Level
    normal: _Level
    lenient: _Level


class _Curfew(_Strict):
    default_home_radius_m: _Positive


class _LostContact(_Strict):
    warning_after_s: _Positive
    revocation_after_s: _Positive
    reset: Literal["term", "never"]
    action: str
    article: str


class _Checkins(_Strict):
    waking_start: str
    waking_end: str
    skip_on_leave: bool
    layout_ahead_s: Annotated[float, Field(ge=3600)]
    face_score_min: Annotated[float, Field(ge=0, le=1)]

    @field_validator("waking_start", "waking_end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value


class _Leave(_Strict):
    overdue_grace_s: _Seconds
    station_max_days: Annotated[int, Field(ge=1)]
    county_max_days: Annotated[int, Field(ge=1)]
    cumulative_window_days: Annotated[int, Field(ge=1)]
    cumulative_max_days: Annotated[int, Field(ge=1)]
    commuting_max_days: Annotated[int, Field(ge=1)]


class _Integrity(_Strict):
    mock_location: bool
    new_device: bool
    stationary_checkin: bool
    replayed_media: bool
    new_device_overlap_s: _Positive
    stationary_s: _Positive
    stationary_radius_m: _Positive
    patrol_contradiction: bool = True


class _Tasks(_Strict):
    escalation_sla_s: list[_Positive] = Field(min_length=2, max_length=2)
    review_checkin_s: _Positive
    approve_leave_s: _Positive
    decide_proposal_s: _Positive


class _RevocationArticles(_Strict):
    probation: str = Field(min_length=1)
    parole: str = Field(min_length=1)
    medical_parole: str = Field(min_length=1)


class _Ladder(_Strict):
    reprimand_article: str = Field(min_length=1)
    warning_article: str = Field(min_length=1)
    public_security_penalty_article: str = Field(min_length=1)
    revocation_article: _RevocationArticles
    level_change_article: str = Field(min_length=1)
    reprimands_before_warning: Annotated[int, Field(ge=1)]
    warnings_before_revocation: Annotated[int, Field(ge=1)]
    lenient_after_clean_days: Annotated[int, Field(ge=1)]


class _Notifications(_Strict):
    robot_per_minute: Annotated[int, Field(ge=1)]
    retry_base_s: _Positive
    retry_max_s: _Positive
    max_attempts: Annotated[int, Field(ge=1)]


class _SelfResolution(_Strict):
    left_activity_area: _Seconds = 0
    entered_exclusion_zone: _Seconds = 0
    curfew_violation: _Seconds = 0
    lost_contact: _Seconds = 0
    missed_checkin: _Seconds = 0
    leave_overdue: _Seconds = 0
    device_integrity: _Seconds = 0


class _Patrol(_Strict):
    detour_factor: Annotated[float, Field(ge=1, le=5)]
    default_speed_kmh: _Positive
    default_stop_minutes: _Seconds
    solver_seconds: Annotated[float, Field(gt=0, le=600)]
    plan_at: str
    risk_lookback_days: Annotated[int, Field(ge=1)]
    risk_open_alert: _Seconds
    risk_recent_alert: _Seconds
    risk_curfew_anomaly: _Seconds
    risk_new_intake: _Seconds
    risk_new_intake_days: Annotated[int, Field(ge=1)]
    risk_recent_sanction: _Seconds
    risk_recent_sanction_days: Annotated[int, Field(ge=1)]
    risk_lost_contact: _Seconds
    risk_device_integrity: _Seconds

    @field_validator("plan_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value


class _PolicyFile(_Strict):
    ingest: _Ingest
    levels: _Levels
    curfew: _Curfew
    lost_contact: _LostContact
    checkins: _Checkins
    leave: _Leave
    integrity: _Integrity
    self_resolution: _SelfResolution
    tasks: _Tasks
    ladder: _Ladder
    notifications: _Notifications
    patrol: _Patrol


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _level(raw: _Level, checkins: _Checkins, leave: _Leave) -> LevelPolicy:
    return LevelPolicy(
        label=raw.label,
        confirm_s=raw.confirm_s,
        lost_contact_after_s=raw.lost_contact_after_s,
        expected_fix_interval_s=raw.expected_fix_interval_s,
        patrol_every_days=raw.patrol_every_days,
        ack_sla_high_s=raw.ack_sla_high_s,
        ack_sla_normal_s=raw.ack_sla_normal_s,
        checkin_windows=tuple(
            CheckinWindow(frozenset(w.days), parse_hhmm(w.start), parse_hhmm(w.end))
            for w in raw.checkin_windows
        ),
        challenges_per_period=raw.challenges_per_period,
        challenge_period=raw.challenge_period,
        challenge_answer_s=raw.challenge_answer_s,
        face_score_min=(
            raw.face_score_min if raw.face_score_min is not None else checkins.face_score_min
        ),
        reminder_lead_s=tuple(sorted(raw.reminder_lead_s, reverse=True)),
        leave_overdue_grace_s=(
            raw.leave_overdue_grace_s
            if raw.leave_overdue_grace_s is not None
            else leave.overdue_grace_s
        ),
    )


def parse_policy(data: dict[str, Any]) -> Policy:
    """The policy of a parsed TOML document; PolicyError naming every key that is wrong."""
    try:
        raw = _PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = _key(tuple(error["loc"]))
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif error["type"] == "missing":
                message = "missing key"
            problems.append(f"{key}: {message}")
        raise PolicyError("policy file: " + "; ".join(problems)) from None
    levels = {
        level: _level(getattr(raw.levels, level.value), raw.checkins, raw.leave)
        for level in SupervisionLevel
    }
    return Policy(
        ingest=IngestPolicy(**raw.ingest.model_dump()),
        levels=levels,
        default_home_radius_m=raw.curfew.default_home_radius_m,
        lost_contact_warning_after_s=raw.lost_contact.warning_after_s,
        lost_contact_revocation_after_s=raw.lost_contact.revocation_after_s,
        lost_contact_reset=raw.lost_contact.reset,
        lost_contact_action=raw.lost_contact.action,
        lost_contact_article=raw.lost_contact.article,
        checkins=CheckinPolicy(
            waking_start=parse_hhmm(raw.checkins.waking_start),
            waking_end=parse_hhmm(raw.checkins.waking_end),
            skip_on_leave=raw.checkins.skip_on_leave,
            layout_ahead_s=raw.checkins.layout_ahead_s,
            face_score_min=raw.checkins.face_score_min,
        ),
        leave=LeavePolicy(**raw.leave.model_dump()),
        integrity=IntegrityPolicy(**raw.integrity.model_dump()),
        self_resolution_s={k: float(v) for k, v in raw.self_resolution.model_dump().items()},
        tasks=TaskPolicy(
            escalation_sla_s=tuple(raw.tasks.escalation_sla_s),
            review_checkin_s=raw.tasks.review_checkin_s,
            approve_leave_s=raw.tasks.approve_leave_s,
            decide_proposal_s=raw.tasks.decide_proposal_s,
        ),
        ladder=LadderPolicy(
            **(
                raw.ladder.model_dump()
                | {"revocation_article": raw.ladder.revocation_article.model_dump()}
            )
        ),
        notifications=NotificationPolicy(**raw.notifications.model_dump()),
        patrol=PatrolPolicy(
            **(raw.patrol.model_dump() | {"plan_at": parse_hhmm(raw.patrol.plan_at)})
        ),
    )


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
