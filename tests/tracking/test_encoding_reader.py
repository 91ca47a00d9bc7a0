"""The NDJSON encoding (non-finite numbers as strings) and the tolerant reader: torn tails,
bad lines with line numbers, tail repair, and resume after a torn tail."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from codex_ml.errors import CodexMLError, CorruptRecordError
from codex_ml.tracking import start_run
from codex_ml.rundir.encoding import decode_metrics_values, decode_number, encode_metrics, encode_number
from codex_ml.rundir.reader import ReadReport, iter_records, last_step, metric_series, read_metrics, repair_torn_tail


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token!r}")


def strict_lines(path: Path) -> list[dict[str, Any]]:
    """Parse every line with the stdlib, refusing NaN/Infinity tokens (strict JSON)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n") or raw == b"", f"{path} does not end on a line boundary"
    return [json.loads(line, parse_constant=_refuse_constant) for line in raw.decode("utf-8").splitlines()]


def _record(step: int, **metrics: Any) -> bytes:
    return json.dumps({"v": 1, "step": step, "time": 1.0, "metrics": metrics}).encode() + b"\n"


def test_strict_parser_helper_rejects_nan_tokens(tmp_path: Path) -> None:
    """The strict helper used below really rejects a bare NaN token (so it can catch one)."""
    path = tmp_path / "bad.ndjson"
    path.write_text('{"x": NaN}\n')
    with pytest.raises(ValueError, match="NaN"):
        strict_lines(path)


@pytest.mark.parametrize(
    ("value", "spelling"),
    [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")],
)
def test_non_finite_numbers_use_documented_spellings(value: float, spelling: str) -> None:
    """encode_number writes the documented strings and decode_number inverts them."""
    assert encode_number(value) == spelling
    decoded = decode_number(spelling)
    assert (math.isnan(decoded) and math.isnan(value)) or decoded == value


def test_finite_numbers_are_unchanged_by_encoding() -> None:
    """Finite ints and floats pass through encode/decode untouched (and keep their type)."""
    for value in (0, -3, 2**62, 0.5, -1e300, 5e-324):
        assert encode_number(value) == value and type(encode_number(value)) is type(value)
        assert decode_number(value) == value


@pytest.mark.parametrize("bad", ["nan", "inf", "Inf", "", "1.0", None, True, [1.0]])
def test_decode_number_rejects_anything_else(bad: Any) -> None:
    """Only numbers and the three exact spellings decode; anything else is a ValueError."""
    with pytest.raises(ValueError, match="expected a number"):
        decode_number(bad)


def test_encode_metrics_line_is_strict_json() -> None:
    """An encoded metrics line is one strict-JSON object followed by exactly one newline."""
    line = encode_metrics(3, 12.5, {"a": math.nan, "b": 1.0, "c": -math.inf})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line, parse_constant=_refuse_constant)
    assert record == {"v": 1, "step": 3, "time": 12.5, "metrics": {"a": "NaN", "b": 1.0, "c": "-Infinity"}}


def test_non_finite_values_round_trip_through_a_run(tmp_path: Path) -> None:
    """NaN/+Inf/-Inf logged to a run are written as strict JSON strings and read back as floats."""
    with start_run("nonfinite", output_root=str(tmp_path), flush_interval=0.05) as run:
        run.log_metrics({"nan": math.nan, "pinf": math.inf, "ninf": -math.inf, "ok": 1.5}, step=0)
        run.log_metrics({"np_nan": np.float32("nan"), "np_inf": np.float64("inf")}, step=1)
    lines = strict_lines(run.paths.metrics)
    assert lines[0]["metrics"] == {"nan": "NaN", "pinf": "Infinity", "ninf": "-Infinity", "ok": 1.5}
    assert lines[1]["metrics"] == {"np_nan": "NaN", "np_inf": "Infinity"}
    back = read_metrics(run.paths.metrics)
    assert math.isnan(back[0]["metrics"]["nan"])
    assert back[0]["metrics"]["pinf"] == math.inf and back[0]["metrics"]["ninf"] == -math.inf
    assert back[0]["metrics"]["ok"] == 1.5
    assert math.isnan(back[1]["metrics"]["np_nan"]) and back[1]["metrics"]["np_inf"] == math.inf
    assert decode_metrics_values(lines[0]["metrics"])["pinf"] == math.inf


def _write_torn(path: Path, good: int) -> bytes:
    data = b"".join(_record(i, loss=float(i)) for i in range(good))
    torn = _record(good, loss=1.0)[:-9]  # a partial record, no newline
    path.write_bytes(data + torn)
    return torn


def test_reader_tolerates_torn_last_line_and_reports_it(tmp_path: Path) -> None:
    """A partial last line is skipped and reported as torn_tail, not as a bad line."""
    path = tmp_path / "metrics.ndjson"
    _write_torn(path, good=3)
    report = ReadReport(str(path))
    records = list(iter_records(path, report))
    assert [r["step"] for r in records] == [0, 1, 2]
    assert report.torn_tail is True
    assert report.bad_lines == []


def test_strict_reader_also_skips_a_torn_tail(tmp_path: Path) -> None:
    """Strict mode (report=None) raises on bad lines but still treats a torn tail as normal."""
    path = tmp_path / "metrics.ndjson"
    _write_torn(path, good=2)
    assert [r["step"] for r in iter_records(path)] == [0, 1]


def test_complete_last_line_without_newline_is_read(tmp_path: Path) -> None:
    """A complete record that only lacks its newline is a record, not a torn tail."""
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(_record(0, a=1.0) + _record(1, a=2.0).rstrip(b"\n"))
    report = ReadReport(str(path))
    assert [r["step"] for r in iter_records(path, report)] == [0, 1]
    assert report.torn_tail is False


