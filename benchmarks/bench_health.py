"""Health rules: their cost per record, and their false-positive margins on clean runs.

    .venv/bin/python benchmarks/bench_health.py                    # records/s through HealthMonitor
    .venv/bin/python benchmarks/bench_health.py --runs runs/clean-s*   # margins table over clean runs

Cost: synthetic trainer-shaped records (``train/loss``, ``grad_norm``, ``tokens_per_s``, the
five ``time/*`` values: what ``codex_ml.training.trainer`` logs each step) through a
``HealthMonitor`` with every default rule, plus one tick per 100 records (the watchdog's once a
second at ~100 steps/s); prints records/s and microseconds per record, best of 5.

Margins (docs/health.md, "How the defaults were chosen"): for each run directory, the largest
robust z-score ``spike`` saw on ``train/loss`` and ``grad_explosion`` on ``train/grad_norm``
(after warm-up), the largest throughput_drop fraction that stays quiet, the largest windowed data-wait
share, and the events the default rules raise; then whether a x20 loss spike injected at
three steps of each run fires ``spike`` at that step, and the smallest factor of one mid-run loss
(grad norm) value that fires ``spike`` (``grad_explosion``).
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
import time
from pathlib import Path

from codex_ml.health import HealthConfig, HealthMonitor
from codex_ml.health.backtest import backtest
from codex_ml.health.rules import Spike
from codex_ml.health.rules_progress import ThroughputDrop
from codex_ml.health.window import RollingMedian
from codex_ml.rundir.reader import ReadReport, read_metrics
from codex_ml.rundir.records import METRICS


def synthetic_records(count: int, seed: int = 0) -> list[tuple]:
    """Trainer-shaped metrics records: a decaying noisy loss, one step every ~57 ms."""
    rng = random.Random(seed)
    records = []
    for step in range(1, count + 1):
        step_s = 0.057 * (1 + 0.05 * rng.random())
        metrics = {
            "train/loss": 2.0 + 2.0 * math.exp(-step / 300) + 0.05 * rng.gauss(0, 1), "train/lr": 1e-3,
            "train/grad_norm": 1.2 + 0.1 * rng.gauss(0, 1), "train/tokens_per_s": 768 / step_s,
            "time/step_s": step_s, "time/data_wait_s": 1e-4, "time/fwd_bwd_s": 0.05, "time/optimizer_s": 0.005,
            "time/logging_s": 1e-4,
        }  # fmt: skip
        records.append((METRICS, step, 1.8e9 + step * 0.057, metrics))
    return records


def bench_cost(count: int) -> None:
    """Print records/s through a default HealthMonitor (best of 5)."""
    records = synthetic_records(count)
    best = cpu = math.inf
    for _ in range(5):
        monitor = HealthMonitor(HealthConfig())
        start, start_cpu = time.perf_counter(), time.process_time()
        for index, record in enumerate(records):
            monitor.observe(record)
            if index % 100 == 0:
                monitor.tick(record[2])
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)  # CPU time: what a busy machine's other jobs do not inflate
    per = best / count * 1e6
    print(f"HealthMonitor, {len(monitor.rules)} default rules: {count / best:,.0f} records/s ({per:.1f} us/record wall, "
          f"{cpu / count * 1e6:.1f} us CPU; best of 5 over {count:,} records; python {sys.version.split()[0]})")


def max_z(values: list[float], window: int = 100, warmup: int = 50, min_scale: float = 1e-3) -> float:
    """The largest upward robust z-score the spike rule computes over ``values``."""
    rolling, best = RollingMedian(window), -math.inf
    for seen, value in enumerate(values, start=1):
        if not math.isfinite(value):
            continue
        if seen > warmup:
            median = rolling.median()
            scale = max(1.4826 * rolling.mad(), min_scale * abs(median), 1e-12)
            best = max(best, (value - median) / scale)
        rolling.add(value)
    return best


def quiet_fraction(values: list[float], **settings: float) -> float:
    """The largest ``fraction`` (0.05 steps) at which ``throughput_drop`` stays quiet on ``values``."""
    for percent in range(95, 0, -5):
        rule = ThroughputDrop(**{**settings, "fraction": percent / 100})
        if not any(rule.on_metrics(i, 0.0, {rule.metric: v}) for i, v in enumerate(values)):
            return percent / 100
    return 0.0


def max_share(waits: list[float], steps: list[float], window: int = 20) -> float:
    """The largest data-wait share over ``window`` records in a row (data_stall)."""
    return max((sum(waits[i - window:i]) / sum(steps[i - window:i]) for i in range(window, len(steps) + 1)),
               default=0.0)


def series(run: Path, name: str) -> list[float]:
    """One metric's values in file order."""
    records = read_metrics(run / "metrics.ndjson", ReadReport(str(run)))
    return [r["metrics"][name] for r in records if name in r["metrics"]]


