"""deploy/prometheus/alerts.yml passes ``promtool check rules`` and its own ``promtool test rules`` unit tests.

promtool ships with Debian's ``prometheus`` package (scripts/install_system_deps.sh installs it).
A copy of the rules with one threshold changed must fail the unit tests: they pin the behaviour.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = Path("/usr/bin/promtool")


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run scripts/install_system_deps.sh (as root) to install Prometheus")
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_rules_are_valid() -> None:
    result = _promtool("check", "rules", "alerts.yml", cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "alerts_test.yml", cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("> 600", "> 900"),  # the stall threshold the tests pin
        ('"codex_(.+_)?loss"}, "metric"', '"codex_.*loss.*"}, "metric"'),  # would catch codex_train_loss_scale
        (" or codex_health_active == 1", ""),  # a rule's first event would be missed
    ],
)
def test_unit_tests_catch_a_changed_rule(tmp_path: Path, old: str, new: str) -> None:
    text = (RULES_DIR / "alerts.yml").read_text()
    assert old in text
    (tmp_path / "alerts.yml").write_text(text.replace(old, new))
    shutil.copy(RULES_DIR / "alerts_test.yml", tmp_path)
    result = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr, result.stdout + result.stderr
