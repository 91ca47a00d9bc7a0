"""MLflow sink round trips, read back with MlflowClient: file store, sqlite and a real server."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from codex_ml.backends import mlflow_utils
from codex_ml.tracking import start_run
from codex_ml.backends.names import KeyMapper, mlflow_name

LONG = "p" * 7000


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (creating its schema costs a few seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow_sqlite') / 'mlflow.db'}"


def _run(tmp_path: Path, name: str = "ml", **options: Any):
    return start_run(name, output_root=tmp_path, flush_interval=0.05, enable_mlflow=True, **options)


def _backend(run) -> dict[str, Any]:
    return json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]


def _client_and_id(run) -> tuple[MlflowClient, str]:
    state = _backend(run)
    return MlflowClient(tracking_uri=state["tracking_uri"]), state["run_id"]


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


# -- (a) the default local file store -------------------------------------------------
def test_default_file_store_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # MLflow 3.13+ refuses file stores without it
    params = {"model": {"n_layer": 4, "dims": {"embd": 64}}, "lr": 3e-4, "long": LONG, "longer": LONG + "q"}
    losses = [2.0, math.nan, 0.5, math.inf, 0.25]

    with _run(tmp_path, params=params, tags={"team": "core", "seed": 7}) as run:
        for step, loss in enumerate(losses):
            run.log_metrics({"train/loss": loss, "train/acc": step / 10}, step=step)

    assert run.close_report.complete, run.close_report
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") == "true"
    state = _backend(run)
    assert state["tracking_uri"] == (tmp_path / "ml" / "mlruns").resolve().as_uri()
    assert (tmp_path / "ml" / "mlruns").is_dir()

    client, run_id = _client_and_id(run)
    mlrun = client.get_run(run_id)
    assert mlrun.info.status == "FINISHED"
    assert mlrun.info.run_name == "ml"
    history = _history(client, run_id, "train/loss")
    assert [s for s, _ in history] == [0, 1, 2, 3, 4]
    assert history[0][1] == 2.0 and math.isnan(history[1][1]) and history[3][1] == math.inf
    assert [v for _, v in _history(client, run_id, "train/acc")] == [0.0, 0.1, 0.2, 0.3, 0.4]

    got = mlrun.data.params
    assert got["model.n_layer"] == "4" and got["model.dims.embd"] == "64" and got["lr"] == "0.0003"
    assert got["long"] == LONG[:6000] and got["longer"] == LONG[:6000]
    assert mlrun.data.tags["team"] == "core" and mlrun.data.tags["seed"] == "7"
    assert mlrun.data.tags["codex_ml.run_id"] == run.run_id

    # text and artifacts: tests/backends/test_sink_contract.py, the same checks for every sink

    err = capfd.readouterr().err
    clip_lines = _lines(err, "[monitoring] mlflow: param values longer than 6000")
    assert len(clip_lines) == 1, err  # two clipped params, one warning
    assert _lines(err, "[monitoring-error]") == []


def test_exception_inside_with_marks_run_failed(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with _run(tmp_path) as run:
            run.log_metric("loss", 1.5, step=0)
            raise RuntimeError("boom")
    client, run_id = _client_and_id(run)
    assert client.get_run(run_id).info.status == "FAILED"
    assert _history(client, run_id, "loss") == [(0, 1.5)]  # what was logged before still arrives


def test_close_killed(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.log_metric("loss", 1.0, step=0)
    report = run.close("KILLED")
    assert report.status == "KILLED" and report.complete
    client, run_id = _client_and_id(run)
    assert client.get_run(run_id).info.status == "KILLED"
    assert json.loads(run.paths.run_file.read_text())["status"] == "KILLED"


# -- (b, g) sqlite store and experiment name ------------------------------------------
def test_sqlite_store_and_experiment_name(tmp_path: Path, sqlite_uri: str) -> None:
    with _run(tmp_path, mlflow_tracking_uri=sqlite_uri, mlflow_experiment="codex-exp-sqlite", params={"a": {"b": 1}}) as run:
        for step in range(4):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    assert run.close_report.complete
    state = _backend(run)
    assert state["tracking_uri"] == sqlite_uri and state["experiment"] == "codex-exp-sqlite"

    client = MlflowClient(tracking_uri=sqlite_uri)
    experiment = client.get_experiment_by_name("codex-exp-sqlite")
    assert experiment is not None
    mlrun = client.get_run(state["run_id"])
    assert mlrun.info.experiment_id == experiment.experiment_id == state["experiment_id"]
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params == {"a.b": "1"}
    assert _history(client, state["run_id"], "loss") == [(s, 1.0 / (s + 1)) for s in range(4)]


# -- (c) a real tracking server ---------------------------------------------------------
def test_server_round_trip(tmp_path: Path, mlflow_server: str) -> None:
    source = tmp_path / "model-card.md"
    source.write_text("# card\n")
    with _run(tmp_path, mlflow_tracking_uri=mlflow_server, mlflow_experiment="codex-exp-server",
              params={"optim": {"name": "adamw", "betas": [0.9, 0.95]}}, tags={"stage": "pretrain"}) as run:
        for step in range(20):
            run.log_metrics({"train/loss": 5.0 - step * 0.25, "lr": 0.001}, step=step)
        run.log_metric("nan_metric", math.nan, step=3)
        run.log_text("sample", "generated text", step=19)
        run.log_artifact(source)
    assert run.close_report.complete, run.close_report

    state = _backend(run)
    assert state["tracking_uri"] == mlflow_server
    client = MlflowClient(tracking_uri=mlflow_server)
    mlrun = client.get_run(state["run_id"])
    assert mlrun.info.status == "FINISHED"
    assert client.get_experiment(mlrun.info.experiment_id).name == "codex-exp-server"
    assert _history(client, state["run_id"], "train/loss") == [(s, 5.0 - s * 0.25) for s in range(20)]
    assert math.isnan(_history(client, state["run_id"], "nan_metric")[0][1])
    assert mlrun.data.params == {"optim.name": "adamw", "optim.betas": "[0.9, 0.95]"}
    assert mlrun.data.tags["stage"] == "pretrain"
    dl = tmp_path / "dl"
    assert Path(client.download_artifacts(state["run_id"], "model-card.md", str(dl))).read_text() == "# card\n"
    text = Path(client.download_artifacts(state["run_id"], "text/sample/step_00000019.txt", str(dl)))
    assert text.read_text() == "generated text"


# -- (d) resume ----------------------------------------------------------------------------
def test_resume_reuses_the_mlflow_run_and_appends(tmp_path: Path, capfd) -> None:
    with _run(tmp_path, "again", params={"lr": 0.1}) as first:
        for step in range(3):
            first.log_metric("loss", float(step), step=step)
    first_state = _backend(first)

    with _run(tmp_path, "again", resume=True, params={"lr": 0.2, "batch": 8}) as second:
        second.log_metric("loss", 30.0)  # step continues at 3
        second.log_metric("loss", 40.0)
    second_state = _backend(second)

    assert second_state["run_id"] == first_state["run_id"]
    client, run_id = _client_and_id(second)
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    assert _history(client, run_id, "loss") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
    mlrun = client.get_run(run_id)
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params == {"lr": "0.1", "batch": "8"}  # MLflow params are immutable
    assert len(_lines(capfd.readouterr().err, "[monitoring] mlflow: param 'lr' changed")) == 1


# -- (e) keys MLflow rejects -----------------------------------------------------------------
BAD_KEYS = ["a@b", "x(y)", "../up", "/lead", "λ", "k" * 300]


@pytest.mark.parametrize(
    "store",
    [
        "sqlite",
        "file",
    ],
)
def test_illegal_keys_arrive_under_mapped_names(tmp_path: Path, sqlite_uri: str, store: str, capfd) -> None:
    uri = sqlite_uri if store == "sqlite" else None
    with _run(tmp_path, mlflow_tracking_uri=uri, close_timeout=3) as run:
        for step in range(2):
            run.log_metrics({key: float(i + 10 * step) for i, key in enumerate(BAD_KEYS)}, step=step)
    client, run_id = _client_and_id(run)
    metrics = client.get_run(run_id).data.metrics
    # A file store also cannot hold a name that is both a file and a folder ('_' and '_/lead').
    mapper = KeyMapper(mlflow_name, lambda message: None, path_like=store == "file")
    names = [mapper(k) for k in BAD_KEYS]
    expected = {name: float(i + 10) for i, name in enumerate(names)}
    assert metrics == expected
    assert len(set(expected)) == len(BAD_KEYS)
    for i, name in enumerate(names):
        assert _history(client, run_id, name) == [(0, float(i)), (1, float(i + 10))]
    assert "[monitoring-error]" not in capfd.readouterr().err


def test_colliding_keys_get_distinct_names_and_one_warning(tmp_path: Path, capfd) -> None:
    with _run(tmp_path) as run:
        run.log_metrics({"a@b": 1.0, "a#b": 2.0, "a(b": 3.0}, step=0)
        run.log_metrics({"a@b": 4.0, "a#b": 5.0, "a(b": 6.0}, step=1)
    client, run_id = _client_and_id(run)
    metrics = client.get_run(run_id).data.metrics
    assert len(metrics) == 3
    assert metrics["a_b"] == 4.0  # the first key seen keeps the plain mapped name
    assert sorted(metrics.values()) == [4.0, 5.0, 6.0]
    assert len(_lines(capfd.readouterr().err, "[monitoring] mlflow: metric names")) == 1


def test_collision_names_are_stable_across_resume(tmp_path: Path) -> None:
    with _run(tmp_path, "coll") as run:
        run.log_metrics({"a@b": 1.0}, step=0)
        run.log_metrics({"a_b": 2.0}, step=1)
    with _run(tmp_path, "coll", resume=True) as run:
        run.log_metrics({"a_b": 3.0}, step=2)
        run.log_metrics({"a@b": 4.0}, step=3)
    client, run_id = _client_and_id(run)
    series = {key: {v for _, v in _history(client, run_id, key)} for key in client.get_run(run_id).data.metrics}
    assert sorted(series.values(), key=min) == [{1.0, 4.0}, {2.0, 3.0}], series


# -- (f) many metrics in one batch ------------------------------------------------------------
def test_2500_metrics_in_one_record_go_through_in_chunks(tmp_path: Path, sqlite_uri: str) -> None:
    keys = [f"layer{i:04d}/grad_norm" for i in range(2500)]
    with _run(tmp_path, mlflow_tracking_uri=sqlite_uri) as run:
        run.log_metrics({k: float(i) for i, k in enumerate(keys)}, step=0)  # one record: 3 log_batch calls
        run.log_metrics({k: float(-i) for i, k in enumerate(keys)}, step=1)
    assert run.close_report.complete
    client, run_id = _client_and_id(run)
    assert client.get_run(run_id).data.metrics == {k: float(-i) for i, k in enumerate(keys)}
    for i in (0, 999, 1000, 1999, 2000, 2499):  # both sides of every chunk boundary
        assert _history(client, run_id, keys[i]) == [(0, float(i)), (1, float(-i))]


# -- backend failures must not duplicate or lose data silently ---------------------------------
def test_a_rejected_batch_is_not_stored_twice(tmp_path: Path) -> None:
    # 'a' and 'a/b' are legal MLflow names, but a file store cannot hold both (file vs folder).
    with _run(tmp_path, close_timeout=3) as run:
        run.log_metrics({"loss": 1.0, "a": 2.0, "a/b": 3.0}, step=0)
    client, run_id = _client_and_id(run)
    assert _history(client, run_id, "loss") == [(0, 1.0)]


def test_params_that_fail_are_retried_or_reported(tmp_path: Path) -> None:
    with _run(tmp_path, close_timeout=3) as run:
        run.log_params({"x": 1, "a": 2, "a/b": 3})  # the file store cannot hold 'a' and 'a/b'
    client, run_id = _client_and_id(run)
    params = client.get_run(run_id).data.params
    stats = run.close_report.sinks["mlflow"]
    # The file store cannot hold 'a' and 'a/b', so 'a/b' arrives under a hashed name; nothing is lost.
    mapper = KeyMapper(mlflow_name, lambda message: None, path_like=True)
    assert params == {mapper(k): v for k, v in {"x": "1", "a": "2", "a/b": "3"}.items()}, (params, stats)
    assert stats["undelivered"] == 0 and run.close_report.complete


# -- (h) fluent helpers ------------------------------------------------------------------------
@pytest.fixture
def fluent_mlflow(monkeypatch: pytest.MonkeyPatch):
    """Leave no active fluent run, experiment or global tracking URI behind."""
    from mlflow.tracking import fluent

    monkeypatch.setattr(fluent, "_active_experiment_id", None)  # restored after the test
    yield
    mlflow.end_run()
    mlflow.set_tracking_uri(None)


def test_mlflow_utils_helpers(tmp_path: Path, fluent_mlflow: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    folder = tmp_path / "outputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    (folder / "sub" / "b.txt").write_text("B")

    active = mlflow_utils.start_run(run_name="fluent", experiment="codex-fluent", run_dir=tmp_path)
    run_id = active.info.run_id
    logged = mlflow_utils.log_params({"model": {"n_layer": 2}, "bad(key)": "v", "long": LONG})
    mlflow_utils.log_metrics({"train/loss": 1.5, "acc@1": 0.5}, step=3)
    mlflow_utils.log_artifacts(folder, "outputs")
    mlflow.end_run()

    uri = (tmp_path / "mlruns").resolve().as_uri()
    assert mlflow.get_tracking_uri() == uri
    client = MlflowClient(tracking_uri=uri)
    mlrun = client.get_run(run_id)
    assert mlrun.info.status == "FINISHED"
    assert client.get_experiment(mlrun.info.experiment_id).name == "codex-fluent"
    assert mlrun.data.params == {"model.n_layer": "2", "bad_key_": "v", "long": LONG[:6000]}
    assert logged == mlrun.data.params
    assert _history(client, run_id, "train/loss") == [(3, 1.5)]
    assert _history(client, run_id, "acc_1") == [(3, 0.5)]
    listed = {a.path for a in client.list_artifacts(run_id, "outputs")}
    assert listed == {"outputs/a.txt", "outputs/sub"}
    assert [a.path for a in client.list_artifacts(run_id, "outputs/sub")] == ["outputs/sub/b.txt"]
