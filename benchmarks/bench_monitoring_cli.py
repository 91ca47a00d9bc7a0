"""Monitoring CLI benchmark: reading a 1,000,000-record metrics NDJSON back, as users do, next to pandas.

Run it (``nice -n -5`` where permitted: the children inherit it; on a shared machine also
read the load average it prints)::

    nice -n -5 .venv/bin/python benchmarks/bench_monitoring_cli.py
    .venv/bin/python benchmarks/bench_monitoring_cli.py --records 200000 --runs 3

It writes a metrics.ndjson like a training run's (``train/loss`` and ``train/lr`` every
step, ``train/tokens_per_s`` every 10th, one NaN loss per 1,000 records, encoded with
``codex_ml.rundir.encoding.encode_metrics``) into a temporary directory and reads it once
so that it sits in the page cache. Then, ``--runs`` times, alternating:

- **headline**: the console script, a new process each time, start to exit:
  ``.venv/bin/codex-ml monitoring inspect --json FILE`` and
  ``.venv/bin/codex-ml monitoring export FILE out.parquet``, and ``inspect --json`` of the folder
  holding FILE as a run directory (what users mostly pass: it also looks for run.json, system
  metrics and events, and imports the tracking package that finds system-metrics files);
- ``pandas.read_json(FILE, lines=True)`` in this process (pandas already imported; parsing
  only, no statistics): the reference the ratios are taken against.

One warm-up call of each command comes first and is not counted (it loads the interpreter's
and the extensions' files from disk). Each row gives min / median / max wall seconds and the
median CPU seconds (user + system, all threads); a ratio is pandas' median over the command's
median, with the range of the per-run ratios. The secondary rows are the old in-process
figures (best of ``--repeat``, no interpreter start-up, modules already imported). Stdout is
a Markdown table for docs/benchmarks.md; a missed target prints MISS, the exit status stays 0.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
INSPECT_TARGET_S = 0.5
EXPORT_TARGET_S = 1.0
RATIO_TARGET = 10.0


def write_metrics(path: Path, records: int) -> None:
    """A metrics.ndjson of ``records`` lines, as the tracking core writes them."""
    from codex_ml.rundir.encoding import encode_metrics

    rng = random.Random(0)
    start = 1764336000.0
    with open(path, "wb") as handle:
        lines = []
        for step in range(records):
            metrics = {"train/loss": rng.random() * 3, "train/lr": 3e-4}
            if step % 10 == 0:
                metrics["train/tokens_per_s"] = 1000.0 + rng.random()
            if step % 1000 == 999:
                metrics["train/loss"] = float("nan")
            lines.append(encode_metrics(step, start + step * 0.01, metrics))
            if len(lines) == 100_000:
                handle.write(b"".join(lines))
                lines = []
        handle.write(b"".join(lines))


def console_script() -> list[str]:
    """The installed ``codex-ml`` entry point (what users run), else ``python -m codex_ml.cli``."""
    script = Path(sys.executable).parent / "codex-ml"
    return [str(script)] if script.exists() else [sys.executable, "-m", "codex_ml.cli"]


def run_cold(*args: str) -> tuple[float, float, bytes]:
    """Wall and CPU seconds (user + system of the child) of one new ``codex-ml monitoring`` process, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run([*console_script(), "monitoring", *args], check=True, stdout=subprocess.PIPE)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def best_of(repeat: int, action: Callable[[], object]) -> tuple[float, float]:
    """The shortest wall time and the shortest CPU time of ``repeat`` in-process calls."""
    runs = [timed(action) for _ in range(repeat)]
    return min(w for w, _ in runs), min(c for _, c in runs)


def cold_rounds(path: Path, out: Path, runs: int) -> dict[str, list[tuple[float, float]]]:
    """``runs`` rounds of (cold inspect of the file, cold export, pandas in-process, cold inspect of its
    run directory), the order rotating each round."""
    import pandas as pd

    measures: dict[str, Callable[[], tuple[float, float]]] = {
        "inspect": lambda: _checked_inspect(path),
        "export": lambda: run_cold("export", str(path), str(out), "--fmt", "parquet")[:2],
        "pandas": lambda: timed(lambda: pd.read_json(path, lines=True)),
        # The same file as a run directory (what users mostly pass): run.json, system-metrics and
        # events look-ups, and the tracking package that finds system-metrics files.
        "inspect dir": lambda: _checked_inspect(path.parent),
    }
    for name in ("inspect", "export", "inspect dir"):
        measures[name]()  # warm-up: not counted
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in measures}
    names = list(measures)
    for i in range(runs):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(measures[name]())
        print(f"  round {i + 1}/{runs} (load average {os.getloadavg()[0]:.2f}): "
              + ", ".join(f"{n} {times[n][-1][0]:.3f} s" for n in names), file=sys.stderr)  # fmt: skip
    return times


