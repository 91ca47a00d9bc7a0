"""The Run itself: statuses, the run-directory files it writes, names and output roots it
refuses, closed runs, missing optional packages, and backpressure without loss."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import torch

from codex_ml.errors import CodexMLError, OutputRootError, RunClosedError, RunNameError
from codex_ml.tracking import CloseReport, RunExistsError, TrackingConfig, start_run
from codex_ml.rundir.reader import iter_records, read_metrics

SRC = Path(__file__).resolve().parents[2] / "src"


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token!r}")


def strict_json(path: Path) -> Any:
    """Load a JSON file, refusing NaN/Infinity tokens."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)


def strict_ndjson(path: Path) -> list[dict[str, Any]]:
    """Every line of an NDJSON file, parsed strictly."""
    return [json.loads(line, parse_constant=_refuse_constant) for line in path.read_text(encoding="utf-8").splitlines()]


def _start(tmp_path: Path, name: str = "core", **options: Any):
    """A run under ``tmp_path`` with a fast writer unless the test asks otherwise."""
    options.setdefault("flush_interval", 0.05)
    return start_run(name, output_root=str(tmp_path), **options)


# -- statuses ------------------------------------------------------------------------


def test_context_manager_closes_finished(tmp_path: Path) -> None:
    """Leaving the with-block normally writes status FINISHED to summary.json and run.json."""
    with _start(tmp_path) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    summary = strict_json(run.paths.summary)
    run_file = strict_json(run.paths.run_file)
    assert summary["status"] == run_file["status"] == "FINISHED"
    assert summary["run_name"] == run_file["run_name"] == "core"
    assert summary["run_id"] == run_file["run_id"] == run.run_id
    assert summary["end_time"] >= summary["start_time"]
    assert isinstance(run.close_report, CloseReport) and run.close_report.status == "FINISHED"


def test_context_manager_closes_failed_on_exception(tmp_path: Path) -> None:
    """An exception inside the with-block propagates and the run is closed FAILED, with
    everything logged before it on disk."""
    with pytest.raises(RuntimeError, match="boom"):
        with _start(tmp_path) as run:
            run.log_metrics({"loss": 1.0}, step=0)
            raise RuntimeError("boom")
    assert strict_json(run.paths.summary)["status"] == "FAILED"
    assert strict_json(run.paths.run_file)["status"] == "FAILED"
    assert [r["step"] for r in strict_ndjson(run.paths.metrics)] == [0]


def test_context_manager_closes_killed_on_keyboard_interrupt(tmp_path: Path) -> None:
    """Ctrl-C inside the with-block closes the run KILLED."""
    with pytest.raises(KeyboardInterrupt):
        with _start(tmp_path) as run:
            raise KeyboardInterrupt
    assert strict_json(run.paths.summary)["status"] == "KILLED"


def test_close_is_idempotent_and_rejects_unknown_status(tmp_path: Path) -> None:
    """close() twice returns the same report; an unknown status is a ValueError."""
    run = _start(tmp_path)
    with pytest.raises(ValueError, match="status must be one of"):
        run.close("DONE")
    first = run.close()
    assert run.close("FAILED") is first
    assert strict_json(run.paths.summary)["status"] == "FINISHED"


def test_close_report_counts_records(tmp_path: Path) -> None:
    """With no sinks, close() reports every record written and complete=True."""
    run = _start(tmp_path)
    for step in range(7):
        run.log_metrics({"loss": 1.0}, step=step)
    run.log_text("sample", "hi", step=0)
    report = run.close()
    assert (report.status, report.records, report.complete, report.sinks) == ("FINISHED", 8, True, {})


def test_flush_makes_records_readable_before_close(tmp_path: Path) -> None:
    """After flush() the records are in metrics.ndjson while the run is still open."""
    run = _start(tmp_path, flush_interval=30.0)
    for step in range(5):
        run.log_metrics({"loss": float(step)}, step=step)
    run.flush()
    assert [r["step"] for r in read_metrics(run.paths.metrics)] == [0, 1, 2, 3, 4]
    run.close()


# -- names and output roots ----------------------------------------------------------


