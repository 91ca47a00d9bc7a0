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

Run as a script (``python runs_query_mlflow.py search URI``) it is the cold measurement: a
new process imports mlflow, opens the store, runs the searches and prints one JSON line.
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


def _cold_main(uri: str) -> None:
    """One cold search in this new process: import, open, search; print one JSON line."""
    began = time.perf_counter()
    quiet()
    client, exp_id = open_store(uri)
    opened = time.perf_counter()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runs_query_data import mlflow_filters

    ids = search(client, exp_id, mlflow_filters())
    done = time.perf_counter()
    print(json.dumps({"ids": sorted(ids), "open_s": opened - began, "search_s": done - opened}))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "search":
        sys.exit("usage: runs_query_mlflow.py search URI")
    _cold_main(sys.argv[2])
