"""inspect: statistics, bad and torn lines, system metrics, and the fast/slow loading paths."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from codex_ml.monitoring.inspect import fmt, inspect_paths, to_json
from codex_ml.monitoring.loading import load_lines, load_metrics
from codex_ml.monitoring.runs import EmptyInputError, MonitoringInputError
from codex_ml.tracking import start_run


def _real_run(tmp_path: Path) -> Path:
    with start_run("demo", output_root=tmp_path, flush_interval=0.05) as run:
        for step in range(10):
            run.log_metrics({"train/loss": 2.0 - step / 10, "lr": 0.01}, step=step)
        run.log_metrics({"train/loss": math.nan}, step=10)
        run.log_metrics({"train/loss": math.inf, "eval/acc": 0.5}, step=11)
    return run.paths.root


def test_statistics_of_a_real_run(tmp_path: Path) -> None:
    [result] = inspect_paths([_real_run(tmp_path)])
    # 12 logged + the health/events count of the one nonfinite event (NaN then Inf: one streak)
    assert result["records"] == 13 and result["run"]["status"] == "FINISHED" and result["run"]["name"] == "demo"
    loss = result["metrics"]["train/loss"]
    assert loss["count"] == 12 and loss["first_step"] == 0 and loss["last_step"] == 11
    assert loss["min"] == pytest.approx(1.1) and loss["max"] == 2.0
    assert loss["mean"] == pytest.approx(np.mean([2.0 - s / 10 for s in range(10)]))
    assert loss["nan"] == 1 and loss["inf"] == 1 and loss["last"] == math.inf
    assert result["metrics"]["eval/acc"]["count"] == 1
    assert loss["span_s"] >= 0 and result["bad_lines"] == [] and not result["torn_tail"]
    assert b'"last": "Infinity"' in to_json([result])


def test_header_names_every_sink_the_run_wrote(tmp_path: Path) -> None:
    """TensorBoard keeps no ids in run.json's backends, but it is a sink the run wrote."""
    from rich.console import Console

    from codex_ml.monitoring.inspect import render

    with start_run("tb", output_root=tmp_path, flush_interval=0.05, enable_tensorboard=True) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    [result] = inspect_paths([run.paths.root])
    assert result["run"]["sinks"] == ["tensorboard"] and result["run"]["backends"] == []
    console = Console(record=True, width=200)
    render([result], console)
    assert "sinks tensorboard" in console.export_text()


def test_bad_and_torn_lines_are_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(b'{"v":1,"step":0,"time":1.0,"metrics":{"a":1}}\n'
                     b'garbage\n'
                     b'{"v":1,"step":1,"time":2.0,"metrics":{"a":"oops"}}\n'
                     b'{"v":1,"step":2,"time":3.0,"metrics":{"a":3}}\n'
                     b'{"v":1,"step":3,"ti')  # fmt: skip
    [result] = inspect_paths([path])
    assert [b["line"] for b in result["bad_lines"]] == [2, 3]
    assert result["torn_tail"] and result["metrics"]["a"]["count"] == 2


@pytest.mark.parametrize(("reader", "piece_bytes"), [("duckdb", 8 << 20), ("pyarrow", 8 << 20), ("pyarrow", 200)],
                         ids=["duckdb", "pyarrow-one-piece", "pyarrow-many-pieces"])
def test_fast_and_slow_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str, piece_bytes: int) -> None:
    """Each columnar reader matches the line-by-line one; pyarrow also when the file is parsed
    in many pieces (keys first seen in a later piece, ints in one piece and floats in another)."""
    from codex_ml.monitoring import loading

    monkeypatch.setattr(loading, "_MIN_PIECE", piece_bytes)
    if reader == "pyarrow":
        monkeypatch.setattr(loading, "load_with_duckdb", lambda path, raw: None)
    path = tmp_path / "m.ndjson"
    lines = [f'{{"v":1,"step":{i},"time":{i}.5,"metrics":{{"a":{i},"b":"NaN","c":"-Infinity"}}}}' if i % 3 == 0 else
             f'{{"v":1,"step":{i},"time":{i}.5,"metrics":{{"a":{i / 7},"late":"Infinity"}}}}' for i in range(50)]
    last = '{"v":1,"step":99,"time":1.0,"metrics":{"a":1.5}}'
    # DuckDB takes only files whose last line is complete; pyarrow also reads an unterminated one.
    path.write_text("\n".join(lines) + "\n" + last + ("\n" if reader == "duckdb" else ""))
    fast, slow = load_metrics(path), load_lines(path, path.read_bytes())
    assert fast.loader == reader and fast.records == slow.records == 51
    assert fast.keys() == slow.keys() == ["a", "b", "c", "late"]
    for key in fast.keys():
        f, s = fast.series[key], slow.series[key]
        assert np.array_equal(f.values, s.values, equal_nan=True) and np.array_equal(f.steps, s.steps), key
        assert np.array_equal(f.rows, s.rows) and np.array_equal(f.times, s.times), key


