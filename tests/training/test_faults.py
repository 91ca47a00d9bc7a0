"""Fault injection (``training.fault``): parsing, config errors, and what each fault does to a real tiny run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from typer.testing import CliRunner

from codex_ml.cli.__main__ import app
from codex_ml.training.config import ConfigError, load_config
from codex_ml.training.faults import Fault, FaultError, FaultPlan, parse_fault, parse_faults
from codex_ml.training.trainer import train
from trainer_helpers import records, series, tiny_config, tracking_for

REPO = Path(__file__).resolve().parents[2]
MB = 10**6
#: No periodic work between steps, so the gap between two step records is the step itself.
QUIET = ["training.eval_interval=100", "training.checkpoint_interval=100", "training.histogram_interval=100",
         "training.sample_interval=100"]


@pytest.mark.parametrize(("token", "expected"), [
    ("nan@300", Fault("nan", 300, 300, None)),
    ("nan@3-5", Fault("nan", 3, 5, None)),
    ("spike@500:x20", Fault("spike", 500, 500, 20.0)),
    ("spike@5:2.5", Fault("spike", 5, 5, 2.5)),
    ("spike@5", Fault("spike", 5, 5, 20.0)),
    ("hang@400:30s", Fault("hang", 400, 400, 30.0)),
    ("hang@4:500ms", Fault("hang", 4, 4, 0.5)),
    ("hang@4:1.5m", Fault("hang", 4, 4, 90.0)),
    ("hang@4:forever", Fault("hang", 4, 4, math.inf)),
    ("hang_lock@7:2", Fault("hang_lock", 7, 7, 2.0)),
    ("slow_data@200:0.5s", Fault("slow_data", 200, None, 0.5)),
    ("slow_data@200-250:0.5s", Fault("slow_data", 200, 250, 0.5)),
    ("leak@100:10MB", Fault("leak", 100, None, 10e6)),
    ("leak@100:1MiB", Fault("leak", 100, None, float(2**20))),
    ("leak@100", Fault("leak", 100, None, 10e6)),
    (" nan@1 ", Fault("nan", 1, 1, None)),
])  # fmt: skip
def test_tokens_parse(token: str, expected: Fault) -> None:
    """Each documented form, with its default argument and default window."""
    assert parse_fault(token) == expected


@pytest.mark.parametrize(("token", "message"), [
    ("nan@x", "'nan@x': expected <kind>@<step>[:<arg>]"),
    ("nan", "'nan': expected <kind>@<step>[:<arg>]"),
    ("@5", "'@5': expected <kind>@<step>[:<arg>]"),
    ("nan@-1", "'nan@-1': expected <kind>@<step>[:<arg>]"),
    ("boom@5", "'boom@5': unknown fault kind 'boom' (valid: hang, hang_lock, leak, nan, slow, slow_data, spike)"),
    ("nan@0", "'nan@0': steps start at 1"),
    ("nan@5-3", "'nan@5-3': steps start at 1 and a window is <first>-<last> with first <= last"),
    ("nan@5:x2", "'nan@5:x2': nan takes no argument"),
    ("spike@5:abc", "'spike@5:abc': spike takes a factor like x20, got 'abc'"),
    ("spike@5:x0", "spike takes a factor like x20, got 'x0'"),
    ("hang@5:soon", "'hang@5:soon': hang takes a duration like 2s, 500ms, 1.5m or forever, got 'soon'"),
    ("slow_data@5:-1s", "slow_data takes a duration"),
    ("leak@5:lots", "'leak@5:lots': leak takes a size like 10MB, 512KiB or 1GB, got 'lots'"),
])  # fmt: skip
def test_bad_tokens_say_what_is_wrong(token: str, message: str) -> None:
    """A bad token is a FaultError quoting it and the form expected."""
    with pytest.raises(FaultError) as caught:
        parse_fault(token)
    assert message in str(caught.value)


@pytest.mark.parametrize("override", [
    "training.fault=nan@5,spike@8:x20", "training.fault=[nan@5, spike@8:x20]", "training.fault=' nan@5 , spike@8:x20 '",
])  # fmt: skip
def test_comma_separated_and_list_forms_are_the_same(override: str) -> None:
    """A comma-separated string and a YAML list give the same faults."""
    plan = parse_faults(load_config(overrides=[override]).training.fault)
    assert plan is not None and [f.kind for f in plan.faults] == ["nan", "spike"]


def test_no_fault_is_no_plan() -> None:
    """The default, null and an empty string set no fault, so the trainer installs no wrapper."""
    assert load_config().training.fault is None
    assert parse_faults(None) is None and parse_faults("") is None and parse_faults([]) is None


def test_config_load_names_the_key_and_every_bad_token() -> None:
    """Bad tokens are config problems under training.fault, all reported at once."""
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=["training.fault=[nan@x, ok@1, spike@2]", "training.max_steps=0"])
    problems = caught.value.problems
    assert ("training.fault: 'nan@x': expected <kind>@<step>[:<arg>][@rank<k>], e.g. nan@300, spike@500:x20, "
            "slow_data@200-300:0.5s, slow@1:50ms@rank1") in problems
    assert any(p.startswith("training.fault: 'ok@1': unknown fault kind 'ok'") for p in problems)
    assert len(problems) == 3  # nan@x, ok@1 and max_steps; spike@2 is fine
    with pytest.raises(ConfigError, match="training.fault: expected a string or a list of strings"):
        load_config(overrides=["training.fault=5"])


def test_one_shot_faults_fire_once_per_step_sustained_ones_every_step() -> None:
    """A step trained again (after a rollback) does not get its NaN again; slow_data and leak keep going."""
    plan = parse_faults("nan@2,slow_data@2-3:0.2s,leak@3:1KB")
    assert plan is not None
    forward = plan.forward(lambda: (None, torch.tensor(1.5)))
    batches = plan.batches(type("Source", (), {"next": lambda self: "batch"})())

    def run_step(step: int) -> tuple[float, float]:
        plan.begin(step)
        start = time.perf_counter()
        assert batches.next() == "batch"
        return float(forward()[1]), time.perf_counter() - start

    loss, waited = run_step(2)
    assert math.isnan(loss) and waited >= 0.2
    loss, waited = run_step(2)  # the same step again: no NaN, but the data is still slow
    assert loss == 1.5 and waited >= 0.2
    for step in (3, 4, 4):
        loss, waited = run_step(step)
        assert loss == 1.5
    assert waited < 0.1 and plan.leaked_bytes == 3000


def test_bad_fault_on_train_model_is_one_error_and_exit_2(tmp_path: Path) -> None:
    """train-model: exit 2 through the config error path, nothing written."""
    result = CliRunner().invoke(app, ["train-model", "--config", str(REPO / "configs/training/tiny.yaml"),
                                      "--output-root", str(tmp_path), "training.fault=nan@x"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: invalid config")
    assert "training.fault: 'nan@x': expected <kind>@<step>[:<arg>]" in result.output
    assert not any(tmp_path.iterdir())


def test_train_model_override_injects_a_fault(tmp_path: Path, one_thread: None) -> None:
    """codex-ml train-model ... training.fault=nan@2: said on stderr, NaN from step 2 in metrics.ndjson."""
    result = CliRunner().invoke(app, ["train-model", "--config", str(REPO / "configs/training/tiny.yaml"), "--no-progress",
                                      "--output-root", str(tmp_path), "--run-name", "t", "training.max_steps=3", *QUIET,
                                      "training.fault=nan@2"])
    assert result.exit_code == 0, result.output
    assert "[train] fault injection on (training.fault): nan@2" in result.output
    loss = dict(series(tmp_path / "t", "train/loss"))
    assert math.isfinite(loss[1]) and loss[2] == "NaN"


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Train on one CPU thread (the CI machine's cores are shared), as the brief for these runs asks."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_watching_rss(root: Path, name: str, *overrides: str) -> tuple[Path, int]:
    """Train a tiny 12-step run (unless overridden); return its directory and how far this process's RSS rose above its start."""
    proc = psutil.Process()
    start = peak = proc.memory_info().rss
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, proc.memory_info().rss)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        train(tiny_config("training.max_steps=12", *QUIET, *overrides), tracking_for(root, name))
    finally:
        done.set()
        watcher.join()
    return root / name, peak - start


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Any]:
    """A clean run and the same run with a spike, slow data, a leak and two hangs (one of each, apart)."""
    root = tmp_path_factory.mktemp("faults")
    _train_watching_rss(root, "warm-up", "training.max_steps=2")  # the first run in a process adds ~100 MB of start-up
    clean, clean_growth = _train_watching_rss(root, "clean")
    faulty, growth = _train_watching_rss(
        root, "faulty", "training.fault=[spike@8:x20, slow_data@3-4:0.3s, leak@2-9:16MB, hang@6:2s, hang_lock@11:1s]")
    return {"clean": clean, "faulty": faulty, "clean_growth": clean_growth, "growth": growth}