def _checked_inspect(path: Path) -> tuple[float, float]:
    wall, cpu, stdout = run_cold("inspect", "--json", str(path))
    records = orjson.loads(stdout)["runs"][0]["records"]
    if records <= 0:
        raise SystemExit(f"inspect read {records} records")
    return wall, cpu


def main() -> None:
    """Generate the file, time the cold commands against pandas, then the in-process readers; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7, help="cold rounds (new process each time)")
    parser.add_argument("--repeat", type=int, default=3, help="in-process repeats (secondary rows)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.ndjson"
        print(f"writing {args.records:,} records ...", file=sys.stderr)
        write_metrics(path, args.records)
        path.read_bytes()  # into the page cache
        size_mb = path.stat().st_size / 1e6
        out = Path(tmp) / "out.parquet"
        load_before = os.getloadavg()
        print(f"cold rounds (load average {load_before[0]:.2f}) ...", file=sys.stderr)
        cold = cold_rounds(path, out, args.runs)
        load_after = os.getloadavg()
        print("in-process ...", file=sys.stderr)
        warm = in_process(path, out, args.repeat)
    print(f"{args.records:,} records, {size_mb:.0f} MB, page cache warm; {os.cpu_count()} CPUs; load average "
          f"(1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after the cold rounds; niceness "
          f"{os.nice(0)}; Python {sys.version.split()[0]}; reader: {warm['loader']}\n")  # fmt: skip
    print_cold(cold, args.runs)
    print_warm(warm, args.repeat, statistics.median(w for w, _ in cold["pandas"]))


def in_process(path: Path, out: Path, repeat: int) -> dict[str, object]:
    """The old figures: best-of-``repeat`` inspect and export in this process (modules imported)."""
    from codex_ml.monitoring.export import export
    from codex_ml.monitoring.inspect import inspect_paths
    from codex_ml.monitoring.loading import load_metrics

    return {
        "inspect": best_of(repeat, lambda: inspect_paths([path])),
        "export": best_of(repeat, lambda: export(load_metrics(path), out, "parquet")),
        "loader": load_metrics(path).loader,
    }


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def print_cold(cold: dict[str, list[tuple[float, float]]], runs: int) -> None:
    """The headline table: cold commands and pandas side by side, with ratios and spread."""
    pandas_walls = [w for w, _ in cold["pandas"]]
    pandas_median = statistics.median(pandas_walls)
    print(f"Headline: new process each time, {runs} runs each, alternating; wall min / median / max.\n")
    print("| measure | wall s (min / median / max) | CPU s median | vs pandas (median; per-run range) | target | result |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("`codex-ml monitoring inspect --json FILE`", "inspect", INSPECT_TARGET_S),
        ("`codex-ml monitoring export FILE out.parquet`", "export", EXPORT_TARGET_S),
        ("`codex-ml monitoring inspect --json RUN_DIR` (the same file in a run directory)", "inspect dir", INSPECT_TARGET_S),
    ]
    for label, key, target in rows:
        walls = [w for w, _ in cold[key]]
        median = statistics.median(walls)
        ratios = [p / w for p, w in zip(pandas_walls, walls)]
        ok = median <= target and pandas_median / median >= RATIO_TARGET
        print(f"| {label} | {_spread(walls)} | {statistics.median(c for _, c in cold[key]):.3f} | "
              f"{pandas_median / median:.1f}x ({min(ratios):.1f}-{max(ratios):.1f}x) | "
              f"<= {target} s, >= {RATIO_TARGET:.0f}x | {'PASS' if ok else 'MISS'} |")  # fmt: skip
    print(f"| `pandas.read_json(FILE, lines=True)` in process | {_spread(pandas_walls)} | "
          f"{statistics.median(c for _, c in cold['pandas']):.3f} | 1x | | |\n")  # fmt: skip


def print_warm(warm: dict[str, object], repeat: int, pandas_median: float) -> None:
    """Secondary rows: the in-process figures (no start-up, modules imported)."""
    print(f"Secondary: in process, best of {repeat} (no interpreter start-up, modules already imported).\n")
    print("| measure | wall s (CPU s) | vs pandas median |")
    print("|---|---|---|")
    for label, key in (("inspect (load + statistics)", "inspect"), ("export parquet (load + write)", "export")):
        wall, cpu = warm[key]  # type: ignore[misc]
        print(f"| {label} | {wall:.3f} ({cpu:.3f}) | {pandas_median / wall:.1f}x |")


if __name__ == "__main__":
    main()
