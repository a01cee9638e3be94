"""The legal ladder (domain/ladder.py), rung by rung with its article, the 脱离监管 clock's
edges, the counters and the category split."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from correction_monitor.domain.alerts import Gravity
from correction_monitor.domain.ladder import (
    Breach,
    Counters,
    LadderRules,
    LostContactEpisode,
    Measure,
    Rung,
    lost_contact_clock,
    propose_lenient,
    propose_response,
    propose_strict_after,
)
from correction_monitor.domain.models import SubjectCategory, SupervisionLevel
from correction_monitor.policy import load_policy

RULES = LadderRules.of(load_policy())
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
DAY = 86400.0

REPRIMAND = "社区矫正法实施办法第三十四条"
WARNING = "社区矫正法实施办法第三十五条"
PENALTY = "社区矫正法实施办法第三十六条；社区矫正法第五十九条"
REVOCATION = {
    SubjectCategory.PROBATION: "社区矫正法实施办法第四十六条",
    SubjectCategory.PAROLE: "社区矫正法实施办法第四十七条",
    SubjectCategory.MEDICAL_PAROLE: "社区矫正法实施办法第四十九条",
}


def breach(
    alert_type: str = "left_activity_area",
    gravity: Gravity = Gravity.MINOR,
    category: SubjectCategory = SubjectCategory.PROBATION,
    clock_s: float = 0.0,
) -> Breach:
    lost = (7,) if alert_type == "lost_contact" else ()
    return Breach(7, alert_type, gravity, category, T0, "Asia/Shanghai", clock_s, lost)


def test_a_minor_breach_is_a_reprimand_citing_its_article() -> None:
    proposed = propose_response(breach(), Counters(), RULES)
    assert proposed.measure is Measure.REPRIMAND
    assert proposed.article == REPRIMAND
    assert proposed.rungs == (Rung.MINOR_BREACH,)
    assert "越出活动区域" in proposed.grounds[0]
    assert "alert 7" in proposed.grounds[0]
    # Local time of the station, not UTC.
    assert "2026-03-01 10:00" in proposed.grounds[0]
    assert REPRIMAND in proposed.grounds[-1]
    assert proposed.basis["counters"] == {
        "reprimands": 0,
        "warnings": 0,
        "public_security_penalties": 0,
    }


@pytest.mark.parametrize("alert_type", ["curfew_violation", "missed_checkin", "leave_overdue"])
def test_other_minor_breaches_are_reprimands(alert_type: str) -> None:
    assert propose_response(breach(alert_type), Counters(), RULES).measure is Measure.REPRIMAND


def test_a_serious_breach_is_a_warning() -> None:
    proposed = propose_response(breach(gravity=Gravity.SERIOUS), Counters(), RULES)
    assert (proposed.measure, proposed.article) == (Measure.WARNING, WARNING)
    assert proposed.rungs == (Rung.SERIOUS_BREACH,)
    assert "情节较重" in proposed.grounds[0]


def test_a_minor_exclusion_zone_breach_is_a_warning() -> None:
    proposed = propose_response(breach("entered_exclusion_zone"), Counters(), RULES)
    assert (proposed.measure, proposed.article) == (Measure.WARNING, WARNING)
    assert proposed.rungs == (Rung.EXCLUSION_ZONE_MINOR,)
    assert any("禁止令" in g for g in proposed.grounds)


@pytest.mark.parametrize("category", sorted(REVOCATION))
def test_a_serious_exclusion_zone_breach_is_revocation_by_category(
    category: SubjectCategory,
) -> None:
    proposed = propose_response(
        breach("entered_exclusion_zone", Gravity.SERIOUS, category), Counters(), RULES
    )
    assert (proposed.measure, proposed.article) == (Measure.REVOCATION, REVOCATION[category])
    assert proposed.rungs == (Rung.EXCLUSION_ZONE_SERIOUS,)
    label = {"probation": "撤销缓刑", "parole": "撤销假释", "medical_parole": "收监执行"}
    assert any(label[category] in g for g in proposed.grounds)


def test_control_has_no_revocation_and_is_proposed_a_public_security_penalty() -> None:
    proposed = propose_response(
        breach("entered_exclusion_zone", Gravity.SERIOUS, SubjectCategory.CONTROL),
        Counters(),
        RULES,
    )
    assert (proposed.measure, proposed.article) == (Measure.PUBLIC_SECURITY_PENALTY, PENALTY)
    assert "社区矫正法第五十九条" in proposed.article
    assert any("no revocation" in g for g in proposed.grounds)


def test_control_below_the_top_rung_is_laddered_like_the_others() -> None:
    minor = breach(category=SubjectCategory.CONTROL)
    assert propose_response(minor, Counters(), RULES).measure is Measure.REPRIMAND
    serious = dataclasses.replace(minor, gravity=Gravity.SERIOUS)
    assert propose_response(serious, Counters(), RULES).measure is Measure.WARNING


def test_two_approved_reprimands_and_a_further_breach_is_a_warning() -> None:
    assert propose_response(breach(), Counters(reprimands=1), RULES).measure is Measure.REPRIMAND
    proposed = propose_response(breach(), Counters(reprimands=2), RULES)
    assert (proposed.measure, proposed.article) == (Measure.WARNING, WARNING)
    assert proposed.rungs == (Rung.REPRIMANDS_NOT_CORRECTED,)
    assert any("训诫 2 次" in g for g in proposed.grounds)
    assert proposed.basis["counters"]["reprimands"] == 2


def test_two_approved_warnings_and_a_further_breach_is_revocation() -> None:
    assert propose_response(breach(), Counters(2, 1), RULES).measure is Measure.WARNING
    proposed = propose_response(breach(), Counters(2, 2), RULES)
    assert (proposed.measure, proposed.article) == (
        Measure.REVOCATION,
        REVOCATION[SubjectCategory.PROBATION],
    )
    assert proposed.rungs == (Rung.WARNINGS_NOT_CORRECTED,)
    control = breach(category=SubjectCategory.CONTROL)
    assert propose_response(control, Counters(2, 2), RULES).measure is (
        Measure.PUBLIC_SECURITY_PENALTY
    )


def test_a_breach_after_an_approved_public_security_penalty_is_revocation() -> None:
    proposed = propose_response(breach(), Counters(public_security_penalties=1), RULES)
    assert proposed.measure is Measure.REVOCATION
    assert proposed.rungs == (Rung.PENALTY_NOT_CORRECTED,)


def test_the_counters_thresholds_come_from_the_policy() -> None:
    ladder = dataclasses.replace(RULES.ladder, reprimands_before_warning=3)
    rules = dataclasses.replace(RULES, ladder=ladder)
    assert propose_response(breach(), Counters(reprimands=2), rules).measure is Measure.REPRIMAND
    assert propose_response(breach(), Counters(reprimands=3), rules).measure is Measure.WARNING


def test_articles_come_from_the_policy() -> None:
    ladder = dataclasses.replace(RULES.ladder, warning_article="某省实施细则第九条")
    rules = dataclasses.replace(RULES, ladder=ladder)
    proposed = propose_response(breach(gravity=Gravity.SERIOUS), Counters(), rules)
    assert proposed.article == "某省实施细则第九条"
    assert "某省实施细则第九条" in proposed.grounds[-1]


def test_every_condition_met_at_the_top_rung_is_named() -> None:
    proposed = propose_response(breach(gravity=Gravity.SERIOUS), Counters(reprimands=2), RULES)
    assert proposed.measure is Measure.WARNING
    assert set(proposed.rungs) == {Rung.SERIOUS_BREACH, Rung.REPRIMANDS_NOT_CORRECTED}


@pytest.mark.parametrize(
    ("clock_s", "measure", "rung"),
    [
        (3600.0, Measure.REPRIMAND, Rung.LOST_CONTACT_WITHIN_WARNING),
        (10 * DAY, Measure.REPRIMAND, Rung.LOST_CONTACT_WITHIN_WARNING),
        (10 * DAY + 1, Measure.WARNING, Rung.LOST_CONTACT_BEYOND_WARNING),
        (30 * DAY, Measure.WARNING, Rung.LOST_CONTACT_BEYOND_WARNING),
        (30 * DAY + 1, Measure.REVOCATION, Rung.LOST_CONTACT_BEYOND_REVOCATION),
    ],
)
def test_the_lost_contact_clock_edges(clock_s: float, measure: Measure, rung: Rung) -> None:
    proposed = propose_response(breach("lost_contact", clock_s=clock_s), Counters(), RULES)
    assert proposed.measure is measure
    assert proposed.rungs == (rung,)
    assert proposed.basis["lost_contact"] == {"clock_s": clock_s, "alert_ids": [7]}


def test_lost_contact_beyond_a_month_for_control_is_a_public_security_penalty() -> None:
    lost = breach("lost_contact", category=SubjectCategory.CONTROL, clock_s=30 * DAY + 1)
    proposed = propose_response(lost, Counters(), RULES)
    assert (proposed.measure, proposed.article) == (Measure.PUBLIC_SECURITY_PENALTY, PENALTY)


def test_lost_contact_clock_marks_come_from_the_policy() -> None:
    rules = dataclasses.replace(RULES, warning_after_s=5 * DAY)
    lost = breach("lost_contact", clock_s=6 * DAY)
    assert propose_response(lost, Counters(), rules).measure is Measure.WARNING
    assert any("5 日" in g for g in propose_response(lost, Counters(), rules).grounds)


def test_the_lost_contact_clock_sums_the_terms_confirmed_episodes() -> None:
    term = datetime(2026, 1, 1, tzinfo=UTC)
    episodes = [
        LostContactEpisode(1, term - timedelta(days=3), term - timedelta(days=1), None),
        LostContactEpisode(2, T0, T0 + timedelta(days=4), T0 + timedelta(days=9)),
        # Still silent when confirmed: counted up to the confirmation.
        LostContactEpisode(3, T0 + timedelta(days=20), None, T0 + timedelta(days=26)),
        LostContactEpisode(4, T0 + timedelta(days=30), None, None),
    ]
    assert lost_contact_clock(episodes, term) == (10 * DAY, [2, 3, 4])
    # The episode being proposed for counts, whenever it started.
    assert lost_contact_clock(episodes, term, 1) == (12 * DAY, [1, 2, 3, 4])
    # A policy that never resets counts the earlier term's episode too.
    assert lost_contact_clock(episodes, None) == (12 * DAY, [1, 2, 3, 4])


def test_strict_after_an_approved_reprimand_or_warning_unless_already_strict() -> None:
    proposed = propose_strict_after(5, Measure.REPRIMAND, SupervisionLevel.NORMAL, RULES)
    assert proposed is not None
    assert proposed.measure is Measure.LEVEL_CHANGE
    assert proposed.proposed_level is SupervisionLevel.STRICT
    assert proposed.article == "社区矫正法实施办法第二十二条"
    assert proposed.basis["after_proposal_id"] == 5
    after_warning = propose_strict_after(6, Measure.WARNING, SupervisionLevel.LENIENT, RULES)
    assert after_warning is not None
    assert propose_strict_after(5, Measure.REPRIMAND, SupervisionLevel.STRICT, RULES) is None
    assert propose_strict_after(5, Measure.REVOCATION, SupervisionLevel.NORMAL, RULES) is None
    assert propose_strict_after(5, Measure.LEVEL_CHANGE, SupervisionLevel.NORMAL, RULES) is None


def test_lenient_after_the_clean_days_at_normal() -> None:
    days = RULES.ladder.lenient_after_clean_days
    clean = T0
    at = T0 + timedelta(days=days)
    proposed = propose_lenient(SupervisionLevel.NORMAL, clean, at, RULES)
    assert proposed is not None
    assert proposed.proposed_level is SupervisionLevel.LENIENT
    assert proposed.basis["clean_days"] == days
    assert propose_lenient(SupervisionLevel.NORMAL, clean, at - timedelta(seconds=1), RULES) is None
    assert propose_lenient(SupervisionLevel.STRICT, clean, at, RULES) is None
    assert propose_lenient(SupervisionLevel.LENIENT, clean, at, RULES) is None


def test_counters_from_approved_counts_by_measure() -> None:
    assert Counters.of({"reprimand": 2, "warning": 1, "level_change": 4}) == Counters(2, 1, 0)
