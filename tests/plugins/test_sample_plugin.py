"""The third-party sample plugin, pip-installed for real: listed by `codex-ml plugins list`,
fed by a real training run through `--sink csvsink`, and diagnosed next to a broken package."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CODEX_ML = str(Path(sys.executable).parent / "codex-ml")


def _run(cmd: list[str], site: Path, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """``cmd`` with the plugin folder on PYTHONPATH (entry points are found from its dist-info)."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", "WANDB_SILENT": "true"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def test_installed_plugin_is_listed(plugin_site: Path, tmp_path: Path) -> None:
    """`codex-ml plugins list sinks` shows csvsink with its distribution; without the
    package on the path it is not there (the listing really comes from the install)."""
    listed = _run([CODEX_ML, "plugins", "list", "sinks", "--json"], plugin_site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["csvsink"]["source"] == "codex-sample-plugin 0.1.0"
    assert rows["csvsink"]["target"] == "codex_sample_plugin:CsvSink"
    table = _run([CODEX_ML, "plugins", "list", "sinks"], plugin_site, tmp_path)
    assert "csvsink" in table.stdout and "codex-sample-plugin" in table.stdout
    without = _run([CODEX_ML, "plugins", "list", "sinks", "--json"], tmp_path / "empty", tmp_path)
    assert "csvsink" not in {row["name"] for row in json.loads(without.stdout)}


def test_plugin_sink_receives_metrics_from_a_real_run(plugin_site: Path, tmp_path: Path) -> None:
    """tools/monitoring_integrate.py --sink csvsink: the CSV holds exactly the run's scalars."""
    cmd = [sys.executable, str(REPO / "tools" / "monitoring_integrate.py"), "--run-name", "x", "--sink", "csvsink",
           "--steps", "4", "--no-progress", "--output-root", str(tmp_path / "runs")]  # fmt: skip
    done = _run(cmd, plugin_site, tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "x"
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    from_csv = sorted((int(r["step"]), r["name"]) for r in rows if r["kind"] == "metric")
    from_ndjson = sorted(
        (record["step"], name)
        for record in map(json.loads, (run_dir / "metrics.ndjson").read_text().splitlines())
        for name in record.get("metrics", {})
    )
    assert from_csv and from_csv == from_ndjson
    assert "train/loss" in {name for _, name in from_csv}


def test_unknown_sink_name_is_a_clear_error(plugin_site: Path, tmp_path: Path) -> None:
    """A misspelt --sink stops the tool with exit 2 and the list of registered sinks."""
    cmd = [sys.executable, str(REPO / "tools" / "monitoring_integrate.py"), "--sink", "csvsnk", "--steps", "1",
           "--no-progress", "--output-root", str(tmp_path / "runs")]  # fmt: skip
    done = _run(cmd, plugin_site, tmp_path)
    assert done.returncode == 2
    assert "unknown sinks plugin 'csvsnk'" in done.stderr and "csvsink" in done.stderr


def test_diagnose_reports_the_broken_package_and_passes_the_rest(plugin_site: Path, tmp_path: Path) -> None:
    """`codex-ml plugins diagnose` exits 1, naming each broken plugin; the others are ok."""
    done = _run([CODEX_ML, "plugins", "diagnose", "--json"], plugin_site, tmp_path, timeout=180)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    failed = {(p["group"], p["name"]) for p in report["plugins"] if p["state"] == "error"}
    assert failed == {("sinks", "broken_import"), ("sinks", "not_a_sink"), ("sinks", "tensorboard"),
                      ("tokenizers", "old_api"), ("tokenizers", "no_api"), ("sink", "typo_group")}  # fmt: skip
    assert all(p["source"].startswith("codex-broken-plugin") for p in report["plugins"] if p["state"] == "error")
    assert {"csvsink", "tensorboard", "gpt", "char"} <= {p["name"] for p in report["plugins"] if p["state"] == "ok"}