def spike_fires(values: list[float], at: int, factor: float, threshold: float) -> bool:
    """Whether the spike rule (defaults, ``threshold``) fires on ``values`` with ``values[at] *= factor``."""
    rule = Spike(threshold=threshold)
    changed = list(values)
    changed[at] *= factor
    hits = [step for step, value in enumerate(changed) if rule.on_metrics(step, 0.0, {"train/loss": value})]
    return hits == [at]


FACTORS = (1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0, 20.0)


def smallest_factor(values: list[float], rule_name: str, threshold: float) -> float:
    """The smallest factor of :data:`FACTORS` that fires ``rule_name`` at mid-run when one value is multiplied by it."""
    at = len(values) // 2
    for factor in FACTORS:
        rule = HealthConfig().with_overrides([f"health.{rule_name}.threshold={threshold}"]).build_rules()
        (rule,) = [r for r in rule if r.name == rule_name]
        changed = list(values)
        changed[at] *= factor
        metric = rule.settings["metrics"][0]
        if [i for i, v in enumerate(changed) if rule.on_metrics(i, 0.0, {metric: v})] == [at]:
            return factor
    return math.inf


def bench_margins(runs: list[Path]) -> None:
    """Print the margins table (with the default settings) and the injected-spike check."""
    rules = HealthConfig().rules
    threshold = rules["spike"]["threshold"]
    spike = {k: rules["spike"][k] for k in ("window", "warmup", "min_scale")}
    grad = {k: rules["grad_explosion"][k] for k in ("window", "warmup", "min_scale")}
    drop = {k: rules["throughput_drop"][k] for k in ("window", "warmup", "patience")}
    print(f"fraction {rules['throughput_drop']['fraction']}, spike threshold {threshold}, grad_explosion threshold "
          f"{rules['grad_explosion']['threshold']}; 'tok/s quiet' = the largest fraction that raises no event")
    print(f"{'run':<14} {'steps':>6} {'spike z':>8} {'grad z':>8} {'tok/s quiet':>11} {'wait share':>10} "
          f"{'events':>6} {'x20 fires':>9} {'loss x':>6} {'grad x':>6}")
    for run in runs:
        loss = series(run, "train/loss")
        waits, steps = series(run, "time/data_wait_s"), series(run, "time/step_s")
        events = backtest(run)
        checks = [spike_fires(loss, at, 20.0, threshold) for at in (100, len(loss) // 2, len(loss) - 5)]
        print(f"{run.name:<14} {len(loss):>6} {max_z(loss, **spike):>8.2f} {max_z(series(run, 'train/grad_norm'), **grad):>8.2f} "
              f"{quiet_fraction(series(run, 'train/tokens_per_s'), **drop):>11.2f} "
              f"{max_share(waits, steps, rules['data_stall']['window']):>10.3f} "
              f"{len(events):>6} {sum(checks):>6}/{len(checks)} "
              f"{smallest_factor(loss, 'spike', threshold):>6} "
              f"{smallest_factor(series(run, 'train/grad_norm'), 'grad_explosion', rules['grad_explosion']['threshold']):>6}")


def main() -> None:
    """Parse arguments and run the chosen benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="synthetic records for the cost benchmark")
    parser.add_argument("--runs", nargs="*", type=Path, help="run directories of clean runs: print the margins table")
    args = parser.parse_args()
    if args.runs:
        bench_margins(sorted(args.runs, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]))
    else:
        bench_cost(args.records)


if __name__ == "__main__":
    main()
