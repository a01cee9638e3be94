"""The legal ladder (RULES.md §1) as pure rules: which measure to propose for a confirmed
breach, and when to propose a change of supervision level. The engine proposes; a county
administrator decides (``service/proposals.py``).

* **Rungs.** 训诫 (reprimand) for a minor breach, lost contact up to 10 days included.
  警告 (warning) for a minor breach of a court 禁止令 (``entered_exclusion_zone``), a serious
  breach, lost contact beyond 10 days, or any confirmed breach after two approved reprimands
  ("two 训诫 and still not corrected"). 提请撤销缓刑 / 撤销假释 / 收监执行 (revocation, by
  category) for a serious 禁止令 breach, lost contact beyond one month, any confirmed breach
  after two approved warnings, or after an approved 提请治安管理处罚. 管制 (control) has no
  revocation: its top rung is 提请治安管理处罚 (public-security penalty). The highest rung
  any condition reaches is proposed, and the grounds name every condition met at it.
* **Counters** count *approved* proposals only: a pending or rejected proposal is no
  response the subject received.
* **The 脱离监管 clock** is the sum of the confirmed lost-contact episodes (the term's, by
  default): above ``warning_after_s`` (10 days) a warning, above ``revocation_after_s``
  (30 days) revocation; exactly at a mark is still the rung below.
* **Level changes.** After an approved reprimand or warning, to strict (严管) unless already
  strict; after ``lenient_after_clean_days`` days at normal (普管) with no confirmed breach,
  to lenient (宽管).

Every article and threshold comes from the policy (``[ladder]``, ``[lost_contact]``), since
several article numbers are uncertain and provinces differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from correction_monitor.domain.alerts import Gravity
from correction_monitor.domain.models import SubjectCategory, SupervisionLevel
from correction_monitor.domain.timeutil import iso
from correction_monitor.policy import LadderPolicy, Policy


class Measure(StrEnum):
    """What a proposal asks for (CONTRACT.md's Proposal ``measure``)."""

    REPRIMAND = "reprimand"
    WARNING = "warning"
    PUBLIC_SECURITY_PENALTY = "public_security_penalty"
    REVOCATION = "revocation"
    LEVEL_CHANGE = "level_change"


class ProposalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Rung(StrEnum):
    """Why a rung was reached: one slug per condition of RULES.md §1 the engine checks."""

    MINOR_BREACH = "minor_breach"
    LOST_CONTACT_WITHIN_WARNING = "lost_contact_within_warning_clock"
    EXCLUSION_ZONE_MINOR = "exclusion_zone_minor"
    SERIOUS_BREACH = "serious_breach"
    REPRIMANDS_NOT_CORRECTED = "reprimands_not_corrected"
    LOST_CONTACT_BEYOND_WARNING = "lost_contact_beyond_warning_clock"
    EXCLUSION_ZONE_SERIOUS = "exclusion_zone_serious"
    LOST_CONTACT_BEYOND_REVOCATION = "lost_contact_beyond_revocation_clock"
    WARNINGS_NOT_CORRECTED = "warnings_not_corrected"
    PENALTY_NOT_CORRECTED = "penalty_not_corrected"
    APPROVED_RESPONSE = "approved_response"
    CLEAN_AT_NORMAL = "clean_at_normal"


EXCLUSION_ZONE = "entered_exclusion_zone"
LOST_CONTACT = "lost_contact"

# How the grounds name an alert type, zh-CN then English.
BREACH_LABELS: dict[str, tuple[str, str]] = {
    "left_activity_area": ("越出活动区域（越界）", "left the activity area"),
    EXCLUSION_ZONE: ("进入禁止令限制区域", "entered a place a court 禁止令 forbids"),
    "curfew_violation": ("宵禁时段离开住所", "away from home during curfew"),
    LOST_CONTACT: ("脱离监管（失去联系）", "lost contact"),
    "missed_checkin": ("未按规定报到（签到）", "did not report in (check-in missed)"),
    "leave_overdue": ("外出逾期未归", "still away after the approved leave ended"),
    "device_integrity": ("人机分离（定位设备异常）", "phone kept apart from the subject"),
}

# 撤销缓刑 / 撤销假释 / 收监执行: what revocation means for each category that has one.
REVOCATION_LABELS: dict[str, tuple[str, str]] = {
    SubjectCategory.PROBATION: ("提请撤销缓刑", "propose revoking probation"),
    SubjectCategory.PAROLE: ("提请撤销假释", "propose revoking parole"),
    SubjectCategory.MEDICAL_PAROLE: ("提请收监执行", "propose committal to prison"),
}

MEASURE_LABELS: dict[Measure, tuple[str, str]] = {
    Measure.REPRIMAND: ("训诫", "reprimand"),
    Measure.WARNING: ("警告", "warning"),
    Measure.PUBLIC_SECURITY_PENALTY: (
        "提请公安机关给予治安管理处罚",
        "propose a public-security penalty",
    ),
    Measure.REVOCATION: ("提请撤销缓刑、假释或收监执行", "propose revocation"),
    Measure.LEVEL_CHANGE: ("调整监管等级", "change the supervision level"),
}

LEVEL_LABELS: dict[SupervisionLevel, str] = {
    SupervisionLevel.STRICT: "严管",
    SupervisionLevel.NORMAL: "普管",
    SupervisionLevel.LENIENT: "宽管",
}


@dataclass(frozen=True, slots=True)
class LadderRules:
    """The policy's numbers the ladder applies: articles and counters (``[ladder]``) and
    the 脱离监管 clock's marks in seconds (``[lost_contact]``)."""

    ladder: LadderPolicy
    warning_after_s: float
    revocation_after_s: float

    @classmethod
    def of(cls, policy: Policy) -> LadderRules:
        return cls(
            policy.ladder,
            policy.lost_contact_warning_after_s,
            policy.lost_contact_revocation_after_s,
        )

    def values(self) -> dict[str, Any]:
        """The numbers as a proposal's ``basis`` records them (what applied then)."""
        return {
            "reprimands_before_warning": self.ladder.reprimands_before_warning,
            "warnings_before_revocation": self.ladder.warnings_before_revocation,
            "lost_contact_warning_after_s": self.warning_after_s,
            "lost_contact_revocation_after_s": self.revocation_after_s,
        }


@dataclass(frozen=True, slots=True)
class Counters:
    """The subject's approved responses so far (pending and rejected ones do not count)."""

    reprimands: int = 0
    warnings: int = 0
    public_security_penalties: int = 0

    @classmethod
    def of(cls, approved: dict[str, int]) -> Counters:
        """From approved proposals counted by measure."""
        return cls(
            approved.get(Measure.REPRIMAND, 0),
            approved.get(Measure.WARNING, 0),
            approved.get(Measure.PUBLIC_SECURITY_PENALTY, 0),
        )

    def to_json(self) -> dict[str, int]:
        return {
            "reprimands": self.reprimands,
            "warnings": self.warnings,
            "public_security_penalties": self.public_security_penalties,
        }


@dataclass(frozen=True, slots=True)
class LostContactEpisode:
    """A confirmed lost-contact alert's span: from the last contact to the first fix
    accepted again (``ended_at``), or, still silent, to when an officer resolved it."""

    alert_id: int
    started_at: datetime
    ended_at: datetime | None
    resolved_at: datetime | None

    @property
    def seconds(self) -> float:
        end = self.ended_at or self.resolved_at
        if end is None:
            return 0.0
        return max(0.0, (end - self.started_at).total_seconds())


def lost_contact_clock(
    episodes: Iterable[LostContactEpisode], since: datetime | None, breach_id: int | None = None
) -> tuple[float, list[int]]:
    """The 脱离监管 clock in seconds: the sum of the episodes that started at or after
    ``since`` (the term's start; None when the policy never resets it), and which alerts
    made it. The episode of ``breach_id`` (the one being proposed for) always counts."""
    counted = [
        e for e in episodes if since is None or e.started_at >= since or e.alert_id == breach_id
    ]
    return sum(e.seconds for e in counted), [e.alert_id for e in counted]


@dataclass(frozen=True, slots=True)
class Breach:
    """A breach an officer confirmed: its alert, the gravity they gave (minor unless said),
    the subject's category, and for lost contact the 脱离监管 clock with this episode in it
    (seconds) and the alerts that make it up."""

    alert_id: int
    alert_type: str
    gravity: Gravity
    category: SubjectCategory
    started_at: datetime
    timezone: str = "Asia/Shanghai"
    lost_contact_clock_s: float = 0.0
    lost_contact_alert_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Proposed:
    """What the ladder proposes: the measure, its article, the conditions that reached it
    (``rungs``), its grounds (plain zh-CN / English statements of the facts and the rule
    applied) and what it counted (``basis``); ``proposed_level`` for a level change."""

    measure: Measure
    article: str
    rungs: tuple[Rung, ...]
    grounds: tuple[str, ...]
    basis: dict[str, Any] = field(default_factory=dict)
    proposed_level: SupervisionLevel | None = None


def _duration(seconds: float) -> str:
    """``"10 天 0 小时 0 分 1 秒 (864001 s)"``: days and the rest, exact to the second."""
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days} 天 {hours} 小时 {minutes} 分 {secs} 秒 ({whole} s)"