def test_bad_line_mid_file_is_reported_with_its_line_number(tmp_path: Path) -> None:
    """Bad lines (garbage, a non-object) are skipped and listed with 1-based line numbers;
    blank lines count towards the numbering but are not errors."""
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(_record(0, a=1.0) + b"not json at all\n" + b"\n" + b"[1, 2]\n" + _record(1, a=2.0))
    report = ReadReport(str(path))
    records = read_metrics(path, report)
    assert [r["step"] for r in records] == [0, 1]
    assert [line for line, _ in report.bad_lines] == [2, 4]
    assert report.torn_tail is False


def test_strict_mode_raises_corrupt_record_error_naming_file_and_line(tmp_path: Path) -> None:
    """With report=None the first bad line raises CorruptRecordError with file:line."""
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(_record(0, a=1.0) + _record(1, a=1.0) + b'{"v": 1, "step": \n' + _record(3, a=1.0))
    with pytest.raises(CorruptRecordError) as info:
        list(iter_records(path))
    assert isinstance(info.value, CodexMLError)
    assert info.value.line == 3
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}:3:")


def test_repair_cuts_a_partial_last_line(tmp_path: Path) -> None:
    """repair_torn_tail removes exactly the partial record and reports how many bytes."""
    path = tmp_path / "metrics.ndjson"
    torn = _write_torn(path, good=3)
    assert repair_torn_tail(path) == len(torn)
    assert path.read_bytes() == b"".join(_record(i, loss=float(i)) for i in range(3))


def test_repair_cuts_a_file_that_is_only_a_partial_line(tmp_path: Path) -> None:
    """A file holding only a torn first record becomes empty."""
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(b'{"v": 1, "st')
    assert repair_torn_tail(path) == 12
    assert path.read_bytes() == b""


def test_repair_adds_missing_newline_to_complete_line(tmp_path: Path) -> None:
    """A complete last record without newline is kept and gets its newline (0 bytes removed)."""
    path = tmp_path / "metrics.ndjson"
    complete = _record(0, a=1.0) + _record(1, a=2.0)
    path.write_bytes(complete.rstrip(b"\n"))
    assert repair_torn_tail(path) == 0
    assert path.read_bytes() == complete


def test_repair_leaves_clean_and_missing_files_alone(tmp_path: Path) -> None:
    """A file ending in a newline is not touched; a missing file is not created."""
    path = tmp_path / "metrics.ndjson"
    clean = _record(0, a=1.0)
    path.write_bytes(clean)
    assert repair_torn_tail(path) == 0
    assert path.read_bytes() == clean
    missing = tmp_path / "missing.ndjson"
    assert repair_torn_tail(missing) == 0
    assert not missing.exists()


def test_repair_finds_line_start_beyond_one_scan_chunk(tmp_path: Path) -> None:
    """A torn record longer than the 64 KiB backward-scan chunk is still cut at its start."""
    path = tmp_path / "metrics.ndjson"
    head = _record(0, a=1.0)
    torn = b'{"v": 1, "step": 1, "metrics": {"' + b"k" * 200_000
    path.write_bytes(head + torn)
    assert repair_torn_tail(path) == len(torn)
    assert path.read_bytes() == head


def test_last_step_and_metric_series_ignore_torn_tail(tmp_path: Path) -> None:
    """last_step is the last complete record's step; metric_series decodes values in order."""
    path = tmp_path / "metrics.ndjson"
    path.write_bytes(_record(0, a=1.0) + _record(5, a="NaN", b=2.0) + b'{"v":1,"step":9')
    assert last_step(path) == 5
    assert last_step(tmp_path / "missing.ndjson") is None
    series = metric_series(path)
    assert series["b"] == [(5, 2.0)]
    assert series["a"][0] == (0, 1.0) and series["a"][1][0] == 5 and math.isnan(series["a"][1][1])


@pytest.mark.parametrize("complete_tail", [False, True], ids=["partial-tail", "complete-tail-no-newline"])
def test_resume_after_torn_tail_never_glues_records(tmp_path: Path, capfd, complete_tail: bool) -> None:
    """Resuming a run whose metrics.ndjson ends mid-line: the partial line is cut (or a
    complete one gets its newline), every line of the final file parses, and steps continue
    after the last complete step."""
    with start_run("resumed", output_root=str(tmp_path), flush_interval=0.05) as first:
        for step in range(5):
            first.log_metrics({"loss": float(step)}, step=step)
    tail = _record(5, loss=5.0)
    planted = tail.rstrip(b"\n") if complete_tail else tail[: len(tail) // 2]
    with open(first.paths.metrics, "ab") as handle:
        handle.write(planted)

    with start_run("resumed", output_root=str(tmp_path), resume=True, flush_interval=0.05) as second:
        for value in (10.0, 11.0, 12.0):
            second.log_metrics({"loss": value})
    lines = strict_lines(second.paths.metrics)
    expected_steps = [0, 1, 2, 3, 4, 5, 6, 7, 8] if complete_tail else [0, 1, 2, 3, 4, 5, 6, 7]
    assert [r["step"] for r in lines] == expected_steps
    assert [r["metrics"]["loss"] for r in lines[-3:]] == [10.0, 11.0, 12.0]
    assert all(orjson.loads(line) for line in second.paths.metrics.read_bytes().splitlines())
    err = capfd.readouterr().err
    assert ("cut a torn last line" in err) is (not complete_tail)
    run_file = json.loads(second.paths.run_file.read_text())
    assert run_file["run_id"] == first.run_id == second.run_id
    assert len(run_file["sessions"]) == 2
