"""The MLflow side of bench_runs_query.py: the same runs in an MLflow sqlite store, and search_runs.

Import, as an MLflow user moving runs over would: per run ``create_run`` (name, start time,
tags), one ``log_batch`` (every param of params.json as a string, and per metric the **last**
value with its step and time, read from the end of metrics.ndjson) and ``set_terminated``
(status, end time). Only the last values are imported: MLflow's ``search_runs`` filters on
each metric's latest value (its ``latest_metrics`` table) and nothing else, and pushing all
50 M points of the full benchmark through ``log_batch`` into sqlite would take hours. The
codex run id (the path under the root) goes into the tag ``codex.run_id`` so answers can be
compared run by run.

Search: MLflow has no OR, no min/max and no ``<`` on params (params are strings: = != LIKE),
so the question becomes one AND-only ``search_runs`` per branch and per lr value below the
bound (runs_query_data.mlflow_filters), paged through, then united. It answers a weaker
question: the last value, not "at any point".

The same question (``same_question``): search_runs on each OR branch's params/tags part, then
``get_metric_history`` of the aggregated metric per candidate run and min/max in Python; it
needs the full curves, which ``add_histories`` bulk-loads into a copy of the store's
``metrics`` table (only the two aggregated metrics).

``python runs_query_mlflow.py sample URI N`` estimates one same-question pass from N sampled
get_metric_history calls (the full-size store needs ~17 min per pass). Run as a script
(``python runs_query_mlflow.py search|history URI``) it is the cold
measurement: a new process imports mlflow, opens the store, runs the weaker searches
(``search``) or the same question (``history``) and prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

EXPERIMENT = "codex-bench"
RUN_ID_TAG = "codex.run_id"


def last_values(metrics_path: Path, keys: list[str]) -> dict[str, tuple[float, int, float]]:
    """Per key, (value, step, time) of its last line in metrics.ndjson, read from the file's end."""
    found: dict[str, tuple[float, int, float]] = {}
    with open(metrics_path, "rb") as handle:
        size = handle.seek(0, 2)
        chunk = 1 << 16
        while len(found) < len(keys):
            start = max(0, size - chunk)
            handle.seek(start)
            lines = handle.read(size - start).splitlines()
            for line in reversed(lines[1:] if start else lines):  # the first may be cut
                record = json.loads(line)
                for key, value in record.get("metrics", {}).items():
                    if key in keys and key not in found:
                        number = float(value)  # "NaN"/"Infinity" spellings parse too
                        found[key] = (number, int(record["step"]), float(record["time"]))
            if start == 0:
                break
            chunk *= 4
    return found


def _entities(run_dir: Path) -> dict:
    """What one codex run becomes in MLflow, from its files only."""
    from mlflow.entities import Metric, Param

    def load(name: str) -> dict:
        path = run_dir / name
        return json.loads(path.read_text()) if path.exists() else {}

    run, summary = load("run.json"), load("summary.json")
    keys = sorted(summary.get("metrics", {}))
    metrics = [Metric(k, v, int(t * 1000), s) for k, (v, s, t) in last_values(run_dir / "metrics.ndjson", keys).items()]
    params = [Param(k, str(v)) for k, v in sorted(load("params.json").items())]
    tags = {str(k): str(v) for k, v in load("tags.json").items()}
    return {"name": run.get("run_name", run_dir.name), "status": run.get("status", "FINISHED"),
            "start_ms": int(run.get("created", 0) * 1000), "end_ms": int(run.get("end_time", 0) * 1000),
            "metrics": metrics, "params": params, "tags": tags}


def import_runs(root: Path, uri: str) -> tuple[float, int]:
    """Import every run under ``root`` (by its run.json) into the store at ``uri``; (seconds, runs)."""
    from mlflow import MlflowClient

    began = time.perf_counter()
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT)
    run_dirs = sorted(p.parent for p in root.rglob("run.json") if ".codex-index" not in p.parts)
    for run_dir in run_dirs:
        e = _entities(run_dir)
        tags = {**e["tags"], RUN_ID_TAG: run_dir.relative_to(root).as_posix()}
        run = client.create_run(exp_id, start_time=e["start_ms"], tags=tags, run_name=e["name"])
        client.log_batch(run.info.run_id, metrics=e["metrics"], params=e["params"])
        client.set_terminated(run.info.run_id, status=e["status"], end_time=e["end_ms"])
    return time.perf_counter() - began, len(run_dirs)


