"""The runs index (codex_ml.runs.index): real runs written by start_run, read back as DuckDB tables.

Covers the tables' schema and values (NaN kept out of min/max/mean, counted), nested roots,
the cache (reused, re-read when a run grows: from where the last read stopped, and equal to a
fresh build), a running run, a dead one, a torn last line, an unwritable root, the points view
(rewinds applied) and the many-runs DuckDB scan against load_metrics.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from codex_ml.runs.cache import INDEX_DIR, INDEX_FILE
from codex_ml.runs.index import STALE_RUNNING, RunsRootError, open_index
from codex_ml.runs.scan import scan_runs
from codex_ml.runs.summary import summarise
from codex_ml.tracking import start_run


def make_run(root: Path, name: str, rows: list[dict[str, Any]], *, params: Any = None, tags: Any = None,
             close: bool = True, **options: Any) -> Any:  # fmt: skip
    """A real run: one log_metrics call per row (steps 0, 1, ...), closed unless ``close`` is false."""
    run = start_run(name, output_root=str(root), params=params, tags=tags, health=False, flush_interval=0.05, **options)
    for step, row in enumerate(rows):
        run.log_metrics(row, step=step)
    if close:
        run.close()
    else:
        run.flush()
    return run


def table(con: Any, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def test_tables_have_the_documented_schema_and_values(tmp_path: Path) -> None:
    """runs/params/tags/metric_stats/points: the column names and types other modules compile SQL against."""
    make_run(tmp_path, "a", [{"loss": 2.0, "lr": 1e-3}, {"loss": math.nan}, {"loss": 1.0, "lr": 2e-3}, {"loss": math.inf}],
             params={"training": {"lr": 1e-3, "opt": "adam"}, "model": {"n_layer": 2}, "flag": True}, tags={"stage": "sft"})
    index = open_index(tmp_path)
    con = index.connect()
    index.ensure_points(con)
    schema = {t: [(c[0], c[1]) for c in table(con, f"DESCRIBE {t}")] for t in ("runs", "params", "tags", "metric_stats", "points")}
    assert schema == {
        "runs": [("run_id", "VARCHAR"), ("name", "VARCHAR"), ("status", "VARCHAR"), ("start", "TIMESTAMP"),
                 ("duration", "DOUBLE"), ("path", "VARCHAR"), ("sinks", "VARCHAR")],
        "params": [("run_id", "VARCHAR"), ("key", "VARCHAR"), ("value", "VARCHAR"), ("num", "DOUBLE")],
        "tags": [("run_id", "VARCHAR"), ("key", "VARCHAR"), ("value", "VARCHAR")],
        "metric_stats": [("run_id", "VARCHAR"), ("key", "VARCHAR"), ("last", "DOUBLE"), ("min", "DOUBLE"), ("max", "DOUBLE"),
                         ("mean", "DOUBLE"), ("count", "BIGINT"), ("last_step", "BIGINT")],
        "points": [("run_id", "VARCHAR"), ("key", "VARCHAR"), ("step", "BIGINT"), ("value", "DOUBLE")],
    }
    [(run_id, name, status, duration, path)] = table(con, "SELECT run_id, name, status, duration, path FROM runs")
    assert (run_id, name, status, path) == ("a", "a", "FINISHED", str(tmp_path / "a")) and 0 <= duration < 60
    assert table(con, "SELECT key, value, num FROM params ORDER BY key") == [
        ("flag", "true", None), ("model.n_layer", "2", 2.0), ("training.lr", "0.001", 0.001), ("training.opt", "adam", None)]
    assert table(con, "SELECT key, value FROM tags") == [("stage", "sft")]
    stats = {r[0]: r[1:] for r in table(con, "SELECT key, last, min, max, mean, count, last_step FROM metric_stats")}
    assert stats["loss"] == (math.inf, 1.0, 2.0, 1.5, 4, 3)  # NaN/inf left out of min/max/mean, counted
    assert stats["lr"] == (2e-3, 1e-3, 2e-3, 1.5e-3, 2, 2)
    points = table(con, "SELECT step, value FROM points WHERE key = 'loss' ORDER BY step")
    assert [p[0] for p in points] == [0, 1, 2, 3] and math.isnan(points[1][1]) and points[3][1] == math.inf


def test_runs_are_found_at_any_depth_but_not_inside_a_runs_own_folders(tmp_path: Path) -> None:
    """sweeps/<sweep>/<trial>, a pipeline output with stage folders, runs/<name>; checkpoints/ is never searched."""
    for trial in ("t0", "t1"):
        make_run(tmp_path / "sweeps" / "lr", trial, [{"val/loss": 1.0}])
    make_run(tmp_path, "pipe", [{"M0/train/loss": 3.0}])
    make_run(tmp_path / "pipe" / "stages", "sft", [{"loss": 1.0}])  # a run nested in another run's folder
    (tmp_path / "pipe" / "checkpoints" / "old").mkdir(parents=True)
    (tmp_path / "pipe" / "checkpoints" / "old" / "run.json").write_text("{}")  # never a run
    (tmp_path / "empty").mkdir()
    # A sweep's shared MLflow store (docs/sweeps.md) is not searched, though it is not inside a run.
    (tmp_path / "sweeps" / "lr" / "mlruns" / "0" / "abc").mkdir(parents=True)
    (tmp_path / "sweeps" / "lr" / "mlruns" / "0" / "abc" / "run.json").write_text("{}")  # never a run
    index = open_index(tmp_path)
    assert list(index.entries) == ["pipe", "pipe/stages/sft", "sweeps/lr/t0", "sweeps/lr/t1"]
    assert [e["name"] for e in index.entries.values()] == ["pipe", "sft", "t0", "t1"]
    assert list(open_index(tmp_path / "sweeps").entries) == ["lr/t0", "lr/t1"]
    assert list(open_index(tmp_path / "sweeps" / "lr" / "t0").entries) == ["."]  # a run given as the root


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RunsRootError, match="no such folder"):
        open_index(tmp_path / "nope")
    assert open_index(tmp_path).entries == {}  # an empty root is an empty index (the CLI says so)


def _loss(index: Any) -> dict[str, tuple[Any, ...]]:
    con = index.connect()
    return {r[0]: r[1:] for r in table(con, "SELECT run_id, last, min, max, mean, count, last_step FROM metric_stats WHERE key = 'loss'")}


def test_index_is_cached_and_rebuilt_when_a_run_grows(tmp_path: Path) -> None:
    """Second open reads nothing; a resumed run that logged more is re-read from where the last read stopped."""
    make_run(tmp_path, "a", [{"loss": 5.0}, {"loss": 4.0}])
    make_run(tmp_path, "b", [{"loss": 1.0}])
    first = open_index(tmp_path)
    assert first.reread == 2 and first.saved and (tmp_path / INDEX_DIR / INDEX_FILE).is_file()
    again = open_index(tmp_path)
    assert again.reread == 0 and not again.saved and _loss(again) == _loss(first)
    offset = again.entries["a"]["offset"]
    run = start_run("a", output_root=str(tmp_path), resume=True, health=False)
    run.log_metrics({"loss": 0.5})
    run.log_metrics({"loss": math.nan})
    run.close()
    grown = open_index(tmp_path)
    assert grown.reread == 1
    assert grown.entries["a"]["offset"] > offset and grown.entries["a"]["complete"]
    assert _loss(grown)["a"] == (pytest.approx(math.nan, nan_ok=True), 0.5, 5.0, pytest.approx(9.5 / 3), 4, 3)
    (tmp_path / INDEX_DIR / INDEX_FILE).unlink()
    fresh = open_index(tmp_path)  # the incremental result equals a build from scratch
    assert fresh.reread == 2
    assert fresh.entries["a"]["metrics"]["loss"][1:] == grown.entries["a"]["metrics"]["loss"][1:]


def test_a_running_run_shows_current_values_and_a_dead_one_is_marked(tmp_path: Path) -> None:
    """While the writer holds run.lock: RUNNING and each open shows what was flushed so far."""
    run = make_run(tmp_path, "live", [{"loss": 3.0}], close=False)
    try:
        first = open_index(tmp_path)
        assert first.status["live"] == "RUNNING" and _loss(first)["live"][4] == 1
        con = first.connect()
        [(status, duration)] = table(con, "SELECT status, duration FROM runs")
        assert status == "RUNNING" and duration >= 0
        run.log_metrics({"loss": 2.0})
        run.flush()
        second = open_index(tmp_path)
        assert second.reread == 1 and _loss(second)["live"][:2] == (2.0, 2.0)
    finally:
        run.close()
    closed = open_index(tmp_path)
    assert closed.status["live"] == "FINISHED" and _loss(closed)["live"][4] == 2
    # A process killed without closing leaves RUNNING in run.json and nobody holding the lock.
    run_json = tmp_path / "live" / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "status": "RUNNING"}))
    dead = open_index(tmp_path)
    assert dead.status["live"] == STALE_RUNNING
    assert table(dead.connect(), "SELECT status FROM runs") == [(STALE_RUNNING,)]


def test_a_torn_last_line_is_skipped_then_counted_once_complete(tmp_path: Path) -> None:
    make_run(tmp_path, "t", [{"loss": 3.0}, {"loss": 2.0}])
    metrics = tmp_path / "t" / "metrics.ndjson"
    line = '{"v":1,"step":2,"time":1796000000.0,"metrics":{"loss":1.0}}\n'
    with open(metrics, "a") as handle:
        handle.write(line[:25])  # a crash mid-write
    torn = open_index(tmp_path)
    assert _loss(torn)["t"][:5] == (2.0, 2.0, 3.0, 2.5, 2)
    with open(metrics, "a") as handle:
        handle.write(line[25:])  # the writer finished it after all
    done = open_index(tmp_path)
    assert done.reread == 1 and _loss(done)["t"] == (1.0, 1.0, 3.0, 2.0, 3, 2)
    con = done.connect()
    done.ensure_points(con)
    assert table(con, "SELECT count(*) FROM points") == [(3,)]


def test_a_root_that_cannot_be_written_is_indexed_in_memory(tmp_path: Path) -> None:
    make_run(tmp_path, "a", [{"loss": 1.0}])
    (tmp_path / INDEX_DIR).write_text("not a folder")  # mkdir fails, as on a read-only mount
    index = open_index(tmp_path)
    assert not index.saved and _loss(index)["a"][0] == 1.0
    assert (tmp_path / INDEX_DIR).read_text() == "not a folder"


def test_rewound_runs_show_their_surviving_timeline(tmp_path: Path) -> None:
    """Points a rollback superseded (docs/run-directory.md, Rewinds) are in no statistic and no point."""
    make_run(tmp_path, "r", [{"loss": 3.0}, {"loss": 2.0}, {"loss": 9.0}])  # steps 0..2
    metrics = tmp_path / "r" / "metrics.ndjson"
    last_time = json.loads(metrics.read_text().splitlines()[-1])["time"]
    rewind = {"v": 1, "time": last_time + 1, "step": 1, "rule": "rewind", "severity": "warning", "metric": None,
              "value": 2, "threshold": None, "message": "rewound from step 2 to the checkpoint of step 1", "action": "rollback"}
    (tmp_path / "r" / "events.ndjson").write_text(json.dumps(rewind) + "\n")
    with open(metrics, "a") as handle:
        handle.write(json.dumps({"v": 1, "step": 2, "time": last_time + 2, "metrics": {"loss": 1.5}}) + "\n")
    index = open_index(tmp_path)
    assert _loss(index)["r"] == (1.5, 1.5, 3.0, pytest.approx(6.5 / 3), 3, 2)
    con = index.connect()
    index.ensure_points(con)
    assert table(con, "SELECT step, value FROM points ORDER BY step") == [(0, 3.0), (1, 2.0), (2, 1.5)]


def _write(run_dir: Path, text: str) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.ndjson").write_text(text)
    return run_dir


def test_the_many_runs_scan_equals_load_metrics_or_leaves_the_file_to_it(tmp_path: Path) -> None:
    """codex_ml.runs.scan: the same statistics as load_metrics for files it vouches for; the others are left out."""
    line = '{{"v":1,"step":{0},"time":{0}.5,"metrics":{{{1}}}}}\n'
    plain = _write(tmp_path / "plain", "".join(line.format(i, f'"a":{i},"b":"NaN"') for i in range(50)))
    inf = _write(tmp_path / "inf", line.format(0, '"a":"-Infinity"') + line.format(1, '"a":2'))
    rare = "".join(line.format(i, '"a":1') for i in range(400)) + line.format(400, '"rare":7') + \
        "".join(line.format(i, '"a":2') for i in range(401, 800))  # a key neither end of the file shows
    others = [
        _write(tmp_path / "rare", rare),
        _write(tmp_path / "torn", line.format(0, '"a":1') + line.format(1, '"a":2')[:20]),
        _write(tmp_path / "null", line.format(0, '"a":null')),
        _write(tmp_path / "case", line.format(0, '"a":1,"A":2')),
        _write(tmp_path / "broken", line.format(0, '"a":1') + line.format(1, '"a":2')[:-2] + "\n"),
    ]
    scanned = scan_runs([plain, inf, *others])
    assert set(scanned) == {plain, inf}
    for run_dir in (plain, inf):
        assert repr(scanned[run_dir]["metrics"]) == repr(summarise(run_dir)["metrics"])  # repr: nan == nan
    assert repr(scanned[plain]["metrics"]["b"]) == "[nan, None, None, None, 0, 50, 49]"
    assert scanned[inf]["metrics"]["a"] == [2.0, 2.0, 2.0, 2.0, 1, 2, 1]
    assert summarise(others[0])["metrics"]["rare"] == [7.0, 7.0, 7.0, 7.0, 1, 1, 400]


@pytest.mark.parametrize("odd", ["Loss", "step"])  # a name differing only in case; a name of the view's own columns
def test_points_of_chosen_keys_and_of_odd_names(tmp_path: Path, odd: str) -> None:
    """ensure_points(con, keys) reads only those metrics (from the runs that logged them); names a
    STRUCT cannot hold are read through a MAP, with the same points."""
    make_run(tmp_path, "a", [{"loss": 3.0, odd: 1.0}, {"loss": 2.0}])
    make_run(tmp_path, "b", [{"other": 5.0}])
    index = open_index(tmp_path)
    con = index.connect()
    index.ensure_points(con)
    assert table(con, "SELECT run_id, key, step, value FROM points ORDER BY run_id, key, step") == sorted([
        ("a", odd, 0, 1.0), ("a", "loss", 0, 3.0), ("a", "loss", 1, 2.0), ("b", "other", 0, 5.0)])
    index.ensure_points(con, ["loss"])
    assert table(con, "SELECT run_id, key, step, value FROM points ORDER BY run_id, step") == [
        ("a", "loss", 0, 3.0), ("a", "loss", 1, 2.0)]
    index.ensure_points(con, ["nothing"])
    assert table(con, "SELECT count(*) FROM points") == [(0,)]


def test_a_grown_file_is_read_from_where_the_last_read_stopped(tmp_path: Path) -> None:
    """Only the appended bytes are parsed: an earlier line changed in place (the format forbids it,
    metrics.ndjson is append-only) is not seen until the file is read whole again."""
    make_run(tmp_path, "a", [{"loss": 5.0}, {"loss": 4.0}])
    open_index(tmp_path)
    metrics = tmp_path / "a" / "metrics.ndjson"
    text = metrics.read_text()
    assert '"loss":5.0' in text
    metrics.write_text(text.replace('"loss":5.0', '"loss":9.0') + '{"v":1,"step":2,"time":1796000000.0,"metrics":{"loss":1.0}}\n')
    grown = open_index(tmp_path)
    assert _loss(grown)["a"][:3] == (1.0, 1.0, 5.0)  # max still 5.0: the first line was not read again
    (tmp_path / INDEX_DIR / INDEX_FILE).unlink()
    assert _loss(open_index(tmp_path))["a"][:3] == (1.0, 1.0, 9.0)


def test_many_runs_show_progress_and_are_summarised_like_one_by_one(tmp_path: Path) -> None:
    """Past 160 runs to read, progress(message) is entered; the one-query scan gives what each run read alone gives."""
    for i in range(170):
        run_dir = tmp_path / f"s{i % 3}" / f"r{i:03d}"
        run_dir.mkdir(parents=True)
        lines = [json.dumps({"v": 1, "step": s, "time": 1e9 + s, "metrics": {"loss": 1.0 / (s + i + 1), "x": "NaN"}})
                 for s in range(5)]
        (run_dir / "metrics.ndjson").write_text("\n".join(lines) + "\n")
        (run_dir / "params.json").write_text(json.dumps({"i": i}))
    messages: list[str] = []

    def progress(message: str) -> Any:
        messages.append(message)
        return contextlib.nullcontext()

    index = open_index(tmp_path, progress=progress)
    assert messages == ["indexing 170 runs (0 MB of metrics)"] and index.reread == 170
    one = index.entries["s1/r004"]
    assert repr(one["metrics"]) == repr(summarise(tmp_path / "s1" / "r004")["metrics"])
    assert one["metrics"]["loss"][:3] == [1.0 / 9, 1.0 / 9, 1.0 / 5] and one["params"] == [["i", "4", 4.0]]
    assert open_index(tmp_path, progress=progress).reread == 0 and len(messages) == 1
