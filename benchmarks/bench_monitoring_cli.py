"""Monitoring CLI benchmark: reading a 1,000,000-record metrics NDJSON, next to pandas.

Run it::

    .venv/bin/python benchmarks/bench_monitoring_cli.py
    .venv/bin/python benchmarks/bench_monitoring_cli.py --records 200000 --repeat 1

It writes a metrics.ndjson like a training run's (``train/loss`` and ``train/lr`` every
step, ``train/tokens_per_s`` every 10th, one NaN loss per 1,000 records, encoded with
``codex_ml.rundir.encoding.encode_metrics``) into a temporary directory, then times, in
this process and best of ``--repeat``:

- ``inspect``: load + per-metric statistics (what ``codex-ml monitoring inspect`` computes),
- ``export --fmt parquet``: load + long table + Parquet write,
- ``pandas.read_json(lines=True)`` on the same file (parsing only, no statistics),

and once end to end through the console script (``codex-ml monitoring inspect --json`` and
``export``), which adds interpreter start-up. Stdout is a Markdown table for
docs/benchmarks.md; a missed target prints MISS, the exit status stays 0.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSPECT_TARGET_S = 1.0
EXPORT_TARGET_S = 3.0
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


def best_of(repeat: int, action: Callable[[], object]) -> tuple[float, float]:
    """The shortest wall time and the shortest CPU time (all threads) of ``repeat`` runs.

    CPU time is shown too because on a shared machine wall time mostly measures the
    other jobs; CPU seconds spent are what this process itself costs.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def run_cli(*args: str) -> float:
    """Wall time of one console-script call (interpreter start-up included)."""
    script = REPO / ".venv" / "bin" / "codex-ml"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "codex_ml.cli"]
    began = time.perf_counter()
    subprocess.run([*command, "monitoring", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    """Generate the file, time the three readers, print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import pandas as pd

    from codex_ml.monitoring.export import export
    from codex_ml.monitoring.inspect import inspect_paths
    from codex_ml.monitoring.loading import load_metrics

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.ndjson"
        print(f"writing {args.records:,} records ...", file=sys.stderr)
        write_metrics(path, args.records)
        size_mb = path.stat().st_size / 1e6
        out = Path(tmp) / "out.parquet"
        print("timing ...", file=sys.stderr)
        t_inspect = best_of(args.repeat, lambda: inspect_paths([path]))
        t_export = best_of(args.repeat, lambda: export(load_metrics(path), out, "parquet"))
        t_pandas = best_of(args.repeat, lambda: pd.read_json(path, lines=True))
        t_cli_inspect = run_cli("inspect", "--json", str(path))
        t_cli_export = run_cli("export", str(path), str(out), "--fmt", "parquet")
        fast = load_metrics(path).loader
    _print_table(args, size_mb, fast, t_inspect, t_export, t_pandas, t_cli_inspect, t_cli_export)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _print_table(args: argparse.Namespace, size_mb: float, fast: str, t_inspect: tuple[float, float],
                 t_export: tuple[float, float], t_pandas: tuple[float, float], t_cli_inspect: float,
                 t_cli_export: float) -> None:  # fmt: skip
    print(f"{args.records:,} records, {size_mb:.0f} MB, best of {args.repeat}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end; "
          f"reader: {fast}; Python {sys.version.split()[0]}\n")  # fmt: skip
    print("| measure | codex_ml wall (CPU) | pandas.read_json(lines=True) wall (CPU) | ratio wall (CPU) | target | result |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("inspect (load + statistics)", t_inspect, INSPECT_TARGET_S),
        ("export --fmt parquet (load + write)", t_export, EXPORT_TARGET_S),
    ]
    for name, (wall, cpu), target in rows:
        ratio, cpu_ratio = t_pandas[0] / wall, t_pandas[1] / cpu
        ok = wall <= target and ratio >= RATIO_TARGET
        print(f"| {name} | {wall:.3f} s ({cpu:.3f} s) | {t_pandas[0]:.3f} s ({t_pandas[1]:.3f} s) | "
              f"{ratio:.1f}x ({cpu_ratio:.1f}x) | <= {target:.0f} s, >= {RATIO_TARGET:.0f}x | {_verdict(ok)} |")  # fmt: skip
    print(f"| `codex-ml monitoring inspect --json` end to end | {t_cli_inspect:.3f} s | | | | |")
    print(f"| `codex-ml monitoring export --fmt parquet` end to end | {t_cli_export:.3f} s | | | | |")


if __name__ == "__main__":
    main()