def test_existing_run_without_resume_raises(tmp_path: Path) -> None:
    """Starting a run under a taken name without resume=True raises RunExistsError and leaves
    the first run's files intact."""
    with _start(tmp_path, "taken") as run:
        run.log_metrics({"loss": 1.0}, step=0)
    before = run.paths.metrics.read_bytes()
    with pytest.raises(RunExistsError, match="--resume") as info:
        _start(tmp_path, "taken")
    assert isinstance(info.value, CodexMLError) and isinstance(info.value, FileExistsError)
    assert run.paths.metrics.read_bytes() == before
    assert strict_json(run.paths.summary)["status"] == "FINISHED"


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize(
    "name",
    ["..", ".", "a/b", "/abs", "../escape", "x\x00y", "C:\\x", "C:x", "a\\b", "tab\there", " ", "x" * 201],
    ids=["dotdot", "dot", "slash", "absolute", "parent", "nul", "drive-backslash", "drive", "backslash", "control", "blank", "too-long"],
)
def test_bad_run_names_raise_and_create_nothing(tmp_path: Path, name: str) -> None:
    """Names that are empty or could escape the output root raise RunNameError (a
    CodexMLError and ValueError) before anything is created."""
    root = tmp_path / "runs"
    outside = tmp_path.parent
    before = set(os.listdir(outside))
    with pytest.raises(RunNameError) as info:
        start_run(name, output_root=str(root), flush_interval=0.05)
    assert isinstance(info.value, CodexMLError) and isinstance(info.value, ValueError)
    assert not root.exists()
    assert _tree(tmp_path) == set()
    assert set(os.listdir(outside)) == before


def test_empty_run_name_raises(tmp_path: Path) -> None:
    """An explicitly empty run name is an error, not a request for a generated name."""
    root = tmp_path / "runs"
    try:
        run = start_run("", output_root=str(root), flush_interval=0.05)
    except RunNameError:
        assert not root.exists()
        return
    run.close()
    pytest.fail(f"start_run('') created run {run.name!r} instead of raising RunNameError")


