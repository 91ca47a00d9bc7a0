"""Property-based round trips (hypothesis) for the NDJSON writer and reader."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_ml.tracking import start_run
from codex_ml.rundir.encoding import encode_metrics, encode_record
from codex_ml.rundir.reader import ReadReport, iter_records, read_metrics
from codex_ml.tracking.validation import INT64_MAX, INT64_MIN

# Any Unicode key, lone surrogates included (Python strings can hold them; the writer must cope).
keys = st.text(alphabet=st.characters(), min_size=1, max_size=40)
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(INT64_MIN, INT64_MAX))
metrics = st.dictionaries(keys, values, min_size=1, max_size=8)
steps = st.integers(INT64_MIN, INT64_MAX)


def same(a: float | int, b: float | int) -> bool:
    """Equal, with NaN equal to NaN and the int/float kind kept."""
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


@given(step=steps, wall=st.floats(0, 4e9), values=metrics)
def test_encoded_metrics_line_reads_back_identically(tmp_path_factory, step, wall, values) -> None:
    path = tmp_path_factory.mktemp("p") / "m.ndjson"
    line = encode_metrics(step, wall, values)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one record, one line, whatever the keys hold
    assert b"NaN," not in line.replace(b'"NaN"', b"") and b"Infinity," not in line.replace(b'"Infinity"', b"")
    path.write_bytes(line)
    (record,) = read_metrics(path)
    assert record["step"] == step and record["time"] == wall
    assert record["metrics"].keys() == values.keys()
    assert all(same(values[k], record["metrics"][k]) for k in values)


@given(texts=st.lists(st.text(alphabet=st.characters()), min_size=1, max_size=5), cut=st.integers(0, 10_000))
def test_a_file_cut_anywhere_reads_as_a_prefix_of_its_records(tmp_path_factory, texts, cut) -> None:
    """A crash can cut the file at any byte: the reader returns the whole records before the
    cut, in order, and reports a torn tail when the cut falls inside a record."""
    lines = [encode_record({"step": i, "text": t}) for i, t in enumerate(texts)]
    data = b"".join(lines)
    cut = min(cut, len(data))
    path = tmp_path_factory.mktemp("c") / "t.ndjson"
    path.write_bytes(data[:cut])
    report = ReadReport(str(path))
    got = list(iter_records(path, report))
    complete = 0
    while complete < len(lines) and sum(map(len, lines[: complete + 1])) <= cut:
        complete += 1
    # A record cut right before its newline is still whole JSON and is kept.
    assert [r["text"] for r in got[:complete]] == texts[:complete]
    assert len(got) - complete in (0, 1)
    assert report.bad_lines == []
    mid_record = cut not in {sum(map(len, lines[:i])) for i in range(len(lines) + 1)}
    assert report.torn_tail == (mid_record and len(got) == complete)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(metrics, st.one_of(st.none(), st.integers(-1000, 1000))), min_size=1, max_size=30))
def test_a_run_writes_every_call_as_logged(tmp_path: Path, calls) -> None:
    """Through the real background writer: every call is one line, in call order, steps as given
    (or one past the previous), values identical."""
    root = tmp_path / f"r{abs(hash(str(calls))) % 10**12}"
    with start_run("prop", output_root=root, flush_interval=0.05) as run:
        for values, step in calls:
            run.log_metrics(values, step=step)
    records = read_metrics(run.paths.metrics)
    assert len(records) == len(calls)
    expected_step = 0
    for record, (values, step) in zip(records, calls):
        expected_step = expected_step if step is None else step
        assert record["step"] == expected_step
        assert all(same(values[k], record["metrics"][k]) for k in values)
        expected_step += 1
