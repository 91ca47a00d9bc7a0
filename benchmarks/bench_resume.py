"""Resume start-up with every sink: the back-fill in the sink processes against the back-fill in the trainer.

Run it::

    .venv/bin/python benchmarks/bench_resume.py                  # 20,000 steps, 5 rounds (about 1 min)
    .venv/bin/python benchmarks/bench_resume.py --steps 5000 --rounds 3

It trains nothing: a first session logs ``--steps`` steps (two metrics each) with TensorBoard, MLflow (file
store) and W&B (offline) on, and closes, so every backend holds everything (the common resume after a clean stop
or a drained kill). Each round then restores that run directory at the same path (no relocation) and times, in a
new process, alternating which goes first:

- ``start_run(resume=True)`` with every sink, the default ``sink_process=True``: each sink process back-fills
  its backend before its sink starts, so start_run returns at once;
- the same with ``sink_process=False``: start_run back-fills in the trainer (importing the backends) before
  returning, as every resume did before the back-fill moved.

Per mode: the wall time of the imports and start_run (what delays step 1), of the whole process (one more step
logged, then close), and whether the trainer imported mlflow, wandb or tensorboard. Stdout is a Markdown table
for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SINKS = "enable_tensorboard=True, enable_mlflow=True, enable_wandb=True"

MAKE = textwrap.dedent(f"""
    import sys
    from codex_ml.tracking import start_run
    with start_run("r", output_root=sys.argv[1], {SINKS}) as run:
        for step in range(int(sys.argv[2])):
            run.log_metrics({{"train/loss": 1.0 / (step + 1), "train/lr": 0.001}}, step=step)
""")

RESUME = textwrap.dedent(f"""
    import json, sys, time
    began = time.perf_counter()
    from codex_ml.tracking import start_run
    run = start_run("r", output_root=sys.argv[1], resume=True, sink_process=sys.argv[2] == "1", {SINKS})
    started = time.perf_counter() - began
    run.log_metrics({{"train/loss": 0.5}}, step=int(sys.argv[3]))
    report = run.close()
    heavy = sorted(m for m in ("mlflow", "wandb", "tensorboard") if m in sys.modules)
    print(json.dumps({{"start_run": started, "complete": report.complete, "heavy": heavy}}))
""")


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, check=True)


def one_resume(template: Path, root: Path, steps: int, in_processes: bool) -> dict[str, object]:
    """Restore the run at ``root`` and resume it once in a new process; its timings."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(template, root, symlinks=True)
    began = time.perf_counter()
    done = _python(RESUME, str(root), "1" if in_processes else "0", str(steps))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["total"] = time.perf_counter() - began
    return result


def main() -> None:
    """Make the run, then time the resumes (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="steps the first session logs")
    parser.add_argument("--rounds", type=int, default=5, help="resumes per mode, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="codex-bench-resume-") as tmp:
        root, template = Path(tmp) / "runs", Path(tmp) / "template"
        _python(MAKE, str(root), str(args.steps))
        shutil.copytree(root, template, symlinks=True)
        results: dict[bool, list[dict[str, object]]] = {True: [], False: []}
        for index in range(args.rounds):
            order = (True, False) if index % 2 == 0 else (False, True)
            for mode in order:
                results[mode].append(one_resume(template, root, args.steps, mode))
                print(f"round {index + 1}: sink_process={mode} {results[mode][-1]}", file=sys.stderr)
    print_table(results, args)


def print_table(results: dict[bool, list[dict[str, object]]], args: argparse.Namespace) -> None:
    """The Markdown table: median (min-max) per mode and the ratio of the medians."""
    print(f"{args.steps:,} steps x 2 metrics, every sink holding them; {args.rounds} resumes per mode, alternating; "
          f"load average {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    print("| resume with every sink | start_run s (median, min-max) | process start to exit s | trainer imports | "
          "complete |")  # fmt: skip
    print("|---|---|---|---|---|")
    medians = {}
    for mode, label in ((True, "back-fill in the sink processes (default)"), (False, "back-fill in the trainer "
                                                                                      "(sink_process=false)")):
        rows = results[mode]
        start = [float(r["start_run"]) for r in rows]
        total = [float(r["total"]) for r in rows]
        medians[mode] = (statistics.median(start), statistics.median(total))
        heavy = ", ".join(rows[0]["heavy"]) or "none"  # type: ignore[arg-type]
        print(f"| {label} | {_spread(start)} | {_spread(total)} | {heavy} | {all(r['complete'] for r in rows)} |")
    print(f"\nstart_run: {medians[False][0] / medians[True][0]:.1f}x faster in the sink processes; "
          f"start to exit: {medians[False][1] / medians[True][1]:.2f}x")


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


if __name__ == "__main__":
    main()