def test_output_root_under_a_regular_file_raises(tmp_path: Path) -> None:
    """An output root that cannot be created fails at start_run with OutputRootError naming it."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    root = blocker / "runs"
    with pytest.raises(OutputRootError) as info:
        start_run("demo", output_root=str(root), flush_interval=0.05)
    assert isinstance(info.value, CodexMLError) and isinstance(info.value, OSError)
    assert str(root) in str(info.value)
    assert blocker.read_text() == "not a directory"


def test_default_run_name_is_generated(tmp_path: Path) -> None:
    """With no name at all, a run-YYYYmmdd-HHMMSS-xxxx name is generated under the root."""
    with start_run(output_root=str(tmp_path), flush_interval=0.05) as run:
        pass
    assert run.name.startswith("run-") and run.paths.root == tmp_path / run.name


def test_unknown_option_and_bad_config_are_rejected(tmp_path: Path) -> None:
    """start_run options are TrackingConfig fields; a typo or a bad value fails before any file."""
    with pytest.raises(TypeError, match="unknown tracking option"):
        start_run("x", output_root=str(tmp_path), flush_intervall=0.05)
    with pytest.raises(ValueError, match="flush_interval"):
        TrackingConfig(flush_interval=0)
    assert _tree(tmp_path) == set()


# -- closed runs ---------------------------------------------------------------------


def test_logging_after_close_raises_run_closed_error(tmp_path: Path) -> None:
    """Every logging method refuses a closed run with RunClosedError (a CodexMLError)."""
    artifact = tmp_path / "a.txt"
    artifact.write_text("x")
    run = _start(tmp_path)
    run.close()
    calls = [
        lambda: run.log_metrics({"loss": 1.0}, step=0),
        lambda: run.log_metric("loss", 1.0),
        lambda: run.log_histogram("w", [1.0, 2.0]),
        lambda: run.log_text("t", "x"),
        lambda: run.log_params({"a": 1}),
        lambda: run.set_tags({"a": "b"}),
        lambda: run.log_artifact(artifact),
    ]
    for call in calls:
        with pytest.raises(RunClosedError, match="'core' is closed"):
            call()
    assert run.paths.metrics.read_bytes() == b""
    assert not run.paths.artifacts.exists()


# -- what the run writes -------------------------------------------------------------


@pytest.mark.parametrize("source", ["numpy", "torch", "list"])
def test_histograms_are_written_with_counts_and_non_finite_tallies(tmp_path: Path, source: str) -> None:
    """A histogram record has edges (bins+1), counts summing to the finite count, min/max,
    sum, and separate NaN/Inf counts."""
    values = [0.0, 1.0, 2.0, 3.0, math.nan, math.inf, -math.inf]
    data = {"numpy": np.array(values), "torch": torch.tensor(values), "list": values}[source]
    with _start(tmp_path, histogram_bins=8) as run:
        run.log_histogram("layer/w", data, step=4)
    (record,) = strict_ndjson(run.paths.histograms)
    assert (record["name"], record["step"], record["v"]) == ("layer/w", 4, 1)
    assert len(record["counts"]) == 8 and len(record["edges"]) == 9
    assert sum(record["counts"]) == record["count"] == 4
    assert (record["min"], record["max"], record["sum"], record["sum_squares"]) == (0.0, 3.0, 6.0, 14.0)
    assert (record["nan_count"], record["inf_count"]) == (1, 2)
    assert record["edges"][0] == 0.0 and record["edges"][-1] == 3.0


def test_histogram_is_copied_at_log_time(tmp_path: Path) -> None:
    """Mutating the array after log_histogram does not change what is written."""
    values = np.ones(10)
    with _start(tmp_path, flush_interval=30.0) as run:
        run.log_histogram("w", values, step=0)
        values[:] = 100.0
    (record,) = strict_ndjson(run.paths.histograms)
    assert record["min"] == record["max"] == 1.0


def test_all_nan_histogram_has_zero_count(tmp_path: Path) -> None:
    """A histogram of only NaNs is written with count 0 and nan_count set (no crash)."""
    with _start(tmp_path) as run:
        run.log_histogram("w", [math.nan, math.nan], step=0)
    (record,) = strict_ndjson(run.paths.histograms)
    assert (record["count"], record["nan_count"], sum(record["counts"])) == (0, 2, 0)


def test_text_goes_to_text_ndjson(tmp_path: Path) -> None:
    """log_text writes name, step and the exact (unicode, multi-line) text; non-str is refused."""
    text = "héllo ✓\nsecond line \"quoted\""
    with _start(tmp_path) as run:
        run.log_text("sample/0", text, step=2)
        with pytest.raises(TypeError, match="expected str"):
            run.log_text("sample/1", b"bytes", step=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="must not be empty"):
            run.log_text("", "x")
    records = strict_ndjson(run.paths.text)
    assert [(r["name"], r["step"], r["text"]) for r in records] == [("sample/0", 2, text)]
    assert run.paths.metrics.read_bytes() == b""


@dataclasses.dataclass
class _Optim:
    lr: float = 0.001
    betas: tuple[float, float] = (0.9, 0.95)


def test_params_are_flattened_and_merged_into_params_json(tmp_path: Path) -> None:
    """Nested dicts and dataclasses become dotted keys; later log_params calls merge."""
    params = {"model": {"n_layer": 4, "dims": {"embd": 32}}, "optim": _Optim(), "seed": 1, "path": Path("/x")}
    with _start(tmp_path, params=params) as run:
        run.log_params({"model": {"n_layer": 6}, "extra": None, "scalar": np.float32(0.5)})
    assert strict_json(run.paths.params) == {
        "model.n_layer": 6,
        "model.dims.embd": 32,
        "optim.lr": 0.001,
        "optim.betas": [0.9, 0.95],
        "seed": 1,
        "path": "/x",
        "extra": None,
        "scalar": 0.5,
    }


def test_tags_are_written_as_strings(tmp_path: Path) -> None:
    """Tags from start_run and set_tags land in tags.json, values as strings, merged."""
    with _start(tmp_path, tags={"team": "nlp", "gpus": 8}) as run:
        run.set_tags({"gpus": 4, "stage": "sft"})
        with pytest.raises(TypeError, match="tag name must be str"):
            run.set_tags({1: "x"})  # type: ignore[dict-item]
    assert strict_json(run.paths.tags) == {"team": "nlp", "gpus": "4", "stage": "sft"}


def test_log_artifact_copies_file_into_artifacts(tmp_path: Path) -> None:
    """log_artifact copies the bytes into artifacts/ (optionally renamed) and returns the copy;
    missing files and names with a path are refused."""
    source = tmp_path / "config.yaml"
    source.write_bytes(b"lr: 0.1\n\x00binary")
    with _start(tmp_path / "runs") as run:
        copy = run.log_artifact(source)
        renamed = run.log_artifact(str(source), name="final.yaml")
        with pytest.raises(FileNotFoundError):
            run.log_artifact(tmp_path / "missing.txt")
        with pytest.raises(ValueError, match="plain file name"):
            run.log_artifact(source, name="sub/evil.yaml")
        with pytest.raises(ValueError, match="plain file name"):
            run.log_artifact(source, name="..")
        source.write_bytes(b"changed after logging")
    assert copy == run.paths.artifacts / "config.yaml"
    assert renamed == run.paths.artifacts / "final.yaml"
    assert copy.read_bytes() == renamed.read_bytes() == b"lr: 0.1\n\x00binary"
    assert sorted(p.name for p in run.paths.artifacts.iterdir()) == ["config.yaml", "final.yaml"]


def test_summary_holds_last_values_with_nan_encoded(tmp_path: Path) -> None:
    """summary.json (strict JSON) holds each metric's last value, non-finite ones spelled out,
    plus last_step and the record count."""
    with _start(tmp_path) as run:
        run.log_metrics({"loss": 3.0, "acc": 0.1}, step=0)
        run.log_metrics({"loss": math.nan}, step=1)
        run.log_metrics({"grad": math.inf, "acc": 0.5}, step=2)
    summary = strict_json(run.paths.summary)
    assert summary["metrics"] == {"loss": "NaN", "acc": 0.5, "grad": "Infinity"}
    assert summary["last_step"] == 2
    assert summary["records"] == 3
    assert summary["errors"] == []


def test_summary_after_resume_keeps_earlier_metrics(tmp_path: Path) -> None:
    """'Last value of every metric' still holds for metrics only logged before a resume, and
    last_step continues from the first session."""
    with _start(tmp_path, "res") as first:
        first.log_metrics({"a": 1.0}, step=0)
    with _start(tmp_path, "res", resume=True) as second:
        second.log_metrics({"b": 2.0})
    summary = strict_json(second.paths.summary)
    assert summary["metrics"] == {"a": 1.0, "b": 2.0}
    assert summary["last_step"] == 1


def test_params_json_is_strict_json_with_non_finite_values(tmp_path: Path) -> None:
    """A NaN or Inf param value must not make params.json invalid JSON."""
    with _start(tmp_path, params={"lr": math.nan, "clip": math.inf}) as run:
        pass
    strict_json(run.paths.params)


def test_unencodable_text_does_not_lose_the_rest_of_its_batch(tmp_path: Path) -> None:
    """A bad text record must not take the valid metrics logged with it down."""
    run = _start(tmp_path, flush_interval=30.0)  # one batch, drained at close
    for step in range(5):
        run.log_metrics({"loss": float(step)}, step=step)
    run.log_text("sample", "bad \ud800 surrogate", step=0)
    report = run.close()
    assert [r["step"] for r in strict_ndjson(run.paths.metrics)] == [0, 1, 2, 3, 4]
    # The text itself is kept too, as a \u escape that reads back verbatim.
    assert [r["text"] for r in iter_records(run.paths.text)] == ["bad \ud800 surrogate"]
    assert report.complete


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy overflow on the writer thread
def test_unbinnable_histogram_does_not_lose_the_rest_of_its_batch(tmp_path: Path) -> None:
    """A histogram that cannot be binned must not take the metrics logged with it down."""
    run = _start(tmp_path, flush_interval=30.0)
    for step in range(5):
        run.log_metrics({"loss": float(step)}, step=step)
    run.log_histogram("w", [-1e308, 1e308], step=0)
    run.close()
    assert [r["step"] for r in strict_ndjson(run.paths.metrics)] == [0, 1, 2, 3, 4]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy overflow on the writer thread
def test_histogram_overflowing_sums_are_not_null(tmp_path: Path) -> None:
    """Histogram number fields are never null: an overflowing sum is spelled 'Infinity'."""
    with _start(tmp_path) as run:
        run.log_histogram("w", [1e200, 2e200], step=0)
    (record,) = strict_ndjson(run.paths.histograms)
    assert record["sum_squares"] is not None


# -- backpressure --------------------------------------------------------------------


def test_backpressure_keeps_every_record(tmp_path: Path) -> None:
    """With a small queue the hot path waits for the writer instead of dropping: all 20,000
    records logged from the main thread are in metrics.ndjson, in order."""
    run = _start(tmp_path, max_queue=1000)
    for step in range(20_000):
        run.log_metrics({"loss": float(step)}, step=step)
    report = run.close()
    assert report.records == 20_000 and report.complete
    lines = run.paths.metrics.read_bytes().splitlines()
    assert len(lines) == 20_000
    steps = [orjson.loads(line)["step"] for line in lines]
    assert steps == list(range(20_000))


# -- missing optional packages -------------------------------------------------------

_HIDDEN_PACKAGE_CHECK = r"""
import importlib.util, json, os, sys
module, flag, root = sys.argv[1], sys.argv[2], sys.argv[3]
out = {"visible": importlib.util.find_spec(module) is not None}
from codex_ml.errors import CodexMLError, MissingExtraError
from codex_ml.tracking import start_run
try:
    start_run("demo", output_root=root, **{flag: True})