@pytest.mark.parametrize("piece_bytes", [8 << 20, 60], ids=["one-piece", "many-pieces"])
@pytest.mark.parametrize("bad", ['{"v":1,"step":2,"time":2.0,"metrics":{"a":"oops"}}', "not json"])
def test_pyarrow_gives_a_file_it_cannot_parse_to_the_line_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 piece_bytes: int, bad: str) -> None:
    """A parse error (or a column pyarrow cannot type) in any piece: the line reader names the line."""
    from codex_ml.monitoring import loading

    monkeypatch.setattr(loading, "_MIN_PIECE", piece_bytes)
    monkeypatch.setattr(loading, "load_with_duckdb", lambda path, raw: None)
    lines = [f'{{"v":1,"step":{i},"time":{i}.0,"metrics":{{"a":{i}.5}}}}' for i in range(6)]
    lines[2] = bad
    path = tmp_path / "m.ndjson"
    path.write_text("\n".join(lines) + "\n")
    data = load_metrics(path)
    assert data.loader == "lines" and [line for line, _ in data.report.bad_lines] == [3]
    assert list(data.series["a"].steps) == [0, 1, 3, 4, 5]


def test_sentinel_digits_in_the_file_are_read_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB swaps nothing, so a sentinel number is just a number; pyarrow's swap defers to the exact path."""
    from codex_ml.monitoring import loading

    path = tmp_path / "m.ndjson"
    path.write_text('{"v":1,"step":0,"time":1.0,"metrics":{"a":7e307,"b":"NaN"}}\n')
    for expected_reader in ("duckdb", "lines"):
        data = load_metrics(path)
        assert data.loader == expected_reader and data.series["a"].values[0] == 7e307
        assert math.isnan(data.series["b"].values[0])
        monkeypatch.setattr(loading, "load_with_duckdb", lambda path, raw: None)


def test_system_metrics_file_and_run_summary(tmp_path: Path) -> None:
    root = _real_run(tmp_path)
    (root / "system_metrics.jsonl").write_text(
        '{"v":1,"time":10.0,"sample":0,"cpu":{"percent":10.0,"per_core":[5,15]},"gpu":[{"index":0,"name":"H200","utilization_percent":"NaN"}]}\n'
        '{"v":1,"time":25.0,"sample":1,"cpu":{"percent":30.0,"per_core":[25,35]},"gpu":[{"index":0,"name":"H200","utilization_percent":90}]}\n')  # fmt: skip
    [result] = inspect_paths([root])
    system = result["system"]
    assert system["records"] == 2 and system["span_s"] == 15.0
    assert system["metrics"]["system/cpu/percent"]["mean"] == 20.0
    assert system["metrics"]["system/gpu/0/utilization_percent"]["nan"] == 1
    [alone] = inspect_paths([root / "system_metrics.jsonl"])
    assert alone["kind"] == "system" and "system/cpu/per_core/1" in alone["metrics"]


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(MonitoringInputError, match="no such file"):
        inspect_paths([tmp_path / "missing"])
    (tmp_path / "empty.ndjson").write_bytes(b"")
    with pytest.raises(EmptyInputError, match="empty"):
        inspect_paths([tmp_path / "empty.ndjson"])
    (tmp_path / "notarun").mkdir()
    with pytest.raises(MonitoringInputError, match="not a codex_ml run directory"):
        inspect_paths([tmp_path / "notarun"])
    (tmp_path / "other.ndjson").write_text('{"hello": 1}\n')
    with pytest.raises(MonitoringInputError, match="not a codex_ml metrics"):
        inspect_paths([tmp_path / "other.ndjson"])


def test_fmt() -> None:
    assert [fmt(None), fmt(3), fmt(0.5), fmt(1e-7), fmt(math.nan)] == ["-", "3", "0.5", "1.000e-07", "nan"]


def test_swaps_keep_the_length_so_they_happen_in_place() -> None:
    from codex_ml.monitoring.loading import _SWAPS

    assert all(len(spelling) == len(number) for spelling, number in _SWAPS)
