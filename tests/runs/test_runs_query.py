"""``codex-ml runs query`` over real runs written by codex_ml.tracking.start_run: the issue's
question, value at a step, the leaderboard, a running run, and bad expressions on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codex_ml.cli.__main__ import app
from codex_ml.runs.grammar import QueryError
from codex_ml.runs.query_command import query_command
from codex_ml.tracking import start_run

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

# name, training.lr (None: not set), stage tag, val/loss at steps 0, 100, 200
RUNS = [
    ("pre-a", 1e-4, "pretrain", [2.5, 1.7, 1.9]),   # dipped below 1.8, ended above: a last-value filter misses it
    ("pre-b", 5e-4, "pretrain", [2.5, 2.0, 1.85]),  # small lr, never below 1.8
    ("pre-c", 3e-3, "pretrain", [2.4, 1.6, 1.5]),   # below 1.8, but lr too large
    ("sft-d", 3e-3, "sft", [2.2, 2.1, 2.05]),        # the SFT stage
    ("pre-e", None, "pretrain", [1.5, 1.4, 1.3]),    # no training.lr at all
]
QUESTION = "params.training.lr < 1e-3 and metrics.val/loss.min < 1.8 or tags.stage = 'sft'"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("q") / "runs"
    for name, lr, stage, losses in RUNS:
        params = {"model": {"n_layer": 2}, **({"training": {"lr": lr}} if lr is not None else {})}
        with start_run(name, output_root=out, flush_interval=0.05, params=params, tags={"stage": stage},
                       health=False) as run:
            for step in range(0, 201, 20):
                run.log_metrics({"train/loss": 3.0 - step / 100}, step=step)
                if step % 100 == 0:
                    run.log_metrics({"val/loss": losses[step // 100]}, step=step)
    return out


def names(root: Path, capsys: pytest.CaptureFixture[str], where: str | None, **options: object) -> list[str]:
    options = {"sort": None, "limit": None, "columns": None, "csv_output": False, **options}
    query_command(root, where=where, json_output=True, **options)  # type: ignore[arg-type]
    return [record["name"] for record in json.loads(capsys.readouterr().out)]


@pytest.mark.parametrize(("where", "expected"), [
    # "which runs with lr < 1e-3 reached val loss below 1.8 at any point, or came from the SFT stage?"
    (QUESTION, ["pre-a", "sft-d"]),
    (f"({QUESTION.replace(' or ', ') or (')})", ["pre-a", "sft-d"]),
    # on the last value only (all MLflow's search can do), pre-a is missed
    ("params.training.lr < 1e-3 and metrics.val/loss.last < 1.8 or tags.stage = 'sft'", ["sft-d"]),
    ("metrics.val/loss@150 < 1.8 and metrics.val/loss@99 > 2", ["pre-a", "pre-c"]),  # at or before a step
    ("metrics.val/loss@99 >= 2.5", ["pre-a", "pre-b"]),
    ("name ~ '^pre-[ab]$' or params.training.lr is null", ["pre-a", "pre-b", "pre-e"]),
    ("not params.training.lr < 1e-3", ["pre-c", "pre-e", "sft-d"]),       # includes the run without lr
    ("params.training.lr not in (1e-4, 5e-4)", ["pre-c", "sft-d"]),       # only runs that have an lr
    ("metrics.train/loss.count = 11 and metrics.val/loss.count = 3 and status = 'finished'",
     ["pre-a", "pre-b", "pre-c", "pre-e", "sft-d"]),
    ("duration < 1h and start > '2000-01-01'", ["pre-a", "pre-b", "pre-c", "pre-e", "sft-d"]),
    ("params.model.n_layer = 3", []),
])
def test_query_answers(root: Path, capsys: pytest.CaptureFixture[str], where: str, expected: list[str]) -> None:
    assert sorted(names(root, capsys, where)) == expected


def test_leaderboard_sort_and_limit(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert names(root, capsys, None, sort="metrics.val/loss.min", limit=3) == ["pre-e", "pre-c", "pre-a"]
    assert names(root, capsys, "tags.stage = 'pretrain'", sort="-params.training.lr") == [
        "pre-c", "pre-b", "pre-a", "pre-e"]  # pre-e has no lr: last, descending too


def test_a_running_run_shows_its_current_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with start_run("live", output_root=tmp_path, flush_interval=0.05, health=False) as run:
        run.log_metrics({"val/loss": 2.0}, step=0)
        run.flush()
        assert names(tmp_path, capsys, "status = 'RUNNING' and metrics.val/loss.min > 1.5") == ["live"]
        run.log_metrics({"val/loss": 1.0}, step=10)
        run.flush()
        assert names(tmp_path, capsys, "metrics.val/loss.min > 1.5") == []
        assert names(tmp_path, capsys, "metrics.val/loss@5 = 2 and metrics.val/loss@10 = 1") == ["live"]
    assert names(tmp_path, capsys, "status = 'FINISHED'") == ["live"]


def test_nested_root_selects_by_run_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A root holding runs/ and sweeps/<sweep>/<trial>: run_id (the path under the root) picks a sweep."""
    for output_root, name, loss in ((tmp_path / "runs", "base", 2.0), (tmp_path / "sweeps" / "lr", "t0", 1.5),
                                    (tmp_path / "sweeps" / "lr", "t1", 1.2)):
        with start_run(name, output_root=output_root, flush_interval=0.05, health=False) as run:
            run.log_metrics({"val/loss": loss}, step=0)
    query_command(tmp_path, where="run_id ~ '^sweeps/lr/'", sort="-metrics.val/loss.min", limit=None,
                  json_output=True, csv_output=False, columns="run_id,metrics.val/loss.min")
    assert json.loads(capsys.readouterr().out) == [
        {"run_id": "sweeps/lr/t0", "metrics.val/loss.min": 1.5}, {"run_id": "sweeps/lr/t1", "metrics.val/loss.min": 1.2}]


