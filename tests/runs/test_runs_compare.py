"""runs compare: real runs (codex_ml.tracking.start_run) with differing params, compared as tables,
JSON and an image whose curves keep a one-step spike; a rewound run shows its surviving timeline;
user errors are one ``error:`` line and exit status 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from codex_ml.cli.runs_app import app
from codex_ml.runs.compare_data import MAX_DEFAULT_METRICS, open_runs, pick_metrics
from codex_ml.runs.compare_plot import plot_data
from codex_ml.tracking import start_run

SPIKE_STEP, SPIKE = 12_345, 50.0
STEPS = 20_000


def _loss(step: int) -> float:
    return 3.0 / math.sqrt(step + 1)


def _run(root: Path, name: str, params: dict, *, spike: bool = False, steps: int = 200, extra: int = 0) -> Path:
    """A finished run logging train/loss every step (a spike at SPIKE_STEP when asked), val/loss
    every 100 steps and ``extra`` more metrics."""
    with start_run(name, output_root=root, flush_interval=0.05, params=params) as run:
        for step in range(steps):
            values = {"train/loss": SPIKE if spike and step == SPIKE_STEP else _loss(step)}
            values.update({f"extra/m{i}": float(i) for i in range(extra)})
            if step % 100 == 0:
                values["val/loss"] = 1.1 * _loss(step)
            run.log_metrics(values, step=step)
    return run.paths.root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [
        _run(root, "base", {"training": {"lr": 1e-3, "seed": 0}, "model": {"n_layer": 2}}, spike=True, steps=STEPS),
        _run(root, "hot", {"training": {"lr": 3e-3, "seed": 0}, "model": {"n_layer": 2}, "data": {"shuffle": True}}),
        _run(root, "deep", {"training": {"lr": 1e-3, "seed": 0}, "model": {"n_layer": 4}}),
    ]


def _cli(*args: str | Path) -> object:
    return CliRunner().invoke(app, ["compare", *map(str, args)], env={"COLUMNS": "200"})


def test_table_shows_only_the_params_that_differ(runs: list[Path]) -> None:
    result = _cli(*runs)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("│")]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    rows = {row[0]: row[1:] for row in reversed(cells)}  # the first table a row name appears in wins
    assert rows["training.lr"] == ["0.001", "0.003", "0.001"]
    assert rows["model.n_layer"] == ["2", "2", "4"]
    assert rows["data.shuffle"] == ["—", "true", "—"]  # only one run has it: it differs
    assert "training.seed" not in rows  # the same everywhere: not shown
    assert "1 more the same in every run" in result.output
    assert rows["base"][:3] == ["0.02121", "0.02121", "50"]  # train/loss last, min, max (the spike)


def test_json(runs: list[Path]) -> None:
    result = _cli(*runs, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["label"] for r in data["runs"]] == ["base", "hot", "deep"]
    assert data["params"] == {"data.shuffle": {"hot": True}, "model.n_layer": {"base": 2, "hot": 2, "deep": 4},
                              "training.lr": {"base": 0.001, "hot": 0.003, "deep": 0.001}}  # fmt: skip
    assert list(data["metrics"]) == ["train/loss", "val/loss"]  # shared, losses first; health/ counts left out
    base = data["metrics"]["train/loss"]["base"]
    assert base == {"last": _loss(STEPS - 1), "last_step": STEPS - 1, "min": _loss(STEPS - 1), "max": SPIKE,
                    "points": STEPS, "non_finite": 0}  # fmt: skip
    assert data["metrics"]["val/loss"]["hot"]["points"] == 2 and "image" not in data


def test_image_keeps_the_spike(runs: list[Path], tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    opened = open_runs(runs)
    curves = plot_data(opened, ["train/loss"], max_points=200)["train/loss"]
    base = curves[0]
    assert [c.label for c in curves] == ["base", "hot", "deep"] and len({c.colour for c in curves}) == 3
    assert len(base.x) <= 200 < STEPS  # downsampled ...
    assert SPIKE_STEP in base.x and base.y[base.x.tolist().index(SPIKE_STEP)] == SPIKE  # ... and the spike is kept
    out = tmp_path / "plots" / "cmp.png"
    result = _cli(*runs, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["image"] == str(out)
    image = mpimg.imread(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 200 and image.shape[1] > 600


def test_runs_sharing_a_name_are_labelled_by_path(tmp_path: Path) -> None:
    a = _run(tmp_path / "one", "same", {"lr": 1})
    b = _run(tmp_path / "two", "same", {"lr": 1.0, "wd": None})
    opened = open_runs([a, b])
    assert [r.label for r in opened] == [str(a), str(b)]
    data = json.loads(_cli(a, b, "--json").output)
    assert data["params"] == {"wd": {str(b): None}}  # 1 and 1.0 are the same value; None is not "missing"


def test_default_metrics_are_capped_and_the_rest_named(tmp_path: Path) -> None:
    a, b = (_run(tmp_path, name, {}, steps=3, extra=MAX_DEFAULT_METRICS) for name in ("a", "b"))
    chosen, left_out = pick_metrics(open_runs([a, b]), [])
    assert len(chosen) == MAX_DEFAULT_METRICS and chosen[0] == "train/loss"
    assert len(left_out) == 2 and not set(chosen) & set(left_out)
    assert f"2 more shared metrics not compared: {', '.join(left_out)}" in _cli(a, b).output.replace("\n", " ")
    assert pick_metrics(open_runs([a, b]), ["extra/*"])[0] == [f"extra/m{i}" for i in range(MAX_DEFAULT_METRICS)]


def test_rewound_run_shows_its_surviving_timeline(tmp_path: Path) -> None:
    """After a rollback to the checkpoint of step 5, steps 6..8 are logged twice; compare sees the second life."""
    with start_run("rewound", output_root=tmp_path, flush_interval=0.05) as run:
        for step in range(1, 9):
            run.log_metrics({"train/loss": 1.0 + step}, step=step)
        run.log_event({"time": time.time(), "step": 5, "rule": "rewind", "severity": "warning", "metric": None,
                       "value": 8, "threshold": None, "message": "rewound from step 8 to the checkpoint of step 5",
                       "action": "rollback"})  # fmt: skip
        time.sleep(0.01)
        for step in range(6, 11):
            run.log_metrics({"train/loss": 100.0 + step}, step=step)
    other = _run(tmp_path, "other", {}, steps=10)
    curve = plot_data(open_runs([run.paths.root, other]), ["train/loss"])["train/loss"][0]
    assert curve.x.tolist() == list(range(1, 11))
    assert np.array_equal(curve.y, [2, 3, 4, 5, 6, 106, 107, 108, 109, 110])
    stats = json.loads(_cli(run.paths.root, other, "--json").output)["metrics"]["train/loss"]["rewound"]
    assert stats["points"] == 10 and stats["max"] == 110.0


@pytest.mark.parametrize(("args", "message"), [
    (["{a}"], "needs at least two run directories, got only"),
    (["{a}", "{root}/nope"], "nope: no such run directory"),
    (["{a}", "{root}"], "not a run directory"),
    (["{a}", "{a}/../hot"], "the same run is given twice"),
    (["{a}", "{b}", "--metric", "val/acc"], "--metric 'val/acc': no run has it"),
    (["{a}", "{b}", "-o", "{root}/cmp.xyz"], "cannot write a .xyz image"),
])  # fmt: skip
def test_user_errors_are_one_line(runs: list[Path], args: list[str], message: str) -> None:
    fill = {"a": runs[1], "b": runs[2], "root": runs[0].parent}
    result = CliRunner().invoke(app, ["compare", *(arg.format(**fill) for arg in args)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: runs compare: ") and message in lines[0], result.output


def test_console_script_error(runs: list[Path]) -> None:
    script = Path(sys.executable).with_name("codex-ml")
    done = subprocess.run([script, "runs", "compare", runs[1], runs[0].parent / "missing"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    missing = runs[0].parent / "missing"
    assert done.stderr.strip().splitlines() == [f"error: runs compare: {missing}: no such run directory"]


def test_non_finite_points_and_a_metric_only_some_runs_have(tmp_path: Path) -> None:
    with start_run("odd", output_root=tmp_path, flush_interval=0.05) as run:
        for step, value in enumerate([1.0, math.inf, 0.5, math.nan]):
            run.log_metrics({"train/loss": value, "grad/norm": 2.0 * step}, step=step)
    other = _run(tmp_path, "other", {}, steps=3)
    result = _cli(run.paths.root, other, "--json", "-m", "train/loss", "-m", "grad/*")
    metrics = json.loads(result.output)["metrics"]
    assert metrics["train/loss"]["odd"] == {"last": "NaN", "last_step": 3, "min": 0.5, "max": 1.0, "points": 4,
                                            "non_finite": 2}  # fmt: skip
    assert list(metrics["grad/norm"]) == ["odd"]  # the other run never logged it
    curves = plot_data(open_runs([run.paths.root, other]), ["train/loss"])["train/loss"]
    assert curves[0].x.tolist() == [0, 2] and curves[0].non_finite == 2
    table = _cli(run.paths.root, other, "-m", "grad/norm").output
    assert [line.split("│")[1:-1][1].strip() for line in table.splitlines() if line.startswith("│ other")] == ["—"]


def test_unreadable_lines_are_a_warning_on_stderr(runs: list[Path], tmp_path: Path) -> None:
    broken = _run(tmp_path, "broken", {}, steps=5)
    with open(broken / "metrics.ndjson", "ab") as handle:
        handle.write(b"not json\n")
    script = Path(sys.executable).with_name("codex-ml")
    done = subprocess.run([script, "runs", "compare", broken, runs[1], "--json"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["train/loss"]["broken"]["points"] == 5
    assert done.stderr.startswith(f"warning: {broken / 'metrics.ndjson'}:6: not JSON")
