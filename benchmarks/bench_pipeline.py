#!/usr/bin/env python
"""Benchmark: the default pipeline on the bundled data, with no sinks and with every sink.

    python benchmarks/bench_pipeline.py                  # both variants (~2 x the pipeline time)
    python benchmarks/bench_pipeline.py --variants bare  # just the acceptance numbers

Prints, per stage, the wall time of each variant and their ratio, then the acceptance
checks of issue 6 (SFT vs M0 held-out completion loss, RM held-out pair accuracy, M2 vs M1
mean RM reward with KL) and whether the whole pipeline took <= 5 minutes. The two variants
must give identical metrics (same seed), which the script also checks.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "bare": {},
    "all_sinks": {"enable_tensorboard": True, "enable_mlflow": True, "enable_wandb": True},
}


def run_variant(name: str, workdir: Path, overrides: list[str]) -> tuple[float, dict]:
    """Run the default pipeline into ``workdir/name``; returns (seconds, summary)."""
    from codex_ml.pipeline.config import PipelineConfig, apply_overrides, load_config_file
    from codex_ml.pipeline.runner import run_pipeline
    from codex_ml.tracking import TrackingConfig

    values = load_config_file(REPO / "configs" / "pipeline" / "default.yaml")
    for key in ("corpus", "demos", "prefs"):
        values[key] = str(REPO / values[key])
    values["output_dir"] = str(workdir / name)
    config = PipelineConfig.from_mapping(apply_overrides(values, overrides))
    began = time.perf_counter()
    summary = run_pipeline(config, TrackingConfig(**VARIANTS[name]), progress=False)
    return time.perf_counter() - began, summary


def report(results: dict[str, tuple[float, dict]]) -> None:
    """Side-by-side stage times, ratios and the acceptance checks."""
    names = list(results)
    print(f"{'stage':<8}" + "".join(f"{n + ' s':>14}" for n in names) + (f"{'ratio':>10}" if len(names) == 2 else ""))
    for stage in ("M0", "M1", "RM", "M2"):
        times = [results[n][1]["stages"][stage].get("seconds", 0.0) for n in names]
        ratio = f"{times[1] / times[0]:>10.3f}" if len(times) == 2 and times[0] else ""
        print(f"{stage:<8}" + "".join(f"{t:>14.2f}" for t in times) + ratio)
    totals = [results[n][0] for n in names]
    print(f"{'total':<8}" + "".join(f"{t:>14.2f}" for t in totals) + (f"{totals[1] / totals[0]:>10.3f}" if len(totals) == 2 else ""))
    summary = results[names[0]][1]
    for stage, record in summary["stages"].items():
        metrics = record.get("metrics", {})
        print(f"{stage}: before {json.dumps(metrics.get('initial'))} after {json.dumps(metrics.get('final'))}")
    print(json.dumps(summary["acceptance"], indent=2))
    m2 = summary["stages"]["M2"]["metrics"]
    print(f"M2 answer accuracy (checkable): M1 {m2['initial'].get('answer_accuracy')} -> M2 {m2['final'].get('answer_accuracy')}")
    print(f"whole pipeline <= 300 s: {max(totals) <= 300} (max {max(totals):.1f} s on {os.cpu_count()} CPUs)")
    if len(names) == 2:
        same = all(results[names[0]][1]["stages"][s].get("metrics") == results[names[1]][1]["stages"][s].get("metrics") for s in ("M0", "M1", "RM", "M2"))
        print(f"identical metrics with and without sinks: {same}")


def main() -> None:
    """Parse arguments, run the variants, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. preference.method=dpo")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        results = {name: run_variant(name, Path(tmp), args.overrides) for name in args.variants}
    report(results)


if __name__ == "__main__":
    main()
