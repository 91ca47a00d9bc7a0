"""tail: last records, following a growing file, torn lines, truncation, --until-closed."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from codex_ml.monitoring.runs import MonitoringInputError
from codex_ml.monitoring.tail import Follower, run_closed, tail
from codex_ml.tracking import start_run


def _line(step: int) -> bytes:
    return b'{"v":1,"step":%d,"time":1.0,"metrics":{"loss":%d}}\n' % (step, step)


def test_last_lines_without_follow(tmp_path: Path) -> None:
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(b"".join(_line(i) for i in range(30)))
    seen: list[dict[str, Any]] = []
    assert tail(path, seen.append, lines=5) == 5
    assert [r["step"] for r in seen] == [25, 26, 27, 28, 29]


def test_follower_waits_for_the_newline_of_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(_line(0) + _line(1)[:20])  # the writer is mid-line
    warnings: list[str] = []
    follower = Follower(path, warnings.append)
    assert [r["step"] for r in follower.read_new()] == [0]
    assert follower.read_new() == []
    with open(path, "ab") as handle:
        handle.write(_line(1)[20:] + _line(2))
    assert [r["step"] for r in follower.read_new()] == [1, 2]
    with open(path, "ab") as handle:
        handle.write(b"not json\n" + _line(3))
    assert [r["step"] for r in follower.read_new()] == [3]
    assert warnings and ":4: unreadable line" in warnings[0]


def test_follower_restarts_when_the_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(_line(0) + _line(1))
    warnings: list[str] = []
    follower = Follower(path, warnings.append)
    assert len(follower.read_new()) == 2
    path.write_bytes(_line(7))
    assert [r["step"] for r in follower.read_new()] == [7]
    assert "shrank" in warnings[0]


def test_follow_a_live_run_until_it_closes(tmp_path: Path) -> None:
    """A real run writes from another thread; tail -f --until-closed sees every record, then stops."""
    run = start_run("live", output_root=tmp_path, flush_interval=0.05)
    run.log_metrics({"loss": 0.0}, step=0)
    run.flush()

    def train() -> None:
        for step in range(1, 40):
            run.log_metrics({"loss": step / 10}, step=step)
            time.sleep(0.005)
        run.close()

    seen: list[dict[str, Any]] = []
    thread = threading.Thread(target=train)
    thread.start()
    tail(run.paths.root, seen.append, lines=100, until_closed=True, interval=0.02, max_seconds=60)
    thread.join()
    assert [r["step"] for r in seen] == list(range(40))
    assert run_closed(run.paths.root)


def test_resumed_run_is_not_closed_by_its_old_summary(tmp_path: Path) -> None:
    with start_run("r", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_metrics({"x": 1}, step=0)
    assert run_closed(run.paths.root)
    resumed = start_run("r", output_root=tmp_path, flush_interval=0.05, resume=True)
    try:
        assert not run_closed(resumed.paths.root)
    finally:
        resumed.close()


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MonitoringInputError, match="no such file"):
        tail(tmp_path / "nope.ndjson", print)
    (tmp_path / "run").mkdir()
    with pytest.raises(MonitoringInputError, match="use -f to wait"):
        tail(tmp_path / "run", print)
