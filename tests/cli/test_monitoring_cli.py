"""`codex-ml monitoring ...` through Typer's CliRunner, and once through the real console script."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from codex_ml.cli.__main__ import app
from codex_ml.tracking import start_run

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    with start_run("demo", output_root=tmp_path / "runs", flush_interval=0.05, params={"lr": 0.1}) as run:
        for step in range(20):
            run.log_metrics({"train/loss": 2.0 / (step + 1), "lr": 0.1}, step=step)
        run.log_metrics({"train/loss": math.nan}, step=20)  # the health rule `nonfinite` adds health/events=1 at 20
    return run.paths.root


def _invoke(*args: str):
    return runner.invoke(app, ["monitoring", *args])


def test_help_lists_every_command() -> None:
    result = _invoke("--help")
    assert result.exit_code == 0
    for command in ("inspect", "export", "tail", "plot", "ui"):
        assert command in result.output
    for command in ("inspect", "export", "tail", "plot", "ui"):
        assert _invoke(command, "--help").exit_code == 0


def test_inspect_table_and_json(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps to the terminal width
    table = _invoke("inspect", str(run_dir))
    assert table.exit_code == 0, table.output
    assert "train/loss" in table.output and "22 records" in table.output and "FINISHED" in table.output
    data = json.loads(_invoke("inspect", str(run_dir), "--json").stdout)
    loss = data["runs"][0]["metrics"]["train/loss"]
    assert loss["count"] == 21 and loss["nan"] == 1 and loss["last"] == "NaN" and loss["max"] == 2.0
    both = _invoke("inspect", str(run_dir), str(run_dir / "metrics.ndjson"))
    assert both.exit_code == 0 and "side by side" in both.output


def test_inspect_piped_prints_whole_numbers(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped output (no terminal, no COLUMNS) is not squeezed into 80 columns with '…' cuts."""
    monkeypatch.delenv("COLUMNS", raising=False)
    result = _invoke("inspect", str(run_dir))
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "NaN/Inf" in result.output and "0.3598" in result.output


def test_export_formats_and_errors(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "m.parquet"
    result = _invoke("export", str(run_dir), str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"out": str(out), "format": "parquet", "layout": "long", "rows": 42}
    assert pq.read_table(out).num_rows == 42  # 41 points logged + the health/events count
    wide = _invoke("export", str(run_dir), str(tmp_path / "w.csv"), "--wide")
    assert wide.exit_code == 0 and "21 rows (wide)" in wide.output
    bad = _invoke("export", str(run_dir), str(tmp_path / "x.xlsx"))
    assert bad.exit_code == 2 and "choose one of: csv, parquet, jsonl" in bad.output
    bad = _invoke("export", str(run_dir), str(tmp_path / "x.csv"), "--fmt", "yaml")
    assert bad.exit_code == 2 and "unknown export format 'yaml'" in bad.output
    missing = _invoke("export", str(tmp_path / "nope"), str(tmp_path / "x.csv"))
    assert missing.exit_code == 2 and "no such file or directory" in missing.output
    no_out = _invoke("export", str(run_dir))
    assert no_out.exit_code == 2 and "missing output file" in no_out.output
    no_system = _invoke("export", str(run_dir), str(tmp_path / "s.csv"), "--system")
    assert no_system.exit_code == 2 and "--system-metrics" in no_system.output


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.ndjson").write_bytes(b"")
    result = _invoke("inspect", str(tmp_path / "empty.ndjson"))
    assert result.exit_code == 2 and "empty" in result.output


def test_replay_to_tensorboard_twice(run_dir: Path) -> None:
    first = _invoke("export", str(run_dir), "--to", "tensorboard", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["sent"] == 42
    second = _invoke("export", str(run_dir), "--to", "tensorboard")
    assert second.exit_code == 0 and "nothing sent" in second.output
    unknown = _invoke("export", str(run_dir), "--to", "neptune")
    assert unknown.exit_code == 2 and "tensorboard, mlflow, wandb" in unknown.output


def test_tail_plot_and_ui_errors(run_dir: Path, tmp_path: Path) -> None:
    tail = _invoke("tail", str(run_dir), "-n", "2")
    lines = tail.output.splitlines()
    assert tail.exit_code == 0 and lines[:2] == [line for line in lines if line.startswith("step ")]
    assert "train/loss=NaN" in lines[0] and "health/events=1" in lines[1]
    assert "[health] step 20 nonfinite" in tail.output
    tail_json = _invoke("tail", str(run_dir), "-n", "2", "--json", "--until-closed", "--interval", "0.01")
    first = json.loads(tail_json.stdout.splitlines()[0])
    assert tail_json.exit_code == 0 and first["metrics"] == {"train/loss": "NaN"}
    plot = _invoke("plot", str(run_dir), "-o", str(tmp_path / "c.png"), "-m", "train/*")
    assert plot.exit_code == 0 and "1 panels" in plot.output and (tmp_path / "c.png").stat().st_size > 1000
    ui = _invoke("ui", str(run_dir))
    assert ui.exit_code == 2 and "--tensorboard, --mlflow or --optuna" in ui.output


def test_console_script_subprocess(run_dir: Path) -> None:
    """The installed `codex-ml` script and `python -m codex_ml.monitoring.cli` both work."""
    script = REPO / ".venv" / "bin" / "codex-ml"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "codex_ml.cli"]
    done = subprocess.run([*command, "monitoring", "inspect", str(run_dir), "--json"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "120"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["metrics"]["lr"]["count"] == 20
    module = subprocess.run([sys.executable, "-m", "codex_ml.monitoring.cli", "inspect", str(run_dir / "nope")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert module.returncode == 2 and "no such file or directory" in module.stderr


def test_sub_app_import_is_light() -> None:
    """Loading the sub-app (what `codex-ml --help` does) imports no data or backend library."""
    heavy = ("numpy", "pyarrow", "pandas", "matplotlib", "torch", "mlflow", "wandb", "tensorboard")
    code = f"import sys, codex_ml.monitoring.cli\nprint(','.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""
