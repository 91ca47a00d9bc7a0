"""The DuckDB reader takes only files it can vouch for; everything else is still read exactly."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from codex_ml.monitoring import duckdb_loading
from codex_ml.monitoring.loading import load_lines, load_metrics


def _line(step: int, metrics: str) -> str:
    return f'{{"v":1,"step":{step},"time":{step}.25,"metrics":{{{metrics}}}}}\n'


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _assert_same_as_slow(path: Path) -> None:
    """load_metrics (whichever reader it used) equals the line-by-line reader."""
    data, slow = load_metrics(path), load_lines(path, path.read_bytes())
    assert data.records == slow.records and data.keys() == slow.keys()
    assert data.report.bad_lines == slow.report.bad_lines
    for key in slow.keys():
        a, b = data.series[key], slow.series[key]
        assert np.array_equal(a.values, b.values, equal_nan=True), key
        assert np.array_equal(a.steps, b.steps) and np.array_equal(a.rows, b.rows), key
        assert np.array_equal(a.times, b.times), key


def test_reads_a_run_file_exactly_and_in_first_appearance_order(tmp_path: Path) -> None:
    lines = [_line(i, f'"loss":{i / 3},"lr":0.001') for i in range(300)]
    lines[150] = _line(150, '"eval/acc":"Infinity","loss":"NaN","lr":"-Infinity"')
    (tmp_path / "it's a run").mkdir()
    path = _write(tmp_path / "it's a run" / "metrics.ndjson", lines)
    data = load_metrics(path)  # a quote in the path is escaped in the query
    assert data.loader == "duckdb" and data.records == 300
    assert data.keys() == ["loss", "lr", "eval/acc"]
    assert math.isnan(data.series["loss"].values[150]) and data.series["lr"].values[150] == -math.inf
    _assert_same_as_slow(path)


def test_a_name_seen_only_mid_file_is_caught_by_the_colon_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB skips keys its STRUCT does not name; the count notices and pyarrow reads the file."""
    monkeypatch.setattr(duckdb_loading, "_PROBE_BYTES", 300)
    lines = [_line(i, f'"loss":{i}') for i in range(100)]
    lines[50] = _line(50, '"loss":50,"rare":7')
    path = _write(tmp_path / "m.ndjson", lines)
    raw = bytearray(path.read_bytes())
    assert "rare" not in duckdb_loading._probe_names(raw)
    assert duckdb_loading.load_with_duckdb(path, raw) is None
    assert load_metrics(path).loader == "pyarrow"
    _assert_same_as_slow(path)


@pytest.mark.parametrize(
    ("metrics", "why"),
    [
        ('"loss":null', "a null value"),
        ('"loss":"5"', "a number written as a string"),
        ('"loss":1,"loss":2', "a repeated key"),
        ('"a:b":1,"loss":1', "a colon inside a key"),
        ('"Loss":1,"loss":1', "names equal but for case"),
    ],
)
def test_files_duckdb_cannot_vouch_for_are_left_to_the_other_readers(tmp_path: Path, metrics: str, why: str) -> None:
    path = _write(tmp_path / "m.ndjson", [_line(0, '"loss":0.5'), _line(1, metrics), _line(2, '"loss":1.5')])
    assert duckdb_loading.load_with_duckdb(path, bytearray(path.read_bytes())) is None, why
    _assert_same_as_slow(path)


def test_a_record_without_metrics_is_reported_by_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.ndjson", [_line(0, '"loss":1'), '{"v":1,"step":1,"time":2.0}\n', _line(2, '"loss":2')])
    data = load_metrics(path)
    assert data.loader == "lines" and [line for line, _ in data.report.bad_lines] == [2]


def test_records_without_v_are_counted_and_a_null_v_is_refused(tmp_path: Path) -> None:
    """The proof counts ``v`` only where a record has one: a file mixing both is DuckDB's; ``"v":null`` is not."""
    bare = '{"step":1,"time":1.25,"metrics":{"loss":2}}\n'
    path = _write(tmp_path / "m.ndjson", [_line(0, '"loss":1'), bare, _line(2, '"loss":3')])
    assert duckdb_loading.load_with_duckdb(path, bytearray(path.read_bytes())) is not None
    _assert_same_as_slow(path)
    nulled = _write(tmp_path / "n.ndjson", [_line(0, '"loss":1'), '{"v":null,' + bare[1:], _line(2, '"loss":3')])
    assert duckdb_loading.load_with_duckdb(nulled, bytearray(nulled.read_bytes())) is None


def test_unterminated_last_line_and_missing_duckdb_fall_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "m.ndjson", [_line(0, '"loss":1'), _line(1, '"loss":2').rstrip("\n")])
    assert duckdb_loading.load_with_duckdb(path, bytearray(path.read_bytes())) is None
    assert load_metrics(path).loader == "pyarrow" and load_metrics(path).records == 2
    path.write_text(path.read_text() + "\n")
    monkeypatch.setitem(sys.modules, "duckdb", None)  # as if the package were not installed
    assert duckdb_loading.load_with_duckdb(path, bytearray(path.read_bytes())) is None
    assert load_metrics(path).loader == "pyarrow"


# Hostile names (any Unicode, quotes, colons, backslashes, case twins) and any number the
# encoder writes: whichever reader load_metrics picks, it must equal the per-line reader.
_names = st.text(alphabet=st.characters(), min_size=1, max_size=12) | st.sampled_from(["loss", "Loss", "a:b", 'q"', "\\"])
_numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.dictionaries(_names, _numbers, max_size=4), min_size=1, max_size=12))
@example(records=[{"\x00": 0.0}])  # DuckDB cut the name at the NUL: '' instead of '\x00'
@example(records=[{"0": 2**53 + 1, ":": 0.0}])  # pyarrow refused to round an int above 2**53 to a float
@pytest.mark.parametrize("duckdb_first", [True, False], ids=["duckdb-first", "pyarrow-first"])
def test_any_encoded_file_loads_like_the_per_line_reader(tmp_path: Path, records: list[dict[str, float]],
                                                         duckdb_first: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from codex_ml.monitoring import loading
    from codex_ml.rundir.encoding import encode_metrics

    if not duckdb_first:
        monkeypatch.setattr(loading, "load_with_duckdb", lambda path, raw: None)

    path = tmp_path / "m.ndjson"
    encoded = []
    for step, metrics in enumerate(records):
        try:
            encoded.append(encode_metrics(step, 1.5 + step, metrics))
        except ValueError:
            continue  # a lone surrogate the encoder refuses (the tracking core escapes it first)
    if not encoded:
        return
    path.write_bytes(b"".join(encoded))
    _assert_same_as_slow(path)
