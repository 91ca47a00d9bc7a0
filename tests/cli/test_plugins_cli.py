"""`codex-ml plugins list | show | diagnose`, through Typer's CliRunner and once as a real
console-script process."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codex_ml.cli.__main__ import app

BROKEN = "CODEX_ML_PLUGIN_API = 1\nraise ImportError('the backend library is missing')\n"
GOOD = "CODEX_ML_PLUGIN_API = 1\ndef read(path: str, limit: int = 10) -> list:\n    '''Reads a test data set.\n\n    More.'''\n    return []\n"


def invoke(*args: str) -> tuple[int, str]:
    """Run `codex-ml plugins ARGS` in-process; (exit code, stdout + stderr)."""
    result = CliRunner().invoke(app, ["plugins", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A hand-made installed distribution (dist-info + modules) with one good and one broken dataset plugin."""
    info = tmp_path / "codex_cli_test-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: codex-cli-test\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[codex_ml.datasets]\ngood = codex_cli_test_good:read\nbroken = codex_cli_test_broken:read\n"
    )
    (tmp_path / "codex_cli_test_good.py").write_text(GOOD)
    (tmp_path / "codex_cli_test_broken.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for name in ("codex_cli_test_good", "codex_cli_test_broken"):
        sys.modules.pop(name, None)


def test_help_of_each_command() -> None:
    """Every plugins command has --help naming its purpose."""
    for command, words in (("list", "without importing"), ("show", "signature"), ("diagnose", "exit 1")):
        code, output = invoke(command, "--help")
        assert code == 0 and words in output, output


def test_list_all_and_one_group() -> None:
    """`list` shows every group's built-ins; `list GROUP` only that group; JSON is machine-readable."""
    code, output = invoke("list")
    assert code == 0
    for word in ("tensorboard", "gpt", "char", "cpu", "sample"):
        assert word in output
    code, output = invoke("list", "tokenizers", "--json")
    rows = json.loads(output)
    assert code == 0 and {row["group"] for row in rows} == {"tokenizers"}
    assert {"char"} <= {row["name"] for row in rows}


def test_pipeline_stages_are_listed_and_load() -> None:
    """The four pipeline stages are registered (group name with a dash works too) and load."""
    code, output = invoke("list", "pipeline-stages", "--json")
    assert code == 0 and {row["name"] for row in json.loads(output)} == {"pretrain", "sft", "reward", "preference"}
    code, output = invoke("diagnose", "pipeline_stages")
    assert code == 0, output


def test_unknown_group_and_name_exit_2_with_choices() -> None:
    """Usage mistakes exit 2 and list the valid choices."""
    code, output = invoke("list", "sink")
    assert code == 2 and "groups: sinks, models" in output
    code, output = invoke("show", "sinks", "tensorbord")
    assert code == 2 and "registered sinks: alerts, mlflow, prometheus, tensorboard, wandb" in output


def test_show_builtin_gives_module_summary_signature() -> None:
    """`show` loads one plugin and prints where it lives and how to call it."""
    code, output = invoke("show", "sinks", "mlflow", "--json")
    info = json.loads(output)
    assert code == 0 and info["state"] == "ok"
    assert info["module"] == "codex_ml.backends.mlflow" and info["kind"] == "class"
    assert info["summary"] == "One MLflow run per codex_ml run."
    assert info["signature"].startswith("MlflowSink(tracking_uri") and "experiment" in info["signature"]
    code, output = invoke("show", "tokenizers", "char")
    assert code == 0 and "CharTokenizer(chars" in output


@pytest.mark.usefixtures("third_party")
def test_show_third_party_and_broken() -> None:
    """A third-party plugin shows its distribution and first docstring line; a broken one exits 1 with the reason."""
    code, output = invoke("show", "datasets", "good", "--json")
    info = json.loads(output)
    assert code == 0
    assert (info["source"], info["summary"], info["api_version"]) == ("codex-cli-test 1.0", "Reads a test data set.", 1)
    assert info["signature"] == "read(path: str, limit: int = 10) -> list"
    code, output = invoke("show", "datasets", "broken")
    assert code == 1 and "the backend library is missing" in output


def test_diagnose_clean_checkout_exits_0() -> None:
    """With only the built-ins, diagnose finds nothing broken."""
    code, output = invoke("diagnose", "--json")
    report = json.loads(output)
    assert code == 0 and report["ok"] is True
    assert {p["state"] for p in report["plugins"]} <= {"ok", "planned", "missing-extra"}


@pytest.mark.usefixtures("third_party")
def test_diagnose_reports_the_broken_plugin_and_keeps_the_rest() -> None:
    """One broken plugin: exit 1, its error in the table, every other plugin still ok."""
    code, output = invoke("diagnose", "datasets")
    assert code == 1
    assert "datasets/broken" in output and "ImportError: the backend library is missing" in output
    assert "1 broken plugin(s)" in output
    code, output = invoke("diagnose", "--json")
    states = {p["name"]: p["state"] for p in json.loads(output)["plugins"]}
    assert code == 1 and states["broken"] == "error" and states["good"] == "ok" and states["char"] == "ok"


def test_console_script_lists_plugins(tmp_path: Path) -> None:
    """The installed `codex-ml` console script runs `plugins list` as a real process."""
    script = Path(sys.executable).parent / "codex-ml"
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([str(script), "plugins", "list"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for word in ("sinks", "tensorboard", "system_metric_collectors", "codex_ml.models.transformer:GPT"):
        assert word in done.stdout