def test_spike_scales_that_steps_loss_and_grad_norm(runs: dict[str, Any]) -> None:
    """Same seed, same batches: identical until step 8, where loss and grad norm are exactly 20x, then it trains on."""
    clean, faulty = (dict(series(runs[k], "train/loss")) for k in ("clean", "faulty"))
    assert sorted(faulty) == list(range(1, 13))
    assert all(faulty[s] == clean[s] for s in range(1, 8))  # slow data, leak and hang change no number
    assert math.isclose(faulty[8], 20 * clean[8], rel_tol=1e-5)
    norms = [dict(series(runs[k], "train/grad_norm")) for k in ("clean", "faulty")]
    assert math.isclose(norms[1][8], 20 * norms[0][8], rel_tol=1e-4)
    assert all(math.isfinite(faulty[s]) and faulty[s] < 2 * clean[s] for s in range(9, 13))  # clipping kept it alive


def test_slow_data_shows_in_data_wait(runs: dict[str, Any]) -> None:
    """Steps 3-4 wait at least 0.3 s for data; the others wait far less."""
    waits = dict(series(runs["faulty"], "time/data_wait_s"))
    assert all(waits[s] >= 0.3 for s in (3, 4)), waits
    assert all(waits[s] < 0.15 for s in waits if s not in (3, 4)), waits


