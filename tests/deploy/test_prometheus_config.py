"""deploy/prometheus/prometheus.yml, the example scrape config for runs' file_sd targets, is valid for promtool and
points where the exporters write (<run>/prometheus/*.json); the glob rule docs/prometheus.md states holds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from codex_ml.backends.prometheus_targets import TARGETS_DIR

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = Path("/usr/bin/promtool")


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run scripts/install_system_deps.sh (as root) to install Prometheus")
    return subprocess.run([str(PROMTOOL), "check", "config", path.name], cwd=path.parent, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_the_example_config_is_valid_and_reads_the_run_dirs_targets() -> None:
    result = _check_config(DEPLOY / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout  # alerts.yml, found relative to the config
    (job,) = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    assert job["job_name"] == "codex_ml" and job["honor_labels"] is True
    (files,) = [sd["files"] for sd in job["file_sd_configs"]]
    assert all(pattern.endswith(f"/{TARGETS_DIR}/*.json") for pattern in files)


def test_file_sd_refuses_a_glob_before_the_last_path_segment(tmp_path: Path) -> None:
    """Why the docs say to list each run's folder: runs/*/prometheus/*.json is not a valid file_sd pattern."""
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n  - job_name: codex_ml\n    file_sd_configs:\n"
                      "      - files: ['/runs/*/prometheus/*.json']\n")  # fmt: skip
    result = _check_config(config)
    assert result.returncode != 0 and "is not valid for file discovery" in result.stdout + result.stderr
