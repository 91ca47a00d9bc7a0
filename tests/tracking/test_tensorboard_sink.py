"""TensorBoard sink round trips, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea

from codex_ml.tracking import start_run


def _accumulator(run_dir: Path) -> ea.EventAccumulator:
    guidance = {ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0}  # 0 = keep every event
    acc = ea.EventAccumulator(str(run_dir / "tensorboard"), size_guidance=guidance)
    acc.Reload()
    return acc


def _f32(value: float) -> float:
    return float(np.float32(value))


def _tb_run(tmp_path: Path, name: str = "tb", **options):
    return start_run(name, output_root=tmp_path, flush_interval=0.05, enable_tensorboard=True, **options)


# Scalars round trip (float32, exact): tests/backends/test_sink_contract.py, the same checks for every sink.


def test_non_finite_scalars_survive(tmp_path: Path) -> None:
    with _tb_run(tmp_path) as run:
        run.log_metrics({"x": math.nan}, step=0)
        run.log_metrics({"x": math.inf}, step=1)
        run.log_metrics({"x": 7}, step=2)  # ints are logged as floats
    values = [e.value for e in _accumulator(run.paths.root).Scalars("x")]
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == 7.0


def test_histogram_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=1000)
    with_bad = np.concatenate([values, [np.nan, np.inf, -np.inf]])
    with _tb_run(tmp_path, histogram_bins=32) as run:
        run.log_histogram("weights/w1", with_bad, step=3)
        run.log_histogram("weights/w1", values * 2, step=4)

    events = _accumulator(run.paths.root).Histograms("weights/w1")
    assert [e.step for e in events] == [3, 4]
    first = events[0].histogram_value
    assert first.num == 1000  # the finite values only
    assert first.min == pytest.approx(values.min())
    assert first.max == pytest.approx(values.max())
    assert first.sum == pytest.approx(values.sum())
    assert first.sum_squares == pytest.approx(float(np.dot(values, values)))
    assert len(first.bucket) == len(first.bucket_limit) == 32
    assert sum(first.bucket) == 1000
    expected_counts, edges = np.histogram(values, bins=32)
    assert list(first.bucket) == [float(c) for c in expected_counts]
    assert list(first.bucket_limit) == pytest.approx(edges[1:].tolist())
    assert events[1].histogram_value.max == pytest.approx(2 * values.max())


def test_text_and_params(tmp_path: Path) -> None:
    params = {"model": {"n_layer": 4, "n_head": 2}, "lr": 3e-4, "note": "a|b"}
    with _tb_run(tmp_path, params=params) as run:
        run.log_text("samples/generated", "héllo wörld\nline two", step=12)
        run.log_text("samples/generated", "second", step=13)

    acc = _accumulator(run.paths.root)
    assert {"params", "samples/generated"} <= set(acc.Tags()["tensors"])
    texts = acc.Tensors("samples/generated")
    assert [t.step for t in texts] == [12, 13]
    assert [t.tensor_proto.string_val[0].decode("utf-8") for t in texts] == ["héllo wörld\nline two", "second"]
    table = acc.Tensors("params")[0].tensor_proto.string_val[0].decode("utf-8")
    assert "| model.n_layer | 4 |" in table
    assert "| model.n_head | 2 |" in table
    assert "| lr | 0.0003 |" in table
    assert "| note | a\\|b |" in table  # a '|' in a value must not break the markdown table
    # The text plugin reads these as text (the plugin name is what it filters on).
    assert acc.SummaryMetadata("params").plugin_data.plugin_name == "text"


def test_resume_adds_an_event_file_and_steps_continue(tmp_path: Path) -> None:
    with _tb_run(tmp_path, name="resumable") as run:
        for step in range(3):
            run.log_metrics({"loss": 1.0 + step}, step=step)
    with _tb_run(tmp_path, name="resumable", resume=True) as run2:
        run2.log_metrics({"loss": 10.0})  # no step: continues after the last one
        run2.log_metrics({"loss": 11.0})

    files = sorted((run.paths.root / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 2
    points = [(e.step, e.value) for e in _accumulator(run.paths.root).Scalars("loss")]
    assert points == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 10.0), (4, 11.0)]
