"""The policy file: shipped defaults, overlaid by a province's own file."""

from __future__ import annotations

from pathlib import Path

import pytest

from correction_monitor.policy import PolicyError, load_policy

pytestmark = pytest.mark.unit


def test_defaults_follow_rules_section_3() -> None:
    policy = load_policy()
    assert policy.level("strict").confirm_s == 120
    assert policy.level("normal").lost_contact_after_s == 3 * 3600
    assert policy.level("lenient").label == "宽管"


def test_a_province_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "province.toml"
    path.write_text("[levels.strict]\nlost_contact_after_s = 1800\n", encoding="utf-8")
    policy = load_policy(path)
    assert policy.level("strict").lost_contact_after_s == 1800
    assert policy.level("strict").confirm_s == 120
    assert policy.ingest.max_age_s == load_policy().ingest.max_age_s


def test_unknown_keys_and_bad_files_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[levels.strict]\nconfirm_minutes = 2\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="confirm_minutes"):
        load_policy(path)
    broken = tmp_path / "broken.toml"
    broken.write_text("[levels.strict\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(broken)


def test_lost_contact_sweeps_run_often_enough_for_the_shortest_threshold(tmp_path: Path) -> None:
    from correction_monitor.service.jobs import sweep_interval_s

    assert sweep_interval_s(load_policy()) == 60.0  # strict: 3600 s / 4 → capped at 60 s
    path = tmp_path / "drill.toml"
    path.write_text("[levels.strict]\nlost_contact_after_s = 40\n", encoding="utf-8")
    assert sweep_interval_s(load_policy(path)) == 10.0


def test_per_level_supervision_values_follow_rules_section_3() -> None:
    policy = load_policy()
    strict, normal, lenient = (policy.level(x) for x in ("strict", "normal", "lenient"))
    assert [(w.start.hour, w.end.hour) for w in strict.checkin_windows] == [(9, 12), (19, 22)]
    assert [(w.start.hour, w.end.hour) for w in normal.checkin_windows] == [(19, 22)]
    assert [sorted(w.days) for w in lenient.checkin_windows] == [[1]]
    assert (strict.challenges_per_period, strict.challenge_period) == (1, "day")
    assert (normal.challenges_per_period, normal.challenge_period) == (2, "week")
    assert (lenient.challenge_period, lenient.challenge_answer_s) == ("month", 3600)
    assert lenient.expected_fix_interval_s == 0  # check-ins only
    # Level values fall back to their sections' defaults.
    assert strict.face_score_min == policy.checkins.face_score_min
    assert strict.leave_overdue_grace_s == policy.leave.overdue_grace_s


def test_a_level_may_override_the_face_score_and_leave_grace(tmp_path: Path) -> None:
    path = tmp_path / "province.toml"
    path.write_text(
        "[checkins]\nface_score_min = 0.7\n[levels.strict]\nface_score_min = 0.9\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.level("strict").face_score_min == 0.9
    assert policy.level("normal").face_score_min == 0.7


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[levels.strict]\nchallenge_period = "fortnight"\n', "levels.strict.challenge_period"),
        (
            '[levels.normal]\ncheckin_windows = [{ days = [1], start = "9", end = "10:00" }]\n',
            "levels.normal.checkin_windows[0].start",
        ),
        (
            '[levels.normal]\ncheckin_windows = [{ days = [8], start = "09:00", end = "10:00" }]\n',
            "levels.normal.checkin_windows[0].days[0]",
        ),
        ("[checkins]\nface_score_min = 1.5\n", "checkins.face_score_min"),
        ("[integrity]\nmock_locaton = false\n", "integrity.mock_locaton: unknown key"),
        ("[leave]\noverdue_grace_s = -1\n", "leave.overdue_grace_s"),
        ('[checkins]\nwaking_start = "25:00"\n', "checkins.waking_start"),
    ],
)
def test_start_up_refuses_a_bad_value_naming_its_key(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert named in str(caught.value)
