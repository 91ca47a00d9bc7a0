"""The supersede rule of rollbacks (codex_ml.rundir.rewinds) and reading rewinds back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.reader import metric_series, read_metrics
from codex_ml.rundir.rewinds import Rewind, read_rewinds, superseded, surviving_flags, surviving_mask

# Two rollbacks, then a resume: at t=10 back from step 8 to the checkpoint of 5; at t=20 back from
# step 9 to 7; the process died at t=25 and a resumed session logged from t=30 on.
TWO = [Rewind(10.0, 5, 8), Rewind(20.0, 7, 9)]

CASES = [
    # (step, time, rewinds, superseded?, why)
    (6, 5.0, [], False, "no rewind: nothing is superseded"),
    (6, 5.0, TWO[:1], True, "after the checkpoint, before the rewind"),
    (8, 9.99, TWO[:1], True, "the step it rewound from"),
    (5, 5.0, TWO[:1], False, "the checkpoint's own step (its val loss) stays"),
    (3, 5.0, TWO[:1], False, "before the checkpoint"),
    (6, 10.0, TWO[:1], False, "logged at the rewind's time: not before it"),
    (6, 11.0, TWO[:1], False, "logged again after the rewind: the surviving one"),
    (7, 15.0, TWO, False, "second life of step 7: below the second rewind's checkpoint"),
    (8, 15.0, TWO, True, "second life of step 8: superseded by the second rewind"),
    (6, 5.0, TWO, True, "first life of step 6: superseded by both"),
    (9, 25.0, TWO, False, "third life of step 9, after both rewinds"),
    (10, 30.0, TWO, False, "a resumed session logs after every rewind"),
    (100, 19.0, TWO, True, "any later step logged before a rewind is gone"),
    (-1, 1.0, TWO, False, "negative steps are below every checkpoint"),
]


@pytest.mark.parametrize(("step", "when", "rewinds", "expected", "why"), CASES, ids=[c[-1] for c in CASES])
def test_supersede_rule(step: int, when: float, rewinds: list[Rewind], expected: bool, why: str) -> None:
    """superseded(), the pure-Python flags and the numpy mask agree on every case."""
    assert superseded(step, when, rewinds) is expected, why
    assert surviving_flags([step], [when], rewinds) == [not expected]
    assert surviving_mask(np.array([step]), np.array([when]), rewinds).tolist() == [not expected]


def test_mask_over_a_whole_timeline() -> None:
    """Steps 1..8, rewind to 5 at t=10, 6..9, rewind to 7 at t=20, 8..10: each step survives once."""
    steps = [*range(1, 9), *range(6, 10), *range(8, 11)]
    times = [float(i) for i in range(1, 9)] + [11.0 + i for i in range(4)] + [21.0 + i for i in range(3)]
    keep = surviving_mask(np.array(steps), np.array(times), TWO)
    assert sorted(np.array(steps)[keep].tolist()) == list(range(1, 11))
    assert surviving_flags(steps, times, TWO) == keep.tolist()


def _write_events(paths: RunPaths, lines: list[bytes]) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.events.write_bytes(b"".join(lines))


def _rewind_line(when: float, step: int, from_step: int) -> bytes:
    return orjson.dumps({"v": 1, "time": when, "step": step, "rule": "rewind", "severity": "warning", "metric": None,
                         "value": from_step, "threshold": None, "action": "rollback",
                         "message": f"rewound from step {from_step} to the checkpoint of step {step}"}) + b"\n"


def test_read_rewinds_skips_other_events_and_a_torn_tail(tmp_path: Path) -> None:
    """Only rewind lines count; another rule's event, a bad line and a torn last line are skipped."""
    paths = RunPaths(tmp_path / "run")
    nan = orjson.dumps({"time": 1.0, "step": 8, "rule": "nonfinite", "severity": "critical", "metric": "train/loss",
                        "value": "NaN", "threshold": None, "message": "rewind me", "action": "rollback"}) + b"\n"
    torn = _rewind_line(30.0, 9, 12)[:-20]
    _write_events(paths, [nan, _rewind_line(10.0, 5, 8), b"{not json \"rewind\"\n", _rewind_line(20.5, 7, 9), torn])
    assert read_rewinds(paths) == [Rewind(10.0, 5, 8), Rewind(20.5, 7, 9)]
    assert read_rewinds(paths.root) == read_rewinds(paths)


def test_no_events_file_or_no_rewind(tmp_path: Path) -> None:
    """A run without events.ndjson, or with events but no rewind, has no rewinds."""
    paths = RunPaths(tmp_path / "run")
    assert read_rewinds(paths) == []
    _write_events(paths, [b'{"time": 1, "step": 3, "rule": "spike", "message": "x"}\n'])
    assert read_rewinds(paths) == []


def test_reader_drops_superseded_records(tmp_path: Path) -> None:
    """read_metrics/metric_series show each step once; rewound=True keeps every line."""
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir(parents=True)
    lines = [{"v": 1, "step": s, "time": float(s), "metrics": {"loss": 1.0}} for s in range(1, 9)]
    lines += [{"v": 1, "step": s, "time": 10.0 + s, "metrics": {"loss": 2.0}} for s in range(6, 11)]
    paths.metrics.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    assert len(read_metrics(paths.metrics)) == 13  # no events file yet: every line
    _write_events(paths, [_rewind_line(10.0, 5, 8)])
    assert [r["step"] for r in read_metrics(paths.metrics)] == list(range(1, 11))
    assert metric_series(paths.metrics)["loss"] == [(s, 1.0) for s in range(1, 6)] + [(s, 2.0) for s in range(6, 11)]
    assert len(read_metrics(paths.metrics, rewound=True)) == 13