def search(client, exp_id: str, filters: list[str]) -> set[str]:
    """Union of the codex run ids every filter matches (each one paged through to the end)."""
    ids: set[str] = set()
    for filter_string in filters:
        token = None
        while True:
            page = client.search_runs([exp_id], filter_string, max_results=1000, page_token=token)
            ids.update(r.data.tags[RUN_ID_TAG] for r in page)
            token = page.token
            if not token:
                break
    return ids


def open_store(uri: str):
    """(client, experiment id) of the benchmark's experiment in the store at ``uri``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client, client.get_experiment_by_name(EXPERIMENT).experiment_id


def quiet() -> None:
    """Silence alembic's migration chatter and MLflow's info lines (stderr stays readable)."""
    import mlflow  # noqa: F401 - its import configures the "mlflow" logger; lower the level after

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


# -- the same question: full curves of the aggregated metrics + get_metric_history ----------
HISTORY_KEYS = ("val/loss", "train/grad_norm")  # the two metrics the question aggregates


def add_histories(root: Path, db: Path, keys: tuple[str, ...] = HISTORY_KEYS) -> tuple[float, int]:
    """Bulk-load every point of ``keys`` into the store's own ``metrics`` table; (seconds, rows).

    log_batch of 20 M points would take hours, so the rows go straight into MLflow's table
    (key, value, timestamp ms, run_uuid, step, is_nan), one transaction, read out of the
    NDJSON by DuckDB in (key, timestamp) order -- the primary key's order, so the B-tree
    grows at its end -- with the two run_uuid indexes dropped and rebuilt after (a sort
    instead of 20 M random inserts). The rows the import logged (the last values) are
    replaced by the same points; ``latest_metrics`` already holds each key's last step,
    which is what MLflow keeps there, so it stays consistent.
    """
    import sqlite3

    import duckdb

    began = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    uuids = conn.execute("SELECT value, run_uuid FROM tags WHERE key = ?", (RUN_ID_TAG,)).fetchall()
    duck = duckdb.connect()
    duck.execute("CREATE TABLE run_map (path VARCHAR, run_uuid VARCHAR)")
    duck.executemany("INSERT INTO run_map VALUES (?, ?)",
                     [(str(root / rel / "metrics.ndjson"), uuid) for rel, uuid in uuids])
    selects = " UNION ALL ".join(
        f"SELECT '{k}' AS key, m.run_uuid, j.step, j.time, j.metrics['{k}'] AS v "
        f"FROM j JOIN run_map m ON j.filename = m.path" for k in keys)
    duck.execute(f"""CREATE TEMP VIEW j AS SELECT * FROM read_json(
        '{root}/**/metrics.ndjson', format='newline_delimited', filename=true,
        columns={{'step': 'BIGINT', 'time': 'DOUBLE', 'metrics': 'STRUCT({", ".join(f'"{k}" DOUBLE' for k in keys)})'}})""")
    # MLflow stores NaN as value 0 with is_nan = 1 (SqlMetric); the timestamp is int(time * 1000)
    duck.execute(f"""SELECT key, CASE WHEN isnan(v) THEN 0 ELSE v END, CAST(floor(time * 1000) AS BIGINT),
        run_uuid, step, CAST(isnan(v) AS INTEGER) FROM ({selects}) WHERE v IS NOT NULL
        ORDER BY key, 3, step, run_uuid""")
    indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'metrics' "
                           "AND sql IS NOT NULL").fetchall()
    conn.execute("PRAGMA journal_mode = OFF")  # a scratch copy: no rollback journal needed
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    marks = ",".join("?" * len(keys))
    conn.execute(f'DELETE FROM metrics WHERE "key" IN ({marks})', keys)
    rows = 0
    while batch := duck.fetchmany(200_000):
        conn.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                         "VALUES (?, ?, ?, ?, ?, ?)", batch)
        rows += len(batch)
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - began, rows


def check_history(client, root: Path, run_id: str, keys: tuple[str, ...] = HISTORY_KEYS) -> None:
    """MLflow's get_metric_history of one run must be the curve codex_ml reads from its files."""
    from codex_ml.rundir.reader import metric_series

    codex_id = client.get_run(run_id).data.tags[RUN_ID_TAG]
    series = metric_series(root / codex_id / "metrics.ndjson")
    for key in keys:
        got = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        want = [(int(s), float(v)) for s, v in series[key]]
        if got != want:
            raise SystemExit(f"MLflow get_metric_history({codex_id}, {key}) differs from the run's curve "
                             f"({len(got)} vs {len(want)} points)")


