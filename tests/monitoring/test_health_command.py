"""`codex-ml monitoring health RUN [--rules FILE] [--set K=V] [--json]` through Typer's CliRunner."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codex_ml.cli.__main__ import app
from codex_ml.tracking import start_run

runner = CliRunner()


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    with start_run("faulty", output_root=tmp_path / "runs", flush_interval=0.05) as run:
        for step in range(120):
            loss = math.nan if step == 30 else 40.0 if step == 100 else 2.0 + 0.05 * math.sin(step * 1.7)
            run.log_metrics({"train/loss": loss}, step=step)
    return run.paths.root


def _invoke(*args: str):
    return runner.invoke(app, ["monitoring", "health", *args])


def test_table_lists_each_event(run_dir: Path) -> None:
    result = _invoke(str(run_dir))
    assert result.exit_code == 0, result.output
    # 120 steps, plus the live run's own health/events records when start_run runs the rules live.
    assert "2 events from 10 rules over 12" in result.output and "metrics records" in result.output
    assert "nonfinite" in result.output and "spike" in result.output


def test_json_and_rules_file(run_dir: Path, tmp_path: Path) -> None:
    data = json.loads(_invoke(str(run_dir), "--json").stdout)
    assert [(e["rule"], e["step"], e["value"]) for e in data["events"]] == [("nonfinite", 30, "NaN"), ("spike", 100, 40.0)]
    rules = tmp_path / "rules.yaml"
    rules.write_text("health:\n  spike: {threshold: 1000, action: stop}\n", encoding="utf-8")
    data = json.loads(_invoke(str(run_dir), "--rules", str(rules), "--json").stdout)
    assert [e["rule"] for e in data["events"]] == ["nonfinite"]
    data = json.loads(_invoke(str(run_dir), "--rules", str(rules), "--set", "health.nonfinite.enabled=false",
                              "--json").stdout)
    assert data["events"] == [] and "nonfinite" not in data["rules"]


def test_clean_run_says_no_events(tmp_path: Path) -> None:
    with start_run("clean", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_metrics({"train/loss": 2.0}, step=1)
    result = _invoke(str(run.paths.root))
    assert result.exit_code == 0 and "no events from 10 rules over 1 metrics records" in result.output


@pytest.mark.parametrize(("rules_text", "args", "message"), [
    (None, ["{missing}"], "no such run directory"),
    ("health:\n  spike: {threshold: x}\n", [], "health.spike.threshold: expected a number, got 'x'"),
    ("spike: {threshold: 3}\n", [], "expected a top-level 'health:' mapping"),
    ("health: [\n", [], "not valid YAML"),
    (None, ["--set", "health.nope.x=1"], "health.nope: unknown health rule 'nope'"),
])  # fmt: skip
def test_bad_input_is_one_error_line_and_exit_2(run_dir: Path, tmp_path: Path, rules_text: str | None,
                                                args: list[str], message: str) -> None:
    argv = [a.format(missing=tmp_path / "missing") for a in args]
    if "{missing}" not in args:
        argv.insert(0, str(run_dir))
    if rules_text is not None:
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_text, encoding="utf-8")
        argv += ["--rules", str(rules)]
    result = _invoke(*argv)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_module_entry_point(run_dir: Path) -> None:
    """The real console entry (python -m codex_ml.monitoring.cli), as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "codex_ml.monitoring.cli", "health", str(run_dir), "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["events"]) == 2
