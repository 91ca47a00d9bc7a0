"""Separate-process mode of bench_trainer.py: ``codex-ml train-model`` as users run it, start to exit.

Pairs of processes, alternated (bare-tracked, tracked-bare, ...): *bare* is train-model with no sink
besides its NDJSON log, *tracked* adds every sink (TensorBoard, MLflow file store, W&B offline,
Prometheus, the sampler at 1 s). Each process's wall time is taken from just before it is spawned
to its exit; its time to first step from the same start to the ``time`` of its first ``train/*``
record in metrics.ndjson (that record is written right after step 1), split at the run's opening
(run.json ``sessions``) and the step-0 evaluation record.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVERY_SINK = ["--enable-tensorboard", "--enable-mlflow", "--enable-wandb", "--system-metrics", "AUTO",
              "--system-metrics-interval", "1"]


def command(overrides: list[str], root: Path, name: str, tracked: bool, port: int) -> list[str]:
    """The train-model command line of one arm (the console script beside this interpreter)."""
    script = str(Path(sys.executable).with_name("codex-ml"))
    sinks = [*EVERY_SINK, "--prometheus-port", str(port)] if tracked else []
    return [script, "train-model", "--no-progress", "--output-root", str(root), "--run-name", name, *sinks,
            *overrides]


def run_once(overrides: list[str], root: Path, name: str, tracked: bool, threads: int) -> dict[str, Any]:
    """Spawn one train-model process; its wall time and start-up marks (seconds from spawn)."""
    from codex_ml.monitoring.ui import free_port

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store: <run>/mlruns, a local file store
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in the child
    began = time.time()
    done = subprocess.run(command(overrides, root, name, tracked, free_port()), env=env, capture_output=True,
                          text=True, check=False)
    wall = time.time() - began
    if done.returncode:
        raise RuntimeError(f"train-model exited {done.returncode}: {done.stderr[-2000:]}")
    run_dir = root / name
    opened = json.loads((run_dir / "run.json").read_text())["sessions"][0] - began
    val0 = first_step = float("nan")
    with (run_dir / "metrics.ndjson").open() as lines:
        for line in lines:
            record = json.loads(line)
            if record["step"] == 0 and val0 != val0:
                val0 = record["time"] - began
            if any(key.startswith("train/") for key in record.get("metrics", {})):
                first_step = record["time"] - began
                break
    return {"tracked": tracked, "wall": wall, "opened": opened, "val0": val0, "first_step": first_step}


def alternate(overrides: list[str], root: Path, pairs: int, threads: int, log: Any = print) -> list[dict[str, Any]]:
    """Run ``pairs`` pairs of processes in alternating order; one result per process."""
    results = []
    for pair in range(pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        for tracked in order:
            name = f"proc-{pair}-{'tracked' if tracked else 'bare'}"
            results.append(run_once(overrides, root, name, tracked, threads))
            r = results[-1]
            log(f"  pair {pair + 1}/{pairs} {'tracked' if tracked else 'bare':8} wall {r['wall']:6.1f} s, "
                f"first step at {r['first_step']:5.2f} s")
    return results


def report(results: list[dict[str, Any]]) -> list[str]:
    """The side-by-side lines: wall (median, min-max), ratio per pair with its interval, start-up marks."""
    from trainer_alternate import mean_ci

    arms = {arm: [r for r in results if r["tracked"] is arm] for arm in (False, True)}
    ratios = [b["wall"] / t["wall"] for b, t in zip(arms[False], arms[True])]
    mean, half = mean_ci(ratios)
    lines = [f"{'separate processes':34} {'bare':>22} {'every sink':>22}"]

    def cell(arm: bool, key: str) -> str:
        values = [r[key] for r in arms[arm]]
        return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"

    for key, label in (("wall", "wall start to exit, s"), ("opened", "run opened (imports, setup), s"),
                       ("val0", "step-0 val logged, s"), ("first_step", "first step logged, s")):
        lines.append(f"{label:34} {cell(False, key):>22} {cell(True, key):>22}")
    lines.append(f"bare/tracked wall per pair: {', '.join(f'{r:.3f}' for r in ratios)}; mean {mean:.3f} "
                 f"+- {half:.3f} (95 %, {len(ratios)} pairs); median (min-max) shown per arm")
    return lines