def same_question(client, exp_id: str, branches: list[tuple[list[str], str, str, float]]) -> tuple[set[str], int]:
    """The whole question in MLflow: (codex run ids, get_metric_history calls).

    ``branches``: (AND-only param/tag filters, metric key, "min"|"max", bound). Per branch,
    search_runs on the params/tags part (one call per filter, united, since MLflow has no
    OR and no ``<`` on params), then per candidate run get_metric_history of the key and the
    aggregate client-side (``min < bound`` / ``max > bound``). A run an earlier branch already
    matched is not fetched again (a user's short-circuit OR).
    """
    found: dict[str, str] = {}  # MLflow run uuid -> codex run id
    calls = 0
    for filters, key, how, bound in branches:
        for filter_string in filters:
            token = None
            while True:
                page = client.search_runs([exp_id], filter_string, max_results=1000, page_token=token)
                for run in page:
                    uuid = run.info.run_id
                    if uuid in found:
                        continue
                    # codex_ml's min/max skip NaN; a careful MLflow user does the same
                    values = [m.value for m in client.get_metric_history(uuid, key) if m.value == m.value]
                    calls += 1
                    if values and (min(values) < bound if how == "min" else max(values) > bound):
                        found[uuid] = run.data.tags[RUN_ID_TAG]
                token = page.token
                if not token:
                    break
    return set(found.values()), calls


def sample_cost(client, exp_id: str, branches: list, sample: int, seed: int = 0) -> dict:
    """The same question's cost without running it all: exact candidate count, and
    get_metric_history timed on ``sample`` random candidates (for the full-size store, where
    one pass takes many minutes). Candidates are counted once per run (a lower bound on calls)."""
    import random
    import statistics

    began = time.perf_counter()
    calls: dict[str, str] = {}
    for filters, key, _, _ in branches:
        for filter_string in filters:
            for run in client.search_runs([exp_id], filter_string, max_results=50_000):
                calls.setdefault(run.info.run_id, key)
    search_s = time.perf_counter() - began
    picked = random.Random(seed).sample(sorted(calls.items()), min(sample, len(calls)))
    per = []
    for uuid, key in picked:
        began = time.perf_counter()
        client.get_metric_history(uuid, key)
        per.append(time.perf_counter() - began)
    median = statistics.median(per)
    return {"search_s": search_s, "candidates": len(calls), "sample": len(per), "per_call_median_s": median,
            "per_call_min_s": min(per), "per_call_max_s": max(per), "estimate_s": search_s + len(calls) * median}


def _sample_main(uri: str, sample: int) -> None:
    """``sample URI N``: sample_cost on the store at ``uri``, one JSON line."""
    quiet()
    client, exp_id = open_store(uri)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runs_query_data import mlflow_branches

    print(json.dumps(sample_cost(client, exp_id, mlflow_branches(), sample)))


def _cold_main(mode: str, uri: str) -> None:
    """One cold search in this new process: import, open, search; print one JSON line."""
    began = time.perf_counter()
    quiet()
    client, exp_id = open_store(uri)
    opened = time.perf_counter()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runs_query_data import mlflow_branches, mlflow_filters

    calls = 0
    if mode == "history":
        ids, calls = same_question(client, exp_id, mlflow_branches())
    else:
        ids = search(client, exp_id, mlflow_filters())
    done = time.perf_counter()
    print(json.dumps({"ids": sorted(ids), "open_s": opened - began, "search_s": done - opened, "calls": calls}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "sample":
        _sample_main(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] in ("search", "history"):
        _cold_main(sys.argv[1], sys.argv[2])
    else:
        sys.exit("usage: runs_query_mlflow.py search|history URI | sample URI N")
