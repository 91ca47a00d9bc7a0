"""Synthetic run directories for bench_runs_query.py: N runs x S steps x M metrics, fast.

Each run is written in codex_ml's run-directory format (docs/run-directory.md) exactly as
``start_run`` leaves a closed run: ``metrics.ndjson`` (one ``{"v":1,"step","time","metrics"}``
line per step, every metric on every line, non-finite values spelled ``"NaN"``),
``params.json`` (flattened), ``tags.json``, ``run.json`` (``run_name``, ``status``, ``created``,
...), ``summary.json`` (last value of every metric) and an empty ``run.lock``.

The curves are built so that the benchmark's two questions can be told apart and checked:

- ``val/loss`` is non-increasing in most runs (its min is its last value), but about 12 % of
  the runs *overfit*: they dip to 1.55-1.79 half way and climb back, so their min is below
  1.8 while their last value may not be;
- ``train/grad_norm`` stays near 1, except about 10 % of the runs with one spike of 12-100
  (max above 10, last value near 1) and about 4 % that diverge (last value up to ~40).

So "min/max over the run" (codex_ml) and "last value" (all MLflow's search can filter on)
give different, known answers: :func:`expected_ids` computes both from the arrays written.
Lines are built with one %-format per line from pre-rendered ``repr`` columns, and runs are
spread over a process pool: 1,000 x 10,000 x 5 (1.7 GB) takes a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1  # bump when the generated data changes, so old scratch dirs are rebuilt
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3)
BASE_KEYS = ("val/loss", "train/grad_norm", "train/loss", "train/lr", "train/tokens_per_s")
T0 = 1764547200.0  # 2025-12-01 00:00 UTC: run i starts i hours later

# The question: "runs with lr < 1e-3 whose val loss went below 1.8, or SFT runs whose grad
# norm ever exceeded 10" -- an OR of two ANDs, with a min and a max aggregate.
LR_MAX, VAL_MAX, GN_MIN, STAGE = 1e-3, 1.8, 10.0, "sft"


def metric_keys(n_metrics: int) -> tuple[str, ...]:
    """The metric names of a run with ``n_metrics`` metrics (the query's two come first)."""
    if n_metrics < 2:
        raise ValueError("need at least 2 metrics (val/loss and train/grad_norm are queried)")
    extra = tuple(f"extra/m{k}" for k in range(len(BASE_KEYS), n_metrics))
    return (BASE_KEYS + extra)[:n_metrics]


def codex_where(aggregate: bool = True) -> str:
    """The ``--where`` expression; ``aggregate=False`` asks the last-value question instead."""
    lo, hi = ("min", "max") if aggregate else ("last", "last")
    return (f"(params.training.lr < {LR_MAX:g} and metrics.val/loss.{lo} < {VAL_MAX}) "
            f"or (tags.stage = '{STAGE}' and metrics.train/grad_norm.{hi} > {GN_MIN:g})")


def mlflow_filters() -> list[str]:
    """MLflow's nearest equivalent: one AND-only filter per branch (and per lr value, since
    MLflow compares params as strings with = != LIKE only), each on the metric's last value."""
    branch_one = [f"params.`training.lr` = '{lr}' and metrics.`val/loss` < {VAL_MAX}"
                  for lr in LR_GRID if lr < LR_MAX]
    return [*branch_one, f"tags.stage = '{STAGE}' and metrics.`train/grad_norm` > {GN_MIN}"]


def mlflow_branches() -> list[tuple[list[str], str, str, float]]:
    """The same question for MLflow's history path: per OR branch, its AND-only params/tags
    filters (one per lr value below the bound), the aggregated metric, min|max and the bound."""
    return [([f"params.`training.lr` = '{lr}'" for lr in LR_GRID if lr < LR_MAX], "val/loss", "min", VAL_MAX),
            ([f"tags.stage = '{STAGE}'"], "train/grad_norm", "max", GN_MIN)]


def expected_ids(facts: list[dict], aggregate: bool = True) -> set[str]:
    """The run ids (paths relative to the root) that answer the question, from the generator's facts."""
    lo, hi = ("val_min", "gn_max") if aggregate else ("val_last", "gn_last")
    return {f["run_id"] for f in facts
            if (f["lr"] < LR_MAX and f[lo] < VAL_MAX) or (f["stage"] == STAGE and f[hi] > GN_MIN)}


def run_relpath(i: int) -> str:
    """Where run ``i`` lives under the root: most under runs/, every fifth in a nested sweep dir."""
    if i % 5 == 4:
        return f"sweeps/sweep-{i // 100:02d}/trial-{i:04d}"
    return f"runs/run-{i:04d}"


def _draw(rng: np.random.Generator) -> dict:
    """One run's scalars, drawn before any per-step noise: the same run at any number of steps."""
    return {"lr": LR_GRID[rng.integers(len(LR_GRID))], "stage": "sft" if rng.random() < 0.3 else "pretrain",
            "status": str(rng.choice(["FINISHED", "FAILED", "KILLED"], p=[0.93, 0.05, 0.02])),
            "batch_size": int(rng.choice([16, 32, 64])), "n_layer": int(rng.choice([2, 4, 8])),
            "overfit": rng.random() < 0.12, "bottom": rng.uniform(1.55, 1.79), "mid": rng.uniform(0.3, 0.7),
            "rise": rng.uniform(0.05, 0.5), "final": rng.uniform(1.5, 2.3), "speed": rng.uniform(3, 8),
            "grad_kind": rng.random(), "spike_at": rng.uniform(0.1, 0.9), "spike": rng.uniform(12, 100),
            "diverge": rng.uniform(10, 40), "nan_loss": rng.random() < 0.02}


def _curves(rng: np.random.Generator, spec: dict, steps: int, n_metrics: int) -> dict[str, np.ndarray]:
    """One run's metric columns, rounded to the digits a log would keep."""
    x = np.linspace(0.0, 1.0, steps)
    noise = rng.standard_normal((max(n_metrics, 5), steps))
    if spec["overfit"]:  # dips to its minimum part way, then climbs back
        bottom, mid, rise = spec["bottom"], spec["mid"], spec["rise"]
        val = np.where(x <= mid, bottom + (3.5 - bottom) * (1 - x / mid) ** 2, bottom + rise * (x - mid) / (1 - mid))
        val = val + 0.01 * np.abs(noise[0])
    else:  # converges: non-increasing, so min == last
        final = spec["final"]
        val = np.minimum.accumulate(final + (3.5 - final) * np.exp(-spec["speed"] * x) + 0.02 * noise[0])
    grad = 1.0 + 0.3 * np.abs(noise[1]) * (1.5 - x)
    if spec["grad_kind"] < 0.10:  # one spike, somewhere in the middle of the run
        grad[int(spec["spike_at"] * (steps - 1))] = spec["spike"]
    elif spec["grad_kind"] < 0.14:  # diverges at the end
        grad = grad * (1 + spec["diverge"] * x ** 4)
    lr = spec["lr"]
    cols = {"val/loss": np.round(val, 4), "train/grad_norm": np.round(grad, 4),
            "train/loss": np.round(val - 0.1 + 0.05 * noise[2], 4),
            "train/lr": np.round(lr * np.minimum(1.0, x * 20) * 0.5 * (1 + np.cos(np.pi * x)), 9),
            "train/tokens_per_s": np.round(12000 + 300 * noise[4], 1)}
    if spec["nan_loss"]:  # a NaN loss once: min/max skip it, count keeps it
        cols["train/loss"][steps // 2] = math.nan
    for j, k in enumerate(metric_keys(n_metrics)[len(BASE_KEYS):], start=len(BASE_KEYS)):
        cols[k] = np.round(noise[j], 4)
    return {k: cols[k] for k in metric_keys(n_metrics)}


def _render(col: np.ndarray) -> list[str]:
    """``repr`` of every value, non-finite ones spelled as the NDJSON schema wants."""
    out = list(map(repr, col.tolist()))
    for j in np.flatnonzero(~np.isfinite(col)).tolist():
        out[j] = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}[out[j]]
    return out


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_run(root: Path, i: int, steps: int, n_metrics: int, seed: int) -> dict:
    """Write run ``i`` under ``root``; return its facts (what the query's answer depends on)."""
    rng = np.random.default_rng([seed, i])
    spec = _draw(rng)
    cols = _curves(rng, spec, steps, n_metrics)
    lr, stage, status = spec["lr"], spec["stage"], spec["status"]
    keys = list(cols)
    rel = run_relpath(i)
    run_dir = root / rel
    run_dir.mkdir(parents=True, exist_ok=True)
    created = T0 + i * 3600.0
    times = created + 1.0 + 0.25 * np.arange(steps)
    template = '{"v":1,"step":%s,"time":%s,"metrics":{' + ",".join(f'"{k}":%s' for k in keys) + "}}\n"
    rows = zip(map(str, range(steps)), _render(times), *(_render(cols[k]) for k in keys))
    with open(run_dir / "metrics.ndjson", "w") as handle:
        handle.write("".join([template % row for row in rows]))
    params = {"training.lr": lr, "training.batch_size": spec["batch_size"],
              "model.n_layer": spec["n_layer"], "model.d_model": 256,
              "data.seed": int(i), "optimizer.name": "adamw", "stage": stage}
    end = float(times[-1]) + 1.0
    run_id = f"{seed:08x}{i:024x}"
    last = {k: (float(cols[k][-1]) if math.isfinite(cols[k][-1]) else "NaN") for k in keys}
    _write_json(run_dir / "params.json", params)
    _write_json(run_dir / "tags.json", {"stage": stage, "team": "bench"})
    _write_json(run_dir / "run.json", {"backends": {}, "created": created, "end_time": end, "run_id": run_id,
                                       "run_name": run_dir.name, "schema": 1, "sessions": [created],
                                       "sinks": [], "status": status})
    _write_json(run_dir / "summary.json", {"end_time": end, "errors": [], "last_step": steps - 1, "metrics": last,
                                           "records": steps, "run_id": run_id, "run_name": run_dir.name,
                                           "sinks": {}, "start_time": created + 1.0, "status": status})
    (run_dir / "run.lock").touch()
    val, grad = cols["val/loss"], cols["train/grad_norm"]
    return {"run_id": rel, "name": run_dir.name, "lr": lr, "stage": stage, "status": status,
            "val_min": float(np.min(val)), "val_last": float(val[-1]),
            "gn_max": float(np.max(grad)), "gn_last": float(grad[-1])}


def _write_chunk(args: tuple[str, list[int], int, int, int]) -> list[dict]:
    root, indices, steps, n_metrics, seed = args
    return [write_run(Path(root), i, steps, n_metrics, seed) for i in indices]


def ensure_runs(data_dir: Path, runs: int, steps: int, n_metrics: int, seed: int = 0,
                workers: int | None = None) -> tuple[Path, list[dict], float | None]:
    """The root holding the runs, their facts, and the generation time (None when reused).

    ``data_dir/shape.json`` is written last and names the shape; a directory whose marker
    matches is reused as it is, anything else under ``data_dir/root`` is deleted first.
    """
    root, marker = data_dir / "root", data_dir / "shape.json"
    shape = {"runs": runs, "steps": steps, "metrics": n_metrics, "seed": seed, "format": FORMAT_VERSION}
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("shape") == shape and root.is_dir():
            return root, saved["facts"], None
    marker.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    began = time.perf_counter()
    workers = max(1, min(workers or os.cpu_count() or 1, runs))
    chunks = [(str(root), list(range(w, runs, workers)), steps, n_metrics, seed) for w in range(workers)]
    if workers == 1:
        facts = _write_chunk(chunks[0])
    else:
        with ProcessPoolExecutor(workers) as pool:
            facts = [f for part in pool.map(_write_chunk, chunks) for f in part]
    facts.sort(key=lambda f: f["run_id"])
    elapsed = time.perf_counter() - began
    marker.write_text(json.dumps({"shape": shape, "generate_s": elapsed, "facts": facts}))
    return root, facts, elapsed


def disk_bytes(root: Path) -> int:
    """Total size of the files under ``root`` (the runs as generated)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".codex-index" not in p.parts)