except MissingExtraError as exc:
    out.update(error=str(exc), extra=exc.extra, codex=isinstance(exc, CodexMLError),
               import_error=isinstance(exc, ImportError))
out["root_created"] = os.path.exists(root)
print(json.dumps(out))
"""


def _site_without(tmp_path: Path, hidden: str) -> Path:
    """A directory of symlinks to every site-packages entry except the ``hidden`` package."""
    site = Path(orjson.__file__).resolve().parents[1]
    shim = tmp_path / "site"
    shim.mkdir()
    for entry in site.iterdir():
        if entry.name != hidden and not entry.name.endswith(".pth"):
            (shim / entry.name).symlink_to(entry)
    return shim


@pytest.mark.parametrize(
    ("flag", "module"),
    [("enable_tensorboard", "tensorboard"), ("enable_mlflow", "mlflow"), ("enable_wandb", "wandb")],
)
def test_missing_optional_package_raises_missing_extra_error(tmp_path: Path, flag: str, module: str) -> None:
    """In a real interpreter where the backend package is not importable (site-packages
    replaced by a copy without it), enabling its sink raises MissingExtraError naming the pip
    extra, before the output root is created."""
    import importlib.util

    assert importlib.util.find_spec(module) is not None, f"{module} must be installed for the control"
    shim = _site_without(tmp_path, module)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{shim}", "PYTHONNOUSERSITE": "1"}
    root = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-S", "-c", _HIDDEN_PACKAGE_CHECK, module, flag, str(root)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["visible"] is False
    assert out["extra"] == module
    assert f"pip install 'codex-ml[{module}]'" in out["error"]
    assert out["codex"] and out["import_error"]
    assert out["root_created"] is False


def test_flush_returns_once_the_records_are_in_the_file(tmp_path: Path) -> None:
    """flush() waits for the write, not only for the queue to empty: a batch whose histogram takes a
    while to bin used to leave the text record behind it unwritten when flush() returned."""
    import numpy as np

    run = start_run("flushed", output_root=str(tmp_path), flush_interval=5.0)
    try:
        for step in range(3):
            run.log_histogram("w", np.random.default_rng(step).normal(size=4_000_000), step=step)
            run.log_text("sample", f"text {step}", step=step)
            run.flush()
            lines = run.paths.text.read_text().splitlines()
            assert len(lines) == step + 1, lines
    finally:
        run.close()
