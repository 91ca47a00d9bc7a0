"""``codex-ml demo --health health.RULE.KEY=VALUE``: settings reach the run's rules; bad ones are one error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codex_ml.cli", "demo", "--steps", "3", "--no-progress",
                           "--output-root", str(tmp_path), "--run-name", "d", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_health_setting_reaches_the_run(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--health", "health.spike.enabled=false", "--health", "health.stall.floor_s=120")
    assert done.returncode == 0, done.stderr
    health = json.loads((tmp_path / "d" / "summary.json").read_text())["health"]
    assert "spike" not in health["rules"] and "stall" in health["rules"] and health["events"] == 0


def test_a_bad_health_setting_is_one_error_line_and_nothing_runs(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--health", "health.spike.threshold=abc")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: health.spike.threshold: expected a number, got 'abc'"]
    assert not (tmp_path / "d").exists()