def test_errors_come_before_the_runs_are_read(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match=r"^--where: unknown field 'lr': did you mean params.lr.*at column 1: lr < 1$"):
        query_command(tmp_path / "missing", where="lr < 1", sort=None, limit=None, json_output=False,
                      csv_output=False, columns=None)


def test_cli_table(root: Path) -> None:
    result = runner.invoke(app, ["runs", "query", str(root), "-w", QUESTION], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"2 of 5 runs under {root} where" in result.stdout
    shown = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("│")]
    assert shown == ["pre-a", "sft-d"]


def test_cli_query_and_csv(root: Path) -> None:
    result = runner.invoke(app, ["runs", "query", str(root), "--where", QUESTION, "--csv", "--columns",
                                 "name,params.training.lr,metrics.val/loss.min", "--sort", "name"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["name,params.training.lr,metrics.val/loss.min", "pre-a,0.0001,1.7",
                                          "sft-d,0.003,2.05"]


@pytest.mark.parametrize(("argv", "column", "words"), [
    (["--where", "params.training.lr < 1e-3 and (metrics.val/loss.min < 1.8 or tags.stage = sft)"], 75,
     "unquoted value 'sft'"),
    (["--where", "metrics.val/loss.min < 1.8 or"], 30, "expected a field"),
    (["--where", "name ~ '(?=pre)'"], 8, "regular expression DuckDB cannot use"),  # fine for Python, not RE2
    (["--sort", "-val/loss"], 2, "unknown field 'val/loss'"),
])
def test_cli_bad_input_is_one_error_line(root: Path, argv: list[str], column: int, words: str) -> None:
    result = runner.invoke(app, ["runs", "query", str(root), *argv])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --"), result.stderr
    assert words in lines[0] and f"at column {column}: " in lines[0], lines[0]
    assert result.stdout == ""


def test_console_script(root: Path) -> None:
    """The installed `codex-ml` script: the leaderboard as JSON, and a bad expression (exit 2, one line)."""
    script = REPO / ".venv" / "bin" / "codex-ml"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "codex_ml.cli"]
    env = {**os.environ, "COLUMNS": "120"}
    done = subprocess.run([*command, "runs", "query", str(root), "--sort", "-metrics.val/loss.min", "--limit", "2",
                           "--json"], capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [r["name"] for r in json.loads(done.stdout)] == ["sft-d", "pre-b"]
    bad = subprocess.run([*command, "runs", "query", str(root), "--where", "metrics.val/loss.min <"],
                         capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "error: --where: expected a value (a number, a 'quoted string', null, true or false), but the expression "
        "ended at column 23: metrics.val/loss.min <"]