def _mark(seconds: float) -> str:
    """A clock's mark as the rules say it: whole days when it is whole days."""
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)} 日 ({int(seconds // 86400)} days)"
    return _duration(seconds)


def _fact(breach: Breach) -> str:
    zh, en = BREACH_LABELS.get(breach.alert_type, (breach.alert_type, breach.alert_type))
    when = breach.started_at.astimezone(ZoneInfo(breach.timezone)).strftime("%Y-%m-%d %H:%M")
    grave_zh = "情节较重" if breach.gravity is Gravity.SERIOUS else "情节轻微"
    return (
        f"{when} 起，经核实确认违规：{zh}，{grave_zh}（告警 {breach.alert_id}）。"
        f" Confirmed breach from {when} ({breach.timezone}): {en}, {breach.gravity.value}"
        f" (alert {breach.alert_id})."
    )


def _top_rung(
    breach: Breach, counters: Counters, rules: LadderRules
) -> tuple[int, list[tuple[Rung, str]]]:
    """The highest rank reached (0 reprimand, 1 warning, 2 revocation) and the conditions
    met at it, each with its statement."""
    ladder = rules.ladder
    exclusion = breach.alert_type == EXCLUSION_ZONE
    serious = breach.gravity is Gravity.SERIOUS
    lost = breach.alert_type == LOST_CONTACT
    clock = breach.lost_contact_clock_s
    met: list[tuple[int, Rung, str]] = []
    if lost:
        episodes = "、".join(str(i) for i in breach.lost_contact_alert_ids) or "—"
        told = (
            f"本期脱离监管累计 {_duration(clock)}（已确认失联告警 {episodes}）"
            f"; lost contact so far this term: {_duration(clock)} (confirmed alerts {episodes})"
        )
        if clock > rules.revocation_after_s:
            met.append(
                (
                    2,
                    Rung.LOST_CONTACT_BEYOND_REVOCATION,
                    f"{told}，超过 {_mark(rules.revocation_after_s)}"
                    f" — beyond {_mark(rules.revocation_after_s)}.",
                )
            )
        elif clock > rules.warning_after_s:
            met.append(
                (
                    1,
                    Rung.LOST_CONTACT_BEYOND_WARNING,
                    f"{told}，超过 {_mark(rules.warning_after_s)}"
                    f" — beyond {_mark(rules.warning_after_s)}.",
                )
            )
        else:
            met.append(
                (
                    0,
                    Rung.LOST_CONTACT_WITHIN_WARNING,
                    f"{told}，未超过 {_mark(rules.warning_after_s)}"
                    f" — not beyond {_mark(rules.warning_after_s)}.",
                )
            )
    if exclusion and serious:
        met.append(
            (
                2,
                Rung.EXCLUSION_ZONE_SERIOUS,
                "违反人民法院禁止令，情节严重。 A serious breach of a court 禁止令.",
            )
        )
    elif exclusion:
        met.append(
            (
                1,
                Rung.EXCLUSION_ZONE_MINOR,
                "违反人民法院禁止令，情节轻微。 A minor breach of a court 禁止令.",
            )
        )
    elif serious:
        met.append(
            (
                1,
                Rung.SERIOUS_BREACH,
                "违反监督管理规定，情节较重。 A serious breach of supervision rules.",
            )
        )
    if counters.warnings >= ladder.warnings_before_revocation:
        met.append(
            (
                2,
                Rung.WARNINGS_NOT_CORRECTED,
                f"已给予警告 {counters.warnings} 次（已批准），仍不改正。"
                f" {counters.warnings} approved warnings and still not corrected"
                f" (threshold {ladder.warnings_before_revocation}).",
            )
        )
    if counters.public_security_penalties >= 1:
        met.append(
            (
                2,
                Rung.PENALTY_NOT_CORRECTED,
                "已提请治安管理处罚（已批准）后仍不改正。"
                " Still not corrected after an approved public-security penalty proposal.",
            )
        )
    if counters.reprimands >= ladder.reprimands_before_warning:
        met.append(
            (
                1,
                Rung.REPRIMANDS_NOT_CORRECTED,
                f"已给予训诫 {counters.reprimands} 次（已批准），仍不改正。"
                f" {counters.reprimands} approved reprimands and still not corrected"
                f" (threshold {ladder.reprimands_before_warning}).",
            )
        )
    if not met:
        met.append(
            (
                0,
                Rung.MINOR_BREACH,
                "违反监督管理规定，情节轻微。 A minor breach of supervision rules.",
            )
        )
    top = max(rank for rank, _, _ in met)
    return top, [(rung, said) for rank, rung, said in met if rank == top]


def propose_response(breach: Breach, counters: Counters, rules: LadderRules) -> Proposed:
    """The measure to propose for a confirmed ``breach``, given the subject's approved
    responses (``counters``): the highest rung any condition reaches (module docstring)."""
    ladder = rules.ladder
    top, reached = _top_rung(breach, counters, rules)
    category_note: str | None = None
    if top == 0:
        measure, article = Measure.REPRIMAND, ladder.reprimand_article
    elif top == 1:
        measure, article = Measure.WARNING, ladder.warning_article
    elif breach.category in ladder.revocation_article:
        measure, article = Measure.REVOCATION, ladder.revocation_article[breach.category]
        zh, en = REVOCATION_LABELS.get(breach.category, MEASURE_LABELS[Measure.REVOCATION])
        category_note = f"{zh}（{breach.category.value}）。 {en.capitalize()}."
    else:
        measure, article = Measure.PUBLIC_SECURITY_PENALTY, ladder.public_security_penalty_article
        category_note = (
            f"{breach.category.value} 无撤销程序，提请公安机关给予治安管理处罚。"
            f" A {breach.category.value} subject has no revocation: propose a"
            " public-security penalty instead."
        )
    zh, en = MEASURE_LABELS[measure]
    rule = (
        f"依据{article}，建议{zh}。 Rule applied: {article} — {en}"
        f" ({'; '.join(r.value for r, _ in reached)})."
    )
    grounds = [_fact(breach), *(said for _, said in reached)]
    if category_note is not None:
        grounds.append(category_note)
    grounds.append(rule)
    basis: dict[str, Any] = {
        "alert_type": breach.alert_type,
        "gravity": breach.gravity.value,
        "category": breach.category.value,
        "counters": counters.to_json(),
        "rungs": [r.value for r, _ in reached],
        "policy": rules.values(),
    }
    if breach.alert_type == LOST_CONTACT:
        basis["lost_contact"] = {
            "clock_s": round(breach.lost_contact_clock_s, 3),
            "alert_ids": list(breach.lost_contact_alert_ids),
        }
    return Proposed(measure, article, tuple(r for r, _ in reached), tuple(grounds), basis)


STRICTER_AFTER = frozenset({Measure.REPRIMAND, Measure.WARNING})


def propose_strict_after(
    proposal_id: int, measure: Measure, level: SupervisionLevel, rules: LadderRules
) -> Proposed | None:
    """After an approved reprimand or warning (proposal ``proposal_id``), a change to
    strict; None for other measures or a subject already strict."""
    if measure not in STRICTER_AFTER or level is SupervisionLevel.STRICT:
        return None
    article = rules.ladder.level_change_article
    zh, en = MEASURE_LABELS[measure]
    grounds = (
        f"建议 {proposal_id}（{zh}）已批准；现为{LEVEL_LABELS[level]}。"
        f" Proposal {proposal_id} ({en}) was approved; the subject is {level.value}.",
        f"依据{article}，建议调整为严管。 Rule applied: {article} — after an approved {en},"
        " supervise strictly (strict).",
    )
    basis = {
        "after_proposal_id": proposal_id,
        "after_measure": measure.value,
        "from_level": level.value,
    }
    return Proposed(
        Measure.LEVEL_CHANGE,
        article,
        (Rung.APPROVED_RESPONSE,),
        grounds,
        basis,
        SupervisionLevel.STRICT,
    )


def lenient_key(subject_id: int, clean_since: datetime) -> str:
    """The dedupe key of a lenient proposal: one per subject and clean span (named by its
    start, whole epoch seconds), so a rejected one is not proposed again for the same span."""
    return f"lenient:{subject_id}:{math.floor(clean_since.timestamp())}"


def propose_lenient(
    level: SupervisionLevel, clean_since: datetime, now: datetime, rules: LadderRules
) -> Proposed | None:
    """A change to lenient for a subject at normal with no confirmed breach since
    ``clean_since`` for at least ``lenient_after_clean_days`` days at ``now``; else None."""
    days = rules.ladder.lenient_after_clean_days
    if level is not SupervisionLevel.NORMAL or now - clean_since < timedelta(days=days):
        return None
    article = rules.ladder.level_change_article
    clean_days = (now - clean_since).days
    grounds = (
        f"自 {clean_since.date().isoformat()} 起为普管且无经确认的违规，已 {clean_days} 日。"
        f" At normal with no confirmed breach since {clean_since.date().isoformat()}"
        f" ({clean_days} days).",
        f"依据{article}，表现良好满 {days} 日，建议调整为宽管。 Rule applied: {article} —"
        f" {days} clean days at normal, supervise leniently (lenient).",
    )
    basis = {
        "clean_since": clean_since.isoformat(),
        "clean_days": clean_days,
        "lenient_after_clean_days": days,
        "from_level": level.value,
    }
    return Proposed(
        Measure.LEVEL_CHANGE,
        article,
        (Rung.CLEAN_AT_NORMAL,),
        grounds,
        basis,
        SupervisionLevel.LENIENT,
    )


# ------------------------------------------------------------------------------ proposals


@dataclass(frozen=True, slots=True)
class ConfirmedAlert:
    """An alert as the ladder reads it when it was resolved: its type, the gravity the
    officer gave (None when not given: minor), its span and disposition, and the subject's
    category, level, term start and station time zone."""

    alert_id: int
    alert_type: str
    gravity: Gravity | None
    disposition: str | None
    started_at: datetime
    ended_at: datetime | None
    resolved_at: datetime | None
    subject_id: int
    org_unit_id: int
    category: SubjectCategory
    supervision_level: SupervisionLevel
    term_start: date
    timezone: str

    def term_started_at(self) -> datetime:
        """The term's first instant: local midnight of ``term_start`` at the station."""
        return datetime.combine(self.term_start, time(), ZoneInfo(self.timezone))


@dataclass(frozen=True, slots=True)
class CleanSubject:
    """A subject at normal and the moment it has been clean since: the latest of its term's
    start, its enrolment, its last confirmed breach's end and its last level change."""

    subject_id: int
    org_unit_id: int
    supervision_level: SupervisionLevel
    clean_since: datetime


@dataclass(frozen=True, slots=True)
class NewProposal:
    """A proposal to store: what the ladder proposed, for whom, on which alerts, keyed by
    ``dedupe_key`` (the same ground proposes once, e.g. ``alert:123``)."""

    subject_id: int
    org_unit_id: int
    proposed: Proposed
    alert_ids: tuple[int, ...]
    created_at: datetime
    dedupe_key: str


@dataclass(frozen=True, slots=True)
class Proposal:
    """A stored proposal of the ladder and, once decided, who decided what, when and why."""

    id: int
    subject_id: int
    org_unit_id: int
    measure: Measure
    article: str
    grounds: tuple[str, ...]
    alert_ids: tuple[int, ...]
    basis: dict[str, Any]
    proposed_level: SupervisionLevel | None
    status: ProposalStatus
    created_at: datetime
    decided_at: datetime | None
    decided_by: int | None
    decision_note: str | None
    dedupe_key: str

    def to_json(self) -> dict[str, Any]:
        """CONTRACT.md's Proposal, with what the ladder counted (``basis``), the level a
        level change proposes and the decision's note."""
        return {
            "id": self.id,
            "subject_id": self.subject_id,
            "measure": self.measure.value,
            "article": self.article,
            "grounds": list(self.grounds),
            "alert_ids": list(self.alert_ids),
            "status": self.status.value,
            "created_at": iso(self.created_at),
            "decided_at": iso(self.decided_at),
            "decided_by": self.decided_by,
            "basis": self.basis,
            "proposed_level": self.proposed_level.value if self.proposed_level else None,
            "decision_note": self.decision_note,
        }
