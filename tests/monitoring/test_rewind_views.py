"""After a rollback every reader shows the surviving timeline: each step once, with its new value.

A real run logs steps 1..8 (a NaN at step 8), rewinds to the checkpoint of step 5 (the rewind line
the trainer writes, through Run.log_event), then logs steps 6..10 again with other values. inspect,
export (Parquet, CSV, JSONL), plot, replay into TensorBoard, the live TensorBoard sink (its purge,
read back with TensorBoard's own EventAccumulator) and the health backtest all see steps 1..10 once.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea

from codex_ml.health.backtest import backtest_report
from codex_ml.monitoring.export import export
from codex_ml.monitoring.inspect import inspect_paths
from codex_ml.monitoring.loading import load, load_metrics
from codex_ml.monitoring.plot import draw
from codex_ml.monitoring.replay import replay
from codex_ml.tracking import start_run

STEPS = list(range(1, 11))


def _old(step: int) -> float:
    return math.nan if step == 8 else 1.0 + step  # the first life: a NaN at step 8 made the rule fire


def _new(step: int) -> float:
    return 100.0 + step  # values after the rollback, distinct from the first life


def _expected(step: int) -> float:
    return _new(step) if step > 5 else _old(step)


def _rewound_run(root: Path, name: str = "r", **options: object) -> Path:
    with start_run(name, output_root=root, flush_interval=0.05, **options) as run:
        for step in range(1, 9):
            run.log_metrics({"train/loss": _old(step), "lr": 0.1}, step=step)
            if step == 5:
                run.log_metrics({"val/loss": 0.5}, step=5)  # the checkpoint's own eval: never superseded
        # The clock here often returns one value for calls microseconds apart: the rewind must come strictly
        # after the records it supersedes, as it does in the trainer (a checkpoint load lies between them).
        time.sleep(0.01)
        run.log_event({"time": time.time(), "step": 5, "rule": "rewind", "severity": "warning", "metric": None,
                       "value": 8, "threshold": None, "message": "rewound from step 8 to the checkpoint of step 5",
                       "action": "rollback"})  # fmt: skip
        time.sleep(0.01)
        for step in range(6, 11):
            run.log_metrics({"train/loss": _new(step), "lr": 0.2}, step=step)
    return run.paths.root


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return _rewound_run(tmp_path, enable_tensorboard=True)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_the_log_keeps_every_line_and_the_loader_shows_each_step_once(run_dir: Path) -> None:
    """metrics.ndjson holds both lives of steps 6..8; load_metrics keeps only the second."""
    lines = [orjson.loads(line) for line in (run_dir / "metrics.ndjson").read_bytes().splitlines()]
    assert sorted(r["step"] for r in lines if "train/loss" in r["metrics"]) == sorted([*range(1, 9), *range(6, 11)])
    data = load_metrics(run_dir / "metrics.ndjson")
    assert data.series["train/loss"].steps.tolist() == STEPS
    assert all(_same(v, _expected(s)) for s, v in zip(STEPS, data.series["train/loss"].values.tolist()))
    assert data.series["val/loss"].steps.tolist() == [5]
    assert data.superseded == 4  # steps 6..8 and the health/events count the NaN event logged at step 8
    assert len(load_metrics(run_dir / "metrics.ndjson", rewound=True).series["train/loss"]) == 13


def test_inspect(run_dir: Path) -> None:
    """Count 10 per metric, the last value the new one, the superseded records reported."""
    (result,) = inspect_paths([run_dir])
    for key in ("train/loss", "lr"):
        assert result["metrics"][key]["count"] == 10
    assert result["metrics"]["train/loss"]["last"] == _new(10)
    assert result["metrics"]["train/loss"]["nan"] == 0  # the NaN of step 8 was rewound
    assert result["metrics"]["lr"]["last"] == 0.2
    assert result["superseded_records"] == 4
    assert result["health_by_rule"].get("rewind") == 1


@pytest.mark.parametrize("wide", [False, True])
def test_export_parquet_csv_jsonl(run_dir: Path, tmp_path: Path, wide: bool) -> None:
    """Every format and layout: 10 rows per metric, each step once, with the new values."""
    data = load(run_dir / "metrics.ndjson")
    tables = {}
    for fmt in ("parquet", "csv", "jsonl"):
        out = tmp_path / f"out-{wide}.{fmt}"
        export(data, out, fmt, wide=wide)
        if fmt == "parquet":
            tables[fmt] = pq.read_table(out).to_pylist()
        elif fmt == "csv":
            tables[fmt] = pcsv.read_csv(out).to_pylist()
        else:
            tables[fmt] = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    for fmt, rows in tables.items():
        if wide:
            got = [(r["step"], r["train/loss"]) for r in rows if r.get("train/loss") is not None]
        else:
            got = [(r["step"], r["value"]) for r in rows if r["key"] == "train/loss"]
        assert [s for s, _ in got] == STEPS, fmt
        assert all(_same(float(v), _expected(s)) for s, v in got), fmt


def test_plot_series_has_ten_points(run_dir: Path) -> None:
    """The train/loss curve is drawn through steps 1..10 once, in order."""
    drawing = draw([run_dir], patterns=["train/loss", "lr"], system=False)
    for ax, (_, key) in zip(drawing.figure.axes, drawing.panels):
        (line,) = [ln for ln in ax.get_lines() if not ln.get_gid()]  # the curve, not an event line
        assert line.get_xdata().tolist() == STEPS, key
    # The rewind (no metric) is marked on every panel; the NaN event that caused it stays on its own.
    assert drawing.marks == [2, 1]


def _scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    # TensorBoard's own reader, with its default purge of orphaned data (what the dashboard shows).
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _server_scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    # The reader `tensorboard --load_fast=false` serves from (it purges on a run's second SessionLog.START).
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.util import tensor_util

    acc = pea.EventAccumulator(str(folder), size_guidance={pea.TENSORS: 0})
    acc.Reload()
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def test_live_tensorboard_purges_the_rewound_steps(run_dir: Path) -> None:
    """The sink's rewind event makes TensorBoard discard steps 6..8 of the first life, in both of
    its Python readers (the RustBoard server keeps one point per step on its own)."""
    for read in (_scalars, _server_scalars):
        points = read(run_dir / "tensorboard", "train/loss")
        assert [s for s, _ in points] == STEPS, read.__name__
        assert all(_same(v, _expected(s)) for s, v in points), read.__name__
    assert replay(run_dir, "tensorboard", progress=False).sent == 0  # it already has the surviving timeline


def test_replay_into_tensorboard(tmp_path: Path) -> None:
    """A run without a live TensorBoard, replayed into one: each step once; again: nothing sent."""
    run_dir = _rewound_run(tmp_path)
    first = replay(run_dir, "tensorboard", progress=False)
    assert first.points == 10 + 10 + 1 + 1  # train/loss, lr, val/loss, health/events
    points = _scalars(run_dir / "tensorboard", "train/loss")
    assert [s for s, _ in points] == STEPS
    assert all(_same(v, _expected(s)) for s, v in points)
    assert replay(run_dir, "tensorboard", progress=False).sent == 0


def test_backtest_sees_each_step_once(run_dir: Path) -> None:
    """The backtest replays the surviving timeline (the NaN of step 8 was rewound, so no
    nonfinite event); rewound=True replays every line as logged and finds it, as the run did live."""
    report = backtest_report(run_dir)
    assert report.metrics_records == 10 + 1 + 1  # train steps, val/loss, the health/events count
    assert not [e for e in report.events if e.rule == "nonfinite"]
    assert [(e.rule, e.step) for e in report.recorded if e.rule == "nonfinite"] == [("nonfinite", 8)]
    everything = backtest_report(run_dir, rewound=True)
    assert everything.metrics_records == report.metrics_records + 4
    assert [(e.rule, e.step) for e in everything.events if e.rule == "nonfinite"] == [("nonfinite", 8)]


def test_tail_streams_as_written_with_a_rewind_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """tail shows both lives of steps 6..8, the rewind line between them."""
    from codex_ml.monitoring.tail import tail, text_printer

    tail(run_dir, text_printer, lines=100)
    out = capsys.readouterr().out.splitlines()
    rewind = next(i for i, line in enumerate(out) if line.startswith("[health] step 5 rewind warning: rewound from step 8"))
    steps = [int(line.split()[1]) for line in out if line.startswith("step ") and "train/loss" in line]
    assert steps == [*range(1, 9), *range(6, 11)]
    assert all("train/loss=10" not in line for line in out[:rewind])  # the new values come after it


def test_mlflow_keeps_both_lives_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow cannot delete history: steps 6..8 hold the rewound and the new point (docs/health.md);
    the rewound ones are older than the rewind. Replay finds nothing missing."""
    import json

    from mlflow.tracking import MlflowClient

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    run_dir = _rewound_run(tmp_path, enable_mlflow=True)
    state = json.loads((run_dir / "run.json").read_text())["backends"]["mlflow"]
    history = MlflowClient(tracking_uri=state["tracking_uri"]).get_metric_history(state["run_id"], "train/loss")
    per_step = {s: sorted(m.timestamp for m in history if m.step == s) for s in STEPS}
    assert [len(per_step[s]) for s in STEPS] == [1] * 5 + [2] * 3 + [1] * 2
    (rewind,) = [e for e in inspect_paths([run_dir])[0]["health_events"] if e["rule"] == "rewind"]
    assert all(per_step[s][0] < rewind["time"] * 1000 <= per_step[s][1] for s in (6, 7, 8))
    assert replay(run_dir, "mlflow", progress=False).sent == 0
