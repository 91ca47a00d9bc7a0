"""export: long and wide layouts to Parquet, CSV and JSONL, read back with pyarrow/pandas."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from codex_ml.monitoring.export import export, pick_format
from codex_ml.monitoring.loading import load_metrics
from codex_ml.monitoring.runs import UnknownFormatError
from codex_ml.tracking import start_run


@pytest.fixture()
def data(tmp_path: Path):
    with start_run("e", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_metrics({"loss": 3.0, "lr": 0.1}, step=0)
        run.log_metrics({"loss": math.nan}, step=1)
        run.log_metrics({"acc": 0.5}, step=1)  # same step, another call
        run.log_metrics({"loss": 1.0, "lr": 0.05}, step=2)
        run.log_metrics({"loss": 0.5}, step=2)  # step repeated: the later value wins in wide
    return load_metrics(run.paths.metrics)


def test_long_parquet_keeps_file_order_and_non_finite(data, tmp_path: Path) -> None:
    out = tmp_path / "long.parquet"
    assert export(data, out, "parquet") == 7
    table = pq.read_table(out).to_pandas()
    assert list(table.columns) == ["step", "time", "key", "value"]
    assert list(table["key"].astype(str)) == ["loss", "lr", "loss", "acc", "loss", "lr", "loss"]
    assert list(table["step"]) == [0, 0, 1, 1, 2, 2, 2]
    assert math.isnan(table["value"][2]) and table["value"][6] == 0.5


def test_long_layout_places_points_in_file_order_like_a_stable_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """Placing each point directly (the fast path) gives the rows a stable sort on the record number gives."""
    import numpy as np

    from codex_ml.monitoring import export as export_module
    from codex_ml.monitoring.loading import MetricsData, Series
    from codex_ml.rundir.reader import ReadReport

    rng = np.random.default_rng(0)
    records, series = 400, {}
    for i, density in enumerate((1.0, 0.5, 0.1, 0.01)):
        rows = np.flatnonzero(rng.random(records) < density)
        series[f"m{i}"] = Series(rows * 2, rows * 0.25, rng.random(len(rows)), rows.astype(np.int64))
    data = MetricsData(Path("m.ndjson"), "metrics", records, series, ReadReport("m.ndjson"))
    grid = export_module.long_columns(data)
    by_sort = export_module._long_by_sort(data, data.keys())
    assert len(grid["value"]) == sum(len(s) for s in series.values())
    for column in ("step", "time", "code", "value", "row"):
        np.testing.assert_array_equal(grid[column], by_sort[column])
    holding_record_0 = [code for code, s in enumerate(series.values()) if s.rows[0] == 0]
    assert list(grid["code"][grid["step"] == 0]) == holding_record_0  # key order kept within a record


def test_wide_parquet_has_one_row_per_step(data, tmp_path: Path) -> None:
    out = tmp_path / "wide.parquet"
    assert export(data, out, "parquet", wide=True) == 3
    frame = pq.read_table(out).to_pandas()
    assert list(frame.columns) == ["step", "time", "loss", "lr", "acc"]
    assert list(frame["step"]) == [0, 1, 2]
    assert frame["loss"][2] == 0.5 and math.isnan(frame["loss"][1])
    assert pd.isna(frame["acc"][0]) and frame["acc"][1] == 0.5 and pd.isna(frame["lr"][1])
    assert frame["time"].is_monotonic_increasing


def test_csv_long_and_wide(data, tmp_path: Path) -> None:
    export(data, tmp_path / "l.csv", "csv")
    long = pd.read_csv(tmp_path / "l.csv")
    assert list(long.columns) == ["step", "time", "key", "value"] and len(long) == 7
    export(data, tmp_path / "w.csv", "csv", wide=True)
    wide = pd.read_csv(tmp_path / "w.csv")
    assert wide.shape == (3, 5) and wide["acc"].isna().tolist() == [True, False, True]


def test_jsonl_uses_the_codex_spelling_of_non_finite(data, tmp_path: Path) -> None:
    export(data, tmp_path / "l.jsonl", "jsonl")
    rows = [orjson.loads(line) for line in (tmp_path / "l.jsonl").read_bytes().splitlines()]
    assert rows[2] == {"step": 1, "time": rows[2]["time"], "key": "loss", "value": "NaN"}
    export(data, tmp_path / "w.jsonl", "jsonl", wide=True)
    wide = [orjson.loads(line) for line in (tmp_path / "w.jsonl").read_bytes().splitlines()]
    assert [sorted(r) for r in wide] == [["loss", "lr", "step", "time"], ["acc", "loss", "step", "time"],
                                         ["loss", "lr", "step", "time"]]  # fmt: skip
    assert wide[1]["loss"] == "NaN" and wide[2]["loss"] == 0.5


def test_format_choice() -> None:
    assert pick_format(None, Path("x.parquet")) == "parquet" and pick_format("CSV", Path("x.out")) == "csv"
    with pytest.raises(UnknownFormatError, match="choose one of: csv, parquet, jsonl"):
        pick_format("xlsx", Path("x.xlsx"))
    with pytest.raises(UnknownFormatError, match="csv, parquet, jsonl"):
        pick_format(None, Path("x.txt"))
