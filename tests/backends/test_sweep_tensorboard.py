"""A sweep in TensorBoard: each trial writes the HParams plugin's session data, so the HParams tab of
``tensorboard --logdir sweeps/<sweep>`` lists the trials with their params and metrics.

Read back with TensorBoard's own code: the EventAccumulator and the hparams plugin's metadata parsers
(what each trial's event file holds), the hparams plugin's request handlers over a multiplexer of the
whole sweep directory (the experiment and the session groups the HParams tab shows), and a real
``tensorboard --logdir`` server (its default loader) answering the HParams tab's request.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups, metadata

from codex_ml.backends.tensorboard import view_line
from codex_ml.monitoring.ui import free_port, stop_process_group
from codex_ml.rundir.paths import RunPaths
from codex_ml.tracking import TrackingConfig, start_run

PARAMS = {"model": {"name": "tiny", "tied": True}, "layers": [2, 4], "note": None, "seed": 10**400, "eps": math.inf}


def _trial(sweep_dir: Path, trial: str, lr: float, losses: list[float], fail: bool = False) -> None:
    config = TrackingConfig(output_root=str(sweep_dir), sweep=sweep_dir.name, trial=trial, enable_tensorboard=True,
                            flush_interval=0.05)  # fmt: skip
    params = {**PARAMS, "training": {"lr": lr}}
    with pytest.raises(RuntimeError) if fail else _nothing():
        with start_run(trial, config=config, params=params) as run:
            for step, loss in enumerate(losses):
                run.log_metrics({"train/loss": loss + 0.5, "val/loss": loss}, step=step)
            if fail:
                raise RuntimeError("diverged")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _plugin_content(run_dir: Path, tag: str) -> bytes:
    acc = ea.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    assert tag in acc.Tags()["tensors"], acc.Tags()
    plugin_data = acc.SummaryMetadata(tag).plugin_data
    assert plugin_data.plugin_name == metadata.PLUGIN_NAME
    return plugin_data.content


def _hparams_backend(logdir: Path) -> backend_context.Context:
    """TensorBoard's hparams backend over ``logdir``, loaded as ``tensorboard --logdir`` loads it."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    return backend_context.Context(base_plugin.TBContext(logdir=str(logdir), data_provider=provider,
                                                          multiplexer=multiplexer))  # fmt: skip


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished sweep of three trials: two FINISHED, one FAILED."""
    root = tmp_path_factory.mktemp("tb") / "sweeps" / "lr"
    _trial(root, "trial-0", 1e-3, [2.0, 1.5])
    _trial(root, "trial-1", 3e-3, [2.0, 1.2, 1.1])
    _trial(root, "trial-2", 1e-2, [2.0, 9.0], fail=True)
    return root


def test_each_trial_holds_its_session_start_and_end(sweep_dir: Path) -> None:
    start = metadata.parse_session_start_info_plugin_data(
        _plugin_content(sweep_dir / "trial-1", metadata.SESSION_START_INFO_TAG))
    assert start.group_name == "trial-1"
    hparams = start.hparams
    assert hparams["training.lr"].number_value == 3e-3
    assert hparams["model.name"].string_value == "tiny"
    assert hparams["model.tied"].bool_value is True
    assert hparams["layers"].string_value == "[2, 4]"
    assert "note" not in hparams  # None has no type to show
    assert hparams["seed"].string_value == str(10**400) and hparams["eps"].string_value == "Infinity"
    assert start.start_time_secs > 0

    ends = {trial: metadata.parse_session_end_info_plugin_data(_plugin_content(sweep_dir / trial,
                                                                               metadata.SESSION_END_INFO_TAG))
            for trial in ("trial-0", "trial-2")}  # fmt: skip
    assert ends["trial-0"].status == api_pb2.STATUS_SUCCESS
    assert ends["trial-2"].status == api_pb2.STATUS_FAILURE
    assert ends["trial-0"].end_time_secs >= start.start_time_secs - 60


def test_the_hparams_tab_lists_every_trial_with_params_and_metrics(sweep_dir: Path) -> None:
    backend = _hparams_backend(sweep_dir)
    request_context = tb_context.RequestContext()
    experiment = get_experiment.Handler(request_context, backend, "", api_pb2.GetExperimentRequest()).run()
    infos = {info.name: info for info in experiment.hparam_infos}
    assert {"training.lr", "model.name", "model.tied", "layers"} <= set(infos)
    lr = infos["training.lr"]
    assert lr.type == api_pb2.DATA_TYPE_FLOAT64 and lr.differs
    assert (lr.domain_interval.min_value, lr.domain_interval.max_value) == (1e-3, 1e-2)
    assert not infos["model.name"].differs
    assert {(m.name.tag, m.name.group) for m in experiment.metric_infos} == {("train/loss", ""), ("val/loss", "")}

    response = list_session_groups.Handler(request_context, backend, "", _groups_request()).run()
    groups = {group.name: group for group in response.session_groups}
    assert sorted(groups) == ["trial-0", "trial-1", "trial-2"]
    assert response.total_size == 3
    assert groups["trial-1"].hparams["training.lr"].number_value == 3e-3
    val_loss = {name: _metric(group, "val/loss") for name, group in groups.items()}
    assert val_loss == {"trial-0": pytest.approx(1.5), "trial-1": pytest.approx(1.1), "trial-2": pytest.approx(9.0)}
    statuses = {name: group.sessions[0].status for name, group in groups.items()}
    assert statuses == {"trial-0": api_pb2.STATUS_SUCCESS, "trial-1": api_pb2.STATUS_SUCCESS,
                        "trial-2": api_pb2.STATUS_FAILURE}  # fmt: skip
    assert {group.sessions[0].name for group in groups.values()} == {f"trial-{i}/tensorboard" for i in range(3)}


def test_a_killed_trial_is_ended_by_its_resumed_session(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweeps" / "k"
    config = TrackingConfig(output_root=str(sweep_dir), sweep="k", trial="t0", enable_tensorboard=True,
                            flush_interval=0.05)  # fmt: skip
    run = start_run("t0", config=config, params={"lr": 0.1})
    run.log_metrics({"val/loss": 3.0}, step=0)
    run.close("KILLED")
    acc = ea.EventAccumulator(str(sweep_dir / "t0" / "tensorboard"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    assert metadata.SESSION_START_INFO_TAG in acc.Tags()["tensors"]
    assert metadata.SESSION_END_INFO_TAG not in acc.Tags()["tensors"]  # a KILLED session leaves it open

    with start_run("t0", config=config, resume=True, params={"lr": 0.1}) as run:
        run.log_metrics({"val/loss": 2.0}, step=1)
    end = metadata.parse_session_end_info_plugin_data(_plugin_content(sweep_dir / "t0", metadata.SESSION_END_INFO_TAG))
    assert end.status == api_pb2.STATUS_SUCCESS
    response = list_session_groups.Handler(tb_context.RequestContext(), _hparams_backend(sweep_dir), "",
                                           _groups_request()).run()  # fmt: skip
    (group,) = response.session_groups
    assert group.name == "t0" and group.sessions[0].status == api_pb2.STATUS_SUCCESS
    assert _metric(group, "val/loss") == pytest.approx(2.0)


def test_a_run_outside_a_sweep_writes_no_hparams_data(tmp_path: Path) -> None:
    with start_run("plain", output_root=tmp_path, enable_tensorboard=True, params={"lr": 0.1}) as run:
        run.log_metrics({"x": 1.0}, step=0)
    acc = ea.EventAccumulator(str(run.paths.tensorboard), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    assert not [tag for tag in acc.Tags()["tensors"] if tag.startswith("_hparams_/")]
    assert "HParams" not in view_line(run.paths)


def test_a_trials_view_line_names_the_sweep_dir(sweep_dir: Path) -> None:
    line = view_line(RunPaths(sweep_dir / "trial-0"))
    assert f"tensorboard --logdir {sweep_dir / 'trial-0' / 'tensorboard'} " in line
    assert line.endswith(f"all trials (HParams tab): tensorboard --logdir {sweep_dir} --host 127.0.0.1")


def _groups_request() -> api_pb2.ListSessionGroupsRequest:
    """What the HParams tab asks for: the first page, every status shown (its default)."""
    statuses = [api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING]
    return api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=statuses)


def _metric(group: Any, tag: str) -> float:
    return next(m.value for m in group.metric_values if m.name.tag == tag)


def test_a_real_tensorboard_server_shows_the_sweep_in_the_hparams_tab(tmp_path: Path) -> None:
    """``tensorboard --logdir sweeps/<sweep>`` as documented (its default loader), asked what the HParams tab asks."""
    sweep_dir = tmp_path / "sweeps" / "lr"
    _trial(sweep_dir, "t0", 1e-3, [2.0, 1.5])
    _trial(sweep_dir, "t1", 3e-3, [2.0, 9.0], fail=True)
    config = TrackingConfig(output_root=str(sweep_dir), sweep="lr", trial="t2", enable_tensorboard=True,
                            flush_interval=0.05)  # fmt: skip
    run = start_run("t2", config=config, params={"training": {"lr": 0.1}})
    run.log_metrics({"val/loss": 5.0}, step=0)
    run.close("KILLED")
    # TensorBoard reads a run's event files in name order, and a name starts with the second it was made
    # in, then the pid and a per-process counter: two sessions in one second of one process can sort
    # backwards once the counter passes 9 (a long test process). A real resume comes seconds later.
    time.sleep(1.05 - time.time() % 1)
    with start_run("t2", config=config, resume=True, params={"training": {"lr": 0.1}}) as run:
        run.log_metrics({"val/loss": 4.0}, step=1)

    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep_dir), "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    with open(tmp_path / "tensorboard.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    expected = {"t0": (1e-3, "STATUS_SUCCESS", 1.5), "t1": (3e-3, "STATUS_FAILURE", 9.0),
                "t2": (0.1, "STATUS_SUCCESS", 4.0)}  # t2: its resumed session's last value  # fmt: skip
    try:
        # The server loads event files in the background: t2's second session may come a poll later.
        groups = _served_session_groups(f"http://127.0.0.1:{port}", 3, process, tmp_path / "tensorboard.log",
                                        until=lambda got: _table(got) == expected)  # fmt: skip
    finally:
        stop_process_group(process)
    assert _table(groups) == expected


def _table(groups: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Each session group as (training.lr, its status, its val/loss) by trial name."""
    return {g["name"]: (g["hparams"].get("training.lr"), g["sessions"][0]["status"],
                        next((m.get("value") for m in g["metricValues"] if m["name"]["tag"] == "val/loss"), None))
            for g in groups}  # fmt: skip


def _served_session_groups(base: str, expected: int, process: subprocess.Popen, log: Path,
                           until: Any = None) -> list[dict[str, Any]]:  # fmt: skip
    """POST the HParams tab's session_groups request until ``expected`` groups come back (the server loads
    the logdir in the background) and ``until(groups)`` holds; the last answer once 90 s are up."""
    body = json.dumps({"startIndex": 0, "sliceSize": 100, "allowedStatuses": [
        "STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}).encode()  # fmt: skip
    deadline, groups = time.monotonic() + 90, []
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        request = urllib.request.Request(f"{base}/data/plugin/hparams/session_groups", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                groups = json.load(response).get("sessionGroups", [])
        except OSError:
            groups = []  # not listening yet
        if len(groups) >= expected and (until is None or until(groups)):
            return groups
        time.sleep(0.2)
    if len(groups) >= expected:
        return groups  # never as wanted: the caller's assertion says how it differs
    pytest.fail(f"the HParams tab listed {len(groups)} trials, expected {expected}; log: {log.read_text()[-3000:]}")
