#!/usr/bin/env python
"""Benchmark: the default pipeline on the bundled data, 3 seeds x (RLOO, DPO).

    python benchmarks/bench_pipeline.py                         # seeds 0 1 2, both methods (~6-8 min on 2 cores)
    python benchmarks/bench_pipeline.py --seeds 0 --methods rloo
    python benchmarks/bench_pipeline.py --all-sinks             # with TensorBoard + MLflow + W&B (offline)
    python benchmarks/bench_pipeline.py preference.kl_coef=0.1  # config overrides for every run

For each seed the RLOO run trains the whole pipeline; the DPO run goes into the same directory,
so it reuses that seed's M0, M1 and RM checkpoints and trains M2 only (its whole-pipeline time is
the sum of the stage times). Per run it prints the held-out answer accuracy of M1 and M2 (the
checkable metric), the mean RM reward of sampled answers (M1 -> M2), the KL of M2 to M1, the RM's
pairwise accuracy (all pairs and per rejection kind) and the wall time, then the spread over seeds
of each method's accuracy gain against the targets (RLOO +0.10, DPO +0.05). Every seed is
reported: none is picked.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("seed", "method", "M1 acc", "M2 acc", "gain", "RM reward M1->M2", "KL", "RM acc", "RM off-1", "RM tens",
           "RM random", "wall s", "cpu s")


def run_once(workdir: Path, seed: int, method: str, overrides: list[str], sinks: bool) -> tuple[float, float, dict]:
    """Run the default pipeline for ``seed`` and ``method`` into ``workdir/seed-N``;
    (wall seconds, CPU seconds of this process, summary)."""
    from codex_ml.pipeline.config import PipelineConfig, apply_overrides, load_config_file
    from codex_ml.pipeline.runner import run_pipeline
    from codex_ml.tracking import TrackingConfig

    values = load_config_file(REPO / "configs" / "pipeline" / "default.yaml")
    for key in ("corpus", "demos", "prefs"):
        values[key] = str(REPO / values[key])
    values.update(output_dir=str(workdir / f"seed-{seed}"), seed=seed)
    config = PipelineConfig.from_mapping(apply_overrides(values, [*overrides, f"preference.method={method}"]))
    tracking = TrackingConfig(enable_tensorboard=sinks, enable_mlflow=sinks, enable_wandb=sinks)
    began, cpu = time.perf_counter(), time.process_time()
    summary = run_pipeline(config, tracking, progress=False)
    return time.perf_counter() - began, time.process_time() - cpu, summary


def row(seed: int, method: str, seconds: float, cpu: float, summary: dict) -> dict:
    """The figures of one run (reused stages count the wall seconds they took when trained; CPU
    seconds are this run's only: on a shared machine they are what the run costs on an idle core)."""
    stages = summary["stages"]
    m2, rm = stages["M2"]["metrics"], stages["RM"]["metrics"]["final"]
    reused = sum(r.get("seconds", 0.0) for name, r in stages.items() if r.get("status") == "reused")
    return {
        "seed": seed, "method": method,
        "M1 acc": m2["initial"]["answer_accuracy"], "M2 acc": m2["final"]["answer_accuracy"],
        "gain": m2["final"]["answer_accuracy"] - m2["initial"]["answer_accuracy"],
        "RM reward M1->M2": f"{m2['initial']['reward']:.3f} -> {m2['final']['reward']:.3f}",
        "KL": m2["final"]["kl"], "RM acc": rm["accuracy"], "RM off-1": rm.get("accuracy_off_by_one", float("nan")),
        "RM tens": rm.get("accuracy_tens_digit", float("nan")), "RM random": rm.get("accuracy_random", float("nan")),
        "wall s": seconds + reused, "cpu s": cpu, "hacking": not summary["acceptance"]["no_reward_hacking"]["ok"],
    }


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def report(rows: list[dict]) -> None:
    """The per-run table, then each method's spread over seeds against its target."""
    from codex_ml.pipeline.summary import ACCURACY_GAIN

    widths = [max(len(c), 16 if c.startswith("RM reward") else 8) for c in COLUMNS]
    print("  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths)))
    for r in rows:
        print("  ".join(_cell(r[c]).rjust(w) for c, w in zip(COLUMNS, widths)) + ("  REWARD HACKING" if r["hacking"] else ""))
    for method in dict.fromkeys(r["method"] for r in rows):
        gains = [r["gain"] for r in rows if r["method"] == method]
        kls = [r["KL"] for r in rows if r["method"] == method]
        target = ACCURACY_GAIN[method]
        print(f"{method}: accuracy gain min {min(gains):+.3f} mean {sum(gains) / len(gains):+.3f} max {max(gains):+.3f}"
              f" (target >= +{target:.2f}: {'met' if min(gains) >= target else 'NOT met'} on {sum(g >= target for g in gains)}"
              f"/{len(gains)} seeds); KL to M1 {min(kls):.3f}..{max(kls):.3f}")
    walls = [r["wall s"] for r in rows]
    print(f"whole pipeline: max {max(walls):.1f} s wall (<= 120 s: {max(walls) <= 120}) on {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; wall time depends on what else runs on the machine, CPU seconds"
          " (one thread; a DPO row's covers M2 only, the stages it reuses are in its wall time) and the other figures do not")


def main() -> None:
    """Parse arguments, run every (seed, method), print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=["rloo", "dpo"], default=["rloo", "dpo"])
    parser.add_argument("--all-sinks", action="store_true", help="enable TensorBoard, MLflow and W&B (offline)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. preference.kl_coef=0.1")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        for seed in args.seeds:
            for method in args.methods:
                seconds, cpu, summary = run_once(Path(tmp), seed, method, args.overrides, args.all_sinks)
                rows.append(row(seed, method, seconds, cpu, summary))
                print(f"seed {seed} {method}: done in {seconds:.1f} s", flush=True)
    report(rows)


if __name__ == "__main__":
    main()