def test_hangs_show_as_gaps_between_step_records(runs: dict[str, Any]) -> None:
    """hang@6:2s and hang_lock@11:1s: the record of that step comes ~2 s / ~1 s after the one before."""
    times = {r["step"]: r["time"] for r in records(runs["faulty"] / "metrics.ndjson") if "train/loss" in r["metrics"]}
    gaps = {s: times[s] - times[s - 1] for s in range(2, 13)}
    assert 2.0 <= gaps[6] < 3.5 and 1.0 <= gaps[11] < 2.5, gaps
    assert all(gap < 0.9 for s, gap in gaps.items() if s not in (3, 4, 6, 11)), gaps
    step_s = dict(series(runs["faulty"], "time/step_s"))
    assert step_s[6] >= 2.0 and step_s[11] >= 1.0


def test_leak_grows_rss(runs: dict[str, Any]) -> None:
    """leak@2-9:16MB holds 8 x 16 MB; the clean run's RSS stays far below that."""
    assert runs["growth"] >= 100 * MB, runs
    assert runs["clean_growth"] < 20 * MB, runs


def test_nan_at_step_5(tmp_path: Path, one_thread: None) -> None:
    """nan@5: steps 1-4 finite; step 5's loss and grad norm NaN; with no health action the weights are NaN after."""
    train(tiny_config("training.max_steps=7", *QUIET, "training.fault=nan@5"), tracking_for(tmp_path, "nan"))
    loss = dict(series(tmp_path / "nan", "train/loss"))
    norm = dict(series(tmp_path / "nan", "train/grad_norm"))
    assert all(math.isfinite(loss[s]) and math.isfinite(norm[s]) for s in range(1, 5))
    assert loss[5] == "NaN" and norm[5] == "NaN"  # NDJSON spells a NaN "NaN"
    assert loss[6] == loss[7] == "NaN"
    texts = records(tmp_path / "nan" / "text.ndjson")  # the run ends normally, with a sample that says why it is empty
    assert [t["text"] for t in texts] == ["[no sample: the model's weights are not finite]"]


def test_hydra_override_injects_a_fault(tmp_path: Path) -> None:
    """python -m codex_ml.cli.main training.fault=nan@3 reaches the trainer."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CODEX_ML_CONFIG_DIR")}
    done = subprocess.run(
        [sys.executable, "-m", "codex_ml.cli.main", "training=tiny", "training.max_steps=4", *QUIET,
         "training.progress=false", "training.fault=nan@3", f"tracking.output_root={tmp_path}", "tracking.run_name=h"],
        cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[train] fault injection on (training.fault): nan@3" in done.stderr
    loss = dict(series(tmp_path / "h", "train/loss"))
    assert math.isfinite(loss[2]) and loss[3] == "NaN"
