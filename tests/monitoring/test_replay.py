"""Replay into real backends: idempotent, and after an outage exactly the missing points.

The outage is real: a run logs with the sink on, then is resumed with the sink off (as if
the backend had been down), so the NDJSON log holds points the backend never got.
Backends are read back with their own readers (MlflowClient, EventAccumulator, .wandb).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codex_ml.monitoring.loading import load_metrics
from codex_ml.monitoring.replay import missing_points, replay
from codex_ml.monitoring.runs import UnknownFormatError
from codex_ml.tracking import start_run


pytestmark = pytest.mark.usefixtures("clean_backend_env")


def _log(run: Any, steps: range) -> None:
    for step in steps:
        run.log_metrics({"train/loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
        if step % 5 == 0:
            run.log_metrics({"eval/acc": step / 100}, step=step)


def _run_with_outage(tmp_path: Path, **sink: Any) -> Path:
    """Steps 0-9 reach the sink; steps 10-19 are logged while it is 'down' (off)."""
    with start_run("r", output_root=tmp_path, flush_interval=0.05, params={"lr": 0.1}, **sink) as run:
        _log(run, range(10))
    with start_run("r", output_root=tmp_path, flush_interval=0.05, resume=True) as run:
        _log(run, range(10, 20))
        run.log_metrics({"weird": math.nan}, step=20)
    return run.paths.root


def _expected() -> dict[str, Counter]:
    loss = Counter(range(20))
    return {"train/loss": loss, "lr": loss, "eval/acc": Counter(range(0, 20, 5)), "weird": Counter([20])}


def test_missing_points_counts_occurrences(tmp_path: Path) -> None:
    """A step logged twice is two points; a backend with one of them misses only the second."""
    path = tmp_path / "m.ndjson"
    path.write_text('{"v":1,"step":1,"time":1.0,"metrics":{"a":1,"b":2}}\n'
                    '{"v":1,"step":1,"time":2.0,"metrics":{"a":3}}\n'
                    '{"v":1,"step":2,"time":3.0,"metrics":{"a":4,"b":"NaN"}}\n')  # fmt: skip
    data = load_metrics(path)
    everything = missing_points(data, {})
    assert [(s, sorted(v)) for s, _, v in everything] == [(1, ["a", "b"]), (1, ["a"]), (2, ["a", "b"])]
    assert math.isnan(everything[2][2]["b"])
    todo = missing_points(data, {"a": {1: 1}, "b": {1: 1, 2: 1}})
    assert [(s, t, v) for s, t, v in todo] == [(1, 2.0, {"a": 3.0}), (2, 3.0, {"a": 4.0})]
    assert missing_points(data, {"a": {1: 2, 2: 1}, "b": {1: 1, 2: 1}}) == []


def test_mlflow_backfills_exactly_and_is_idempotent(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    root = _run_with_outage(tmp_path, enable_mlflow=True)
    first = replay(root, "mlflow", progress=False)
    assert first.sent == 10 + 10 + 2 + 1  # loss and lr 10-19, acc 10 and 15, weird 20
    again = replay(root, "mlflow", progress=False)
    assert again.sent == 0 and again.already_there == again.points

    import json

    saved = json.loads((root / "run.json").read_text())["backends"]["mlflow"]
    client = MlflowClient(saved["tracking_uri"])
    for key, steps in _expected().items():
        history = client.get_metric_history(saved["run_id"], key)
        assert Counter(m.step for m in history) == steps, key
    assert math.isnan(client.get_metric_history(saved["run_id"], "weird")[0].value)
    assert len(client.search_runs([client.get_experiment_by_name("codex_ml").experiment_id])) == 1


def test_mlflow_replay_into_another_store_finds_its_run_again(tmp_path: Path) -> None:
    """No MLflow during training: replay creates one run, tagged, and reuses it next time."""
    from mlflow.tracking import MlflowClient

    with start_run("plain", output_root=tmp_path, flush_interval=0.05, params={"model": {"n_layer": 2}}) as run:
        _log(run, range(7))
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    assert replay(run.paths.root, "mlflow", tracking_uri=uri, experiment="exp", progress=False).sent == 7 + 7 + 2
    assert replay(run.paths.root, "mlflow", tracking_uri=uri, experiment="exp", progress=False).sent == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert len(runs) == 1
    assert runs[0].data.params == {"model.n_layer": "2"} and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")] == list(range(7))


def test_tensorboard_backfills_exactly_and_is_idempotent(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea

    root = _run_with_outage(tmp_path, enable_tensorboard=True)
    assert replay(root, "tensorboard", progress=False).sent == 23
    assert replay(root, "tensorboard", progress=False).sent == 0
    acc = ea.EventAccumulator(str(root / "tensorboard"), size_guidance={ea.SCALARS: 0}, purge_orphaned_data=False)
    acc.Reload()
    for key, steps in _expected().items():
        assert Counter(e.step for e in acc.Scalars(key)) == steps, key
    loss = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert loss[15] == pytest.approx(1 / 16)


def test_wandb_offline_backfills_exactly_and_is_idempotent(tmp_path: Path) -> None:
    from codex_ml.backends.wandb import find_run_files, read_history

    root = _run_with_outage(tmp_path, enable_wandb=True)
    assert replay(root, "wandb", progress=False).sent == 23
    assert replay(root, "wandb", progress=False).sent == 0
    files = find_run_files(root)
    assert len(files) == 2  # the training session and the replay, one W&B run id
    assert len({f.name for f in files}) == 1
    rows = [row for path in files for row in read_history(path)]
    for key, steps in _expected().items():
        assert Counter(row["step"] for row in rows if key in row) == steps, key


def test_before_limits_the_replay_to_points_logged_earlier(tmp_path: Path) -> None:
    """``before`` (a resumed session's start, as a sink process back-fills) leaves out what was logged
    from then on: that session's own sink delivers it. Without it, the rest follows."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    root = _run_with_outage(tmp_path, enable_tensorboard=True)
    records = [json.loads(line) for line in (root / "metrics.ndjson").read_text().splitlines()]
    first_at_15 = next(r["time"] for r in records if r["step"] == 15)
    assert replay(root, "tensorboard", progress=False, before=first_at_15).sent == 5 + 5 + 1  # loss, lr 10-14, acc 10
    acc = ea.EventAccumulator(str(root / "tensorboard"), size_guidance={ea.SCALARS: 0}, purge_orphaned_data=False)
    acc.Reload()
    assert Counter(e.step for e in acc.Scalars("train/loss")) == Counter(range(15))
    assert replay(root, "tensorboard", progress=False).sent == 23 - 11


def test_system_metrics_are_replayed_on_their_axis(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea

    with start_run("s", output_root=tmp_path, flush_interval=0.05) as run:
        _log(run, range(3))
    lines = [f'{{"v":1,"time":{100.0 + i},"sample":{i},"rank":0,"cpu":{{"percent":{10.0 * i}}}}}\n' for i in range(4)]
    (run.paths.root / "system_metrics.jsonl").write_text("".join(lines))
    result = replay(run.paths.root, "tensorboard", progress=False)
    assert result.sent == 3 + 3 + 1 + 4
    acc = ea.EventAccumulator(str(run.paths.root / "tensorboard"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    cpu = acc.Scalars("system/cpu/percent")
    assert [e.step for e in cpu] == [0, 1, 2, 3]
    assert np.allclose([e.value for e in cpu], [0, 10, 20, 30])


def test_unknown_backend_lists_the_choices(tmp_path: Path) -> None:
    with start_run("u", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_metrics({"x": 1}, step=0)
    with pytest.raises(UnknownFormatError, match="tensorboard, mlflow, wandb"):
        replay(run.paths.root, "neptune", progress=False)
