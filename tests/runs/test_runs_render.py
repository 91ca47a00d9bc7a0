"""codex_ml.runs.render and codex_ml.runs.columns: the rows, JSON, CSV and table of an index's runs."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from codex_ml.errors import CodexMLError
from codex_ml.runs.columns import UnknownColumnError
from codex_ml.runs.index import open_index
from codex_ml.runs.render import MAX_TABLE_METRICS, lead_columns, print_runs, records, rows, table_columns
from codex_ml.tracking import start_run


def _run(root: Path, name: str, rows_: list[dict[str, float]], params: Any = None, tags: Any = None) -> None:
    with start_run(name, output_root=str(root), params=params, tags=tags, health=False) as run:
        for step, row in enumerate(rows_):
            run.log_metrics(row, step=step)


@pytest.fixture()
def con(tmp_path: Path) -> Any:
    _run(tmp_path, "a", [{"val/loss": 2.0, "odd.max": 1.0}, {"val/loss": math.nan, "odd.max": 3.0}],
         params={"training": {"lr": 1e-3}, "model": {"n_layer": 4}}, tags={"stage": "sft"})
    _run(tmp_path, "b", [{"val/loss": 1.5, "key with space": 7.0}], params={"training": {"lr": 0.01, "opt": "adam"}})
    return open_index(tmp_path).connect()


def test_records_have_the_json_shape(con: Any) -> None:
    recs = records(con, ["b", "a"])
    assert [r["run_id"] for r in recs] == ["b", "a"]  # the order asked for (a query's sort)
    a = recs[1]
    assert set(a) == {"name", "run_id", "status", "start", "duration", "sinks", "path", "params", "tags", "metrics"}
    assert a["start"].endswith("+00:00") and a["status"] == "FINISHED" and a["sinks"] == []
    assert a["params"] == {"training.lr": 0.001, "model.n_layer": 4} and a["tags"] == {"stage": "sft"}
    assert a["metrics"]["odd.max"] == {"last": 3.0, "min": 1.0, "max": 3.0, "mean": 2.0, "count": 2}
    assert math.isnan(a["metrics"]["val/loss"]["last"]) and a["metrics"]["val/loss"]["count"] == 2


def test_columns_in_the_query_spelling(con: Any) -> None:
    got = rows(con, None, 'name, params.training.lr, tags.stage, metrics.val/loss.min, metrics.val/loss, '
                          'metrics."odd.max", metrics."odd.max".count, metrics."key with space".max, duration')
    assert [list(r) for r in got][0] == ["name", "params.training.lr", "tags.stage", "metrics.val/loss.min",
                                         "metrics.val/loss.last", 'metrics."odd.max".last', 'metrics."odd.max".count',
                                         'metrics."key with space".max', "duration"]
    a, b = (list(r.values()) for r in got)
    assert a[:4] == ["a", 0.001, "sft", 2.0] and math.isnan(a[4]) and a[5:8] == [3.0, 2, None]
    assert b[:8] == ["b", 0.01, None, 1.5, 1.5, None, None, 7.0]


@pytest.mark.parametrize("bad", ["metrics.nope", "params.nope", "tags.stage.x", "colour", "metrics.val/loss.median"])
def test_an_unknown_column_names_the_available_ones(con: Any, bad: str) -> None:
    with pytest.raises(UnknownColumnError) as caught:
        rows(con, None, f"name,{bad}")
    message = str(caught.value)
    assert message.startswith(f"--columns: unknown column {bad!r}; available: name, status, start, duration")
    assert "params.training.lr" in message and "metrics.val/loss[.last|.min|.max|.mean|.count]" in message
    assert 'metrics."key with space"' in message and "\n" not in message


def test_a_value_at_a_step_is_not_a_column(con: Any) -> None:
    with pytest.raises(CodexMLError, match="a value at a step is a --where field"):
        rows(con, None, "metrics.val/loss@1")


def test_json_csv_and_table_output(con: Any, capsys: pytest.CaptureFixture[str]) -> None:
    print_runs(con, None, json_output=True)
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data] == ["a", "b"] and data[0]["metrics"]["val/loss"]["last"] == "NaN"
    print_runs(con, None, json_output=True, columns="name,metrics.val/loss.last")
    assert json.loads(capsys.readouterr().out) == [{"run_id": "a", "name": "a", "metrics.val/loss.last": "NaN"},
                                                   {"run_id": "b", "name": "b", "metrics.val/loss.last": 1.5}]
    print_runs(con, None, csv_output=True)
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert table[0]["metrics.val/loss.last"] == "NaN" and float(table[1]["params.training.lr"]) == 0.01
    assert table[1]["tags.stage"] == "" and table[1]["params.training.opt"] == "adam"
    print_runs(con, ["b"], title="1 run")
    out = capsys.readouterr().out
    assert "1.5" in out and "val/loss" in out and "FINISHED" in out and " a " not in out
    with pytest.raises(CodexMLError, match="exclusive"):
        print_runs(con, None, json_output=True, csv_output=True)


def test_the_default_table_caps_metric_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, "wide", [{f"m{i:02d}": float(i) for i in range(MAX_TABLE_METRICS + 3)}])
    print_runs(open_index(tmp_path).connect(), None)
    out = capsys.readouterr().out
    assert f"m{MAX_TABLE_METRICS - 1:02d}" in out and f"m{MAX_TABLE_METRICS:02d}" not in out
    assert "3 more metrics" in out


def test_columns_are_checked_against_every_run_not_only_those_shown(con: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A query that matched only run b (or none) still takes a column only run a has."""
    assert rows(con, ["b"], "name,tags.stage") == [{"name": "b", "tags.stage": None}]
    print_runs(con, [], csv_output=True, columns="name,metrics.odd.max.max")
    assert capsys.readouterr().out == 'name,"metrics.""odd.max"".max"\n'


def test_the_default_table_leads_with_the_sort_field_then_differing_params_then_losses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A leaderboard shows what it is sorted by and what the runs differ in, before timings."""
    metrics = {f"time/t{i}": 0.1 for i in range(MAX_TABLE_METRICS)} | {"val/loss": 2.0, "train/loss": 2.5}
    for name, lr in (("a", 1e-3), ("b", 3e-3)):
        _run(tmp_path, name, [metrics], params={"training": {"lr": lr, "steps": 10}, "tracking": {"trial": name}})
    con = open_index(tmp_path).connect()
    cols = [c.text for c in table_columns(records(con, None), lead_columns("metrics.val/loss.min", con))]
    assert cols[:7] == ["name", "status", "start", "duration", "metrics.val/loss.min", "params.training.lr",
                        "train/loss"]  # steps is the same in both runs; tracking.trial is bookkeeping
    assert len(cols) == 4 + MAX_TABLE_METRICS and "val/loss" not in cols[5:]
    print_runs(con, None, lead="metrics.val/loss.min")
    out = capsys.readouterr().out
    assert "0.003" in out and "0.001" in out and "time/t4" in out and "time/t5" not in out
