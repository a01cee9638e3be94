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
