"""benchmarks/bench_runs_query.py end to end on tiny data, and its generator against codex_ml's own reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import runs_query_data as data  # noqa: E402


def test_generated_runs_read_back_as_the_generator_says(tmp_path: Path) -> None:
    """Every file is in the run-directory format: codex_ml's readers see the curves the facts describe."""
    from codex_ml.rundir.reader import metric_series
    from codex_ml.rundir.run_files import read_json

    root, facts, seconds = data.ensure_runs(tmp_path, runs=48, steps=100, n_metrics=5, workers=2)
    assert seconds is not None and len(facts) == 48
    assert data.ensure_runs(tmp_path, runs=48, steps=100, n_metrics=5)[2] is None  # the marker: reused
    for fact in facts:
        run_dir = root / fact["run_id"]
        series = metric_series(run_dir / "metrics.ndjson")
        assert sorted(series) == sorted(data.metric_keys(5))
        val = [v for _, v in series["val/loss"]]
        grad = [v for _, v in series["train/grad_norm"]]
        assert (min(val), val[-1], max(grad), grad[-1]) == (
            fact["val_min"], fact["val_last"], fact["gn_max"], fact["gn_last"])
        assert read_json(run_dir / "params.json")["training.lr"] == fact["lr"]
        assert read_json(run_dir / "tags.json")["stage"] == fact["stage"]
        assert read_json(run_dir / "run.json")["run_name"] == fact["name"] == run_dir.name
        assert read_json(run_dir / "summary.json")["metrics"]["val/loss"] == fact["val_last"]
    # the two questions differ on this data, so a benchmark answering the wrong one is caught
    assert data.expected_ids(facts) != data.expected_ids(facts, aggregate=False)


def test_quick_benchmark_runs_and_its_answers_agree(tmp_path: Path) -> None:
    """--quick prints the table, and codex_ml, MLflow (both paths) and the generator agree on both questions."""
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_runs_query.py"), "--quick", "--repeat", "1",
         "--data-dir", str(tmp_path / "data"), "--out", str(out)],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answers: AGREE" in done.stdout
    assert "| warm, in process |" in done.stdout
    raw = json.loads(out.read_text())
    facts = json.loads((tmp_path / "data" / "shape.json").read_text())["facts"]
    by_id = {f["run_id"]: f["name"] for f in facts}
    assert set(raw["codex"]["names"]) == {by_id[i] for i in data.expected_ids(facts)}
    assert set(raw["mlflow"]["names"]) == set(raw["codex"]["names_last"]) == {
        by_id[i] for i in data.expected_ids(facts, aggregate=False)}
    assert set(raw["codex"]["names"]) != set(raw["mlflow"]["names"])
    # the same question in MLflow (search_runs + get_metric_history over the bulk-loaded curves)
    assert set(raw["mlflow_history"]["names"]) == set(raw["codex"]["names"])
    assert raw["history_rows"] == 50 * 200 * 2 and raw["mlflow_history"]["calls"] > 0
    assert "| warm, in process | same question (search_runs + get_metric_history) |" in done.stdout
