"""The codex-ml Typer app: help is instant and light, the demo command runs a real job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from codex_ml.cli.__main__ import app

HEAVY = ("torch", "mlflow", "wandb", "tensorboard")


def test_help_lists_commands() -> None:
    """--help names the commands and the tracking flags of demo."""
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output and "version" in result.output
    demo_help = runner.invoke(app, ["demo", "--help"])
    assert demo_help.exit_code == 0
    for flag in ("--enable-tensorboard", "--mlflow-enable", "--enable-wandb", "--run-name"):
        assert flag in demo_help.output


def test_console_script_help_imports_no_heavy_module() -> None:
    """`codex-ml --help` in a real subprocess loads none of torch/mlflow/wandb/tensorboard."""
    code = (
        "import sys\n"
        "sys.argv = ['codex-ml', '--help']\n"
        "from codex_ml.cli.__main__ import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "HEAVY=\n" in out.stdout or out.stdout.rstrip().endswith("HEAVY=")
    assert "Usage" in out.stdout


def test_module_entry_point_runs() -> None:
    """`python -m codex_ml.cli version` works as a real process."""
    out = subprocess.run([sys.executable, "-m", "codex_ml.cli", "version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import codex_ml

    assert out.stdout.strip() == codex_ml.__version__


def test_demo_command_trains_and_logs(tmp_path: Path) -> None:
    """`codex-ml demo` trains for real and leaves a complete run directory."""
    env = {**os.environ, "WANDB_SILENT": "true"}
    cmd = [sys.executable, "-m", "codex_ml.cli", "demo", "--steps", "30", "--no-progress",
           "--output-root", str(tmp_path), "--run-name", "cli-demo", "--enable-tensorboard"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "cli-demo"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "FINISHED"
    assert summary["sinks"]["tensorboard"]["delivered"] == summary["records"]
    assert any(run_dir.joinpath("tensorboard").iterdir())
    assert "tensorboard --logdir" in out.stdout


def test_bad_run_name_is_a_clear_error(tmp_path: Path) -> None:
    """A run name that escapes the output root exits 2 with a message, creating nothing."""
    result = CliRunner().invoke(app, ["demo", "--steps", "1", "--output-root", str(tmp_path / "o"), "--run-name", "../x"])
    assert result.exit_code == 2
    assert "invalid run name" in result.output
    assert not (tmp_path / "x").exists()
