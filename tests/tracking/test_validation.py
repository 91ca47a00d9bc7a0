"""Hot-path validation of ``Run.log_metrics``: what is accepted, what is refused, and that a
refused call writes nothing at all (checked in the real metrics.ndjson after close)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from codex_ml.tracking import start_run
from codex_ml.tracking.validation import INT64_MAX, INT64_MIN


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every line of an NDJSON file, parsed strictly."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def run(tmp_path: Path):
    """An open run with a fast writer; closed after the test if the test did not."""
    r = start_run("validation", output_root=str(tmp_path), flush_interval=0.05)
    yield r
    r.close()


BAD_VALUES = {
    "bool": True,
    "str": "1.0",
    "none": None,
    "list": [1.0],
    "numpy_vector": np.array([1.0, 2.0]),
    "numpy_one_element_vector": np.array([1.0]),
    "torch_vector": torch.tensor([1.0, 2.0]),
    "numpy_bool": np.bool_(True),
    "torch_bool": torch.tensor(True),
    "complex": 1 + 2j,
}


@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_value_raises_type_error_naming_key_and_writes_nothing(run, value: Any) -> None:
    """A bad value raises TypeError naming its key; the valid keys of the same call are
    not written either (validation happens before anything is queued)."""
    with pytest.raises(TypeError, match="'bad/value'"):
        run.log_metrics({"good/first": 1.0, "bad/value": value, "good/last": 2.0}, step=3)
    run.log_metrics({"after": 5.0}, step=4)
    run.close()
    records = _lines(run.paths.metrics)
    assert records == [{"v": 1, "step": 4, "time": records[0]["time"], "metrics": {"after": 5.0}}]


@pytest.mark.parametrize("key", [1, 2.5, None, ("a",), b"bytes"], ids=["int", "float", "none", "tuple", "bytes"])
def test_non_string_key_raises_type_error(run, key: Any) -> None:
    """Metric names must be str; anything else is a TypeError and nothing is written."""
    with pytest.raises(TypeError, match="metric names must be str"):
        run.log_metrics({"ok": 1.0, key: 1.0}, step=0)
    run.close()
    assert run.paths.metrics.read_bytes() == b""


def test_empty_key_raises_value_error(run) -> None:
    """An empty metric name is a ValueError and nothing of the call is written."""
    with pytest.raises(ValueError, match="must not be empty"):
        run.log_metrics({"ok": 1.0, "": 2.0}, step=0)
    run.close()
    assert run.paths.metrics.read_bytes() == b""


def test_non_mapping_metrics_raises_type_error(run) -> None:
    """log_metrics needs a dict; a list of pairs is refused with a TypeError."""
    with pytest.raises(TypeError, match="dict of name -> number"):
        run.log_metrics([("loss", 1.0)], step=0)  # type: ignore[arg-type]


def test_zero_dim_scalars_are_stored_as_plain_numbers(run) -> None:
    """0-d numpy and torch values are accepted and stored as JSON numbers of the right kind."""
    run.log_metrics(
        {
            "np_float32": np.float32(1.5),
            "np_float64": np.float64(2.25),
            "np_int64": np.int64(7),
            "np_0d_array": np.array(1.5),
            "torch_float": torch.tensor(2.5),
            "torch_int": torch.tensor(3),
            "torch_float16": torch.tensor(0.5, dtype=torch.float16),
            "py_int": 4,
            "py_float": 0.125,
        },
        step=0,
    )
    run.close()
    (record,) = _lines(run.paths.metrics)
    metrics = record["metrics"]
    assert metrics == {
        "np_float32": 1.5,
        "np_float64": 2.25,
        "np_int64": 7,
        "np_0d_array": 1.5,
        "torch_float": 2.5,
        "torch_int": 3,
        "torch_float16": 0.5,
        "py_int": 4,
        "py_float": 0.125,
    }
    assert type(metrics["np_int64"]) is int and type(metrics["torch_int"]) is int
    assert type(metrics["np_float32"]) is float and type(metrics["torch_float"]) is float


def test_log_metric_validates_like_log_metrics(run) -> None:
    """The one-value form goes through the same checks."""
    with pytest.raises(TypeError, match="'flag'"):
        run.log_metric("flag", False, step=0)
    run.log_metric("loss", np.float32(0.5), step=1)
    run.close()
    assert [r["metrics"] for r in _lines(run.paths.metrics)] == [{"loss": 0.5}]


@pytest.mark.parametrize("step", [2**63, -(2**63) - 1, 10**30], ids=["int64_max+1", "int64_min-1", "huge"])
def test_step_outside_int64_raises_value_error(run, step: int) -> None:
    """Steps outside int64 are refused with ValueError, and the metrics are not written."""
    with pytest.raises(ValueError, match="int64"):
        run.log_metrics({"loss": 1.0}, step=step)
    run.close()
    assert run.paths.metrics.read_bytes() == b""


def test_int64_bounds_are_accepted(run) -> None:
    """The int64 limits themselves are valid steps and are stored exactly."""
    run.log_metrics({"loss": 1.0}, step=INT64_MIN)
    run.log_metrics({"loss": 2.0}, step=INT64_MAX)
    run.close()
    assert [r["step"] for r in _lines(run.paths.metrics)] == [INT64_MIN, INT64_MAX]


def test_integers_beyond_2_53_are_stored_exactly(run) -> None:
    """2**53+1 is not a float: as a step and as a value it must survive unrounded."""
    run.log_metrics({"count": 2**53 + 1}, step=2**53 + 1)
    run.close()
    (record,) = _lines(run.paths.metrics)
    assert record["step"] == 2**53 + 1 and record["metrics"]["count"] == 2**53 + 1


@pytest.mark.parametrize("step", [1.0, 2.5, True, False, "3", np.float64(3.0)], ids=["float", "frac", "True", "False", "str", "np_float"])
def test_non_integer_step_raises_type_error(run, step: Any) -> None:
    """Float, bool, str and numpy float steps are a TypeError; nothing is written."""
    with pytest.raises(TypeError, match="step must be an integer"):
        run.log_metrics({"loss": 1.0}, step=step)
    run.close()
    assert run.paths.metrics.read_bytes() == b""


def test_numpy_and_torch_integer_steps_are_accepted(run) -> None:
    """Integer scalars from numpy and torch are valid steps, stored as plain ints."""
    run.log_metrics({"loss": 1.0}, step=np.int64(7))
    run.log_metrics({"loss": 2.0}, step=np.int32(8))
    run.log_metrics({"loss": 3.0}, step=torch.tensor(9))
    run.close()
    steps = [r["step"] for r in _lines(run.paths.metrics)]
    assert steps == [7, 8, 9]
    assert all(type(s) is int for s in steps)


def test_step_none_auto_increments_from_last_step(run) -> None:
    """step=None means one past the last step logged, including after an explicit jump,
    and a refused call does not move the counter."""
    run.log_metrics({"a": 1.0})
    run.log_metrics({"a": 2.0})
    run.log_metrics({"a": 3.0}, step=10)
    with pytest.raises(TypeError):
        run.log_metrics({"a": "bad"})
    run.log_metrics({"a": 4.0})
    run.log_metrics({"a": 5.0}, step=np.int64(20))
    run.log_metrics({"a": 6.0})
    run.close()
    assert [r["step"] for r in _lines(run.paths.metrics)] == [0, 1, 10, 11, 20, 21]


def test_python_int_outside_int64_is_kept_as_float(run) -> None:
    """A Python int value beyond int64 (which backends cannot store as int) becomes a float."""
    run.log_metrics({"tokens": 2**70}, step=0)
    run.close()
    (record,) = _lines(run.paths.metrics)
    assert record["metrics"]["tokens"] == float(2**70)


def test_int_beyond_float_range_raises_error_naming_key(run) -> None:
    """An int too large even for a float is refused with TypeError/ValueError naming the key."""
    with pytest.raises((TypeError, ValueError), match="'huge'"):
        run.log_metrics({"huge": 10**400}, step=0)


def test_auto_increment_past_int64_max_raises(run) -> None:
    """Auto-increment must not produce a step outside int64 (backends cannot store it)."""
    run.log_metrics({"a": 1.0}, step=INT64_MAX)
    with pytest.raises(ValueError, match="int64"):
        run.log_metrics({"a": 2.0})
