"""Night patrols as pure rules: due dates per level, exclusions, the window, reasons, the
seeded draw and the split of stops between teams (domain/patrol.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import pytest

from correction_monitor.domain import patrol
from correction_monitor.domain.models import SupervisionLevel
from correction_monitor.domain.patrol import PatrolSubject, RiskFacts
from correction_monitor.policy import load_policy

pytestmark = pytest.mark.unit

POLICY = load_policy()
PATROL = POLICY.patrol
NIGHT = date(2026, 6, 1)
SPAN = patrol.night_span(NIGHT, "Asia/Shanghai", [(time(20), time(2))])
HOME = (116.3, 39.9)


def subject(
    sid: int = 1,
    level: SupervisionLevel = SupervisionLevel.STRICT,
    *,
    last: date | None = None,
    term_start: date = date(2026, 1, 1),
    term_end: date = date(2027, 12, 31),
    home: tuple[float, float] | None = HOME,
    **kw: object,
) -> PatrolSubject:
    every = POLICY.levels[level].patrol_every_days
    return PatrolSubject(sid, every, term_start, term_end, home, last, **kw)  # type: ignore[arg-type]


def test_levels_visit_every_14_30_and_90_days() -> None:
    everies = {lvl: POLICY.levels[lvl].patrol_every_days for lvl in SupervisionLevel}
    assert everies == {
        SupervisionLevel.STRICT: 14,
        SupervisionLevel.NORMAL: 30,
        SupervisionLevel.LENIENT: 90,
    }


@pytest.mark.parametrize(
    ("level", "due", "first"),
    [
        (SupervisionLevel.STRICT, date(2026, 5, 15), date(2026, 5, 9)),
        (SupervisionLevel.NORMAL, date(2026, 5, 31), date(2026, 5, 17)),
        (SupervisionLevel.LENIENT, date(2026, 7, 30), date(2026, 6, 16)),
    ],
)
def test_due_counts_from_the_last_visit_per_level(
    level: SupervisionLevel, due: date, first: date
) -> None:
    s = subject(level=level, last=date(2026, 5, 1))
    window = patrol.due_window(s)
    assert (window.anchor, window.first, window.due) == (date(2026, 5, 1), first, due)
    assert patrol.is_overdue(s, due + timedelta(days=1))
    assert not patrol.is_overdue(s, due)


def test_due_counts_from_the_term_start_without_a_visit() -> None:
    s = subject(term_start=date(2026, 5, 20))
    assert patrol.due_window(s).due == date(2026, 6, 3)
    assert patrol.due_window(s).first == date(2026, 5, 28)


def test_last_night_of_window_and_overdue_are_required_whatever_the_seed() -> None:
    due_tonight = subject(1, last=NIGHT - timedelta(days=14))
    overdue = subject(2, last=NIGHT - timedelta(days=20))
    for seed in range(20):
        sel = patrol.select([due_tonight, overdue], NIGHT, seed, PATROL, SPAN, 10)
        assert [c.subject_id for c in sel.chosen] == [2, 1]  # the overdue one first
        assert all(c.required for c in sel.chosen)
    codes = {c.subject_id: c.reasons[0].code for c in sel.chosen}
    assert codes == {1: patrol.LAST_NIGHT, 2: patrol.OVERDUE}
    assert "6 night(s) overdue" in sel.chosen[0].reasons[0].detail


def test_not_due_before_the_window() -> None:
    s = subject(last=NIGHT - timedelta(days=7))  # the window opens on the 8th night
    assert all(patrol.consider(s, NIGHT, seed, PATROL) is None for seed in range(200))


def test_approved_leave_over_the_night_excludes_the_subject() -> None:
    evening = datetime(2026, 6, 1, 13, tzinfo=UTC)  # 21:00 in Shanghai
    on_leave = subject(
        1, last=NIGHT - timedelta(days=20), leaves=((evening, evening + timedelta(hours=1)),)
    )
    leave_ended = subject(
        2,
        last=NIGHT - timedelta(days=20),
        leaves=((evening - timedelta(days=3), evening - timedelta(days=1)),),
    )
    sel = patrol.select([on_leave, leave_ended], NIGHT, 7, PATROL, SPAN, 10)
    assert [c.subject_id for c in sel.chosen] == [2]
    assert sel.left_out == ((1, patrol.ON_LEAVE),)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"home": None}, patrol.NO_HOME),
        ({"term_start": NIGHT + timedelta(days=1)}, patrol.TERM_NOT_STARTED),
        (
            {"term_end": NIGHT - timedelta(days=1), "term_start": date(2025, 1, 1)},
            patrol.TERM_ENDED,
        ),
        ({"active": False}, patrol.INACTIVE),
    ],
)
def test_exclusions(kw: dict[str, object], why: str) -> None:
    s = subject(**kw)  # type: ignore[arg-type]
    assert patrol.exclusion(s, NIGHT, SPAN) == why
    assert patrol.select([s], NIGHT, 1, PATROL, SPAN, 10).chosen == ()


def test_every_risk_is_a_reason_with_its_policy_weight() -> None:
    risk = RiskFacts(
        open_alerts=1,
        recent_alerts=2,
        curfew_anomalies=1,
        lost_contact=1,
        device_integrity=1,
        sanction="reprimand",
        sanction_on=date(2026, 5, 1),
    )
    s = subject(term_start=NIGHT - timedelta(days=20), risk=risk)
    reasons = {r.code: r for r in patrol.risk_reasons(s, NIGHT, PATROL)}
    assert {code: r.weight for code, r in reasons.items()} == {
        patrol.OPEN_ALERT: PATROL.risk_open_alert,
        patrol.RECENT_ALERT: PATROL.risk_recent_alert,
        patrol.CURFEW_ANOMALY: PATROL.risk_curfew_anomaly,
        patrol.NEW_INTAKE: PATROL.risk_new_intake,
        patrol.RECENT_SANCTION: PATROL.risk_recent_sanction,
        patrol.LOST_CONTACT: PATROL.risk_lost_contact,
        patrol.DEVICE_INTEGRITY: PATROL.risk_device_integrity,
    }
    assert "reprimand approved on 2026-05-01" in reasons[patrol.RECENT_SANCTION].detail
    # Past the first month, intake no longer counts.
    older = subject(term_start=NIGHT - timedelta(days=PATROL.risk_new_intake_days))
    assert patrol.risk_reasons(older, NIGHT, PATROL) == []


def test_risk_raises_priority_and_is_kept_with_the_stop() -> None:
    plain = subject(1, last=NIGHT - timedelta(days=14))
    risky = subject(2, last=NIGHT - timedelta(days=14), risk=RiskFacts(open_alerts=1))
    sel = patrol.select([plain, risky], NIGHT, 3, PATROL, SPAN, 10)
    by_id = {c.subject_id: c for c in sel.chosen}
    assert by_id[2].priority == by_id[1].priority + PATROL.risk_open_alert
    assert [r.code for r in by_id[2].reasons] == [patrol.LAST_NIGHT, patrol.OPEN_ALERT]
    # Over capacity the riskier one goes, the other is left out with the reason.
    sel = patrol.select([plain, risky], NIGHT, 3, PATROL, SPAN, 1)
    assert [c.subject_id for c in sel.chosen] == [2]
    assert sel.left_out == ((1, patrol.OVER_CAPACITY),)


def test_the_draw_is_reproduced_from_its_seed() -> None:
    subjects = [subject(i, last=NIGHT - timedelta(days=9 + i % 4)) for i in range(1, 60)]
    first = patrol.select(subjects, NIGHT, 424242, PATROL, SPAN, 100)
    again = patrol.select(list(reversed(subjects)), NIGHT, 424242, PATROL, SPAN, 100)
    assert first == again
    assert 0 < len(first.chosen) < len(subjects)
    other = patrol.select(subjects, NIGHT, 424243, PATROL, SPAN, 100)
    assert {c.subject_id for c in other.chosen} != {c.subject_id for c in first.chosen}
    # An auditor re-derives each drawn subject's number from the logged seed alone.
    for c in first.chosen:
        number = float(c.reasons[0].detail.split()[1])
        assert number == pytest.approx(patrol.draw_number(424242, NIGHT, c.subject_id), abs=1e-6)


def test_the_drawn_night_is_uniform_over_the_window() -> None:
    """Without risk every night of the window is equally likely: subjects cannot guess."""
    nights: Counter[int] = Counter()
    for seed in range(3000):
        s = subject(1, last=date(2026, 5, 1))
        night = patrol.due_window(s).first
        while patrol.consider(s, night, seed, PATROL) is None:
            night += timedelta(days=1)
        nights[(night - date(2026, 5, 1)).days] += 1
    assert sorted(nights) == list(range(8, 15))
    assert max(nights.values()) < 1.2 * 3000 / 7
    assert min(nights.values()) > 0.8 * 3000 / 7


def test_risk_draws_earlier_within_the_window() -> None:
    assert patrol.draw_probability(7, 0) == pytest.approx(1 / 7)
    assert patrol.draw_probability(7, patrol.RISK_DOUBLING) == pytest.approx(2 / 7)
    assert patrol.draw_probability(7, 1000) == pytest.approx(patrol.RISK_MAX_FACTOR / 7)
    assert patrol.draw_probability(1, 0) == 1.0


def test_split_gives_the_next_stop_to_the_least_loaded_team() -> None:
    assert patrol.split_capacity(7, {1: 5, 2: 5, 3: 5}, {}) == {1: 3, 2: 2, 3: 2}
    assert patrol.split_capacity(7, {1: 5, 2: 5, 3: 5}, {1: 10, 2: 8, 3: 8}) == {
        1: 1,
        2: 3,
        3: 3,
    }
    assert patrol.split_capacity(20, {1: 2, 2: 3}, {}) == {1: 2, 2: 3}


def test_window_seconds_cross_midnight() -> None:
    assert patrol.window_seconds((time(20), time(2))) == (72000, 93600)
    assert patrol.window_seconds((time(19, 30), time(23))) == (70200, 82800)
    start, end = SPAN
    assert start == datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert end == datetime(2026, 6, 1, 18, tzinfo=UTC)


def test_a_forecast_visit_moves_the_due_date() -> None:
    s = subject(1, last=date(2026, 5, 1))
    (moved,) = patrol.visited([s], [1], date(2026, 5, 10))
    assert patrol.due_window(moved).due == date(2026, 5, 24)
    assert patrol.balance({1: 100, 2: 110, 3: 90}) == pytest.approx(0.1)
